"""An array that grows in place as rows are appended: what the store and the matcher keep per detection.

Joining the parts of an evaluation at ``compute()`` would copy everything once more, at the moment a
training loop waits, into memory the process has to fault in fresh. Appending into a buffer whose
capacity doubles when full copies each row about once more, spread over the updates, and
reading every row is a view. Unused capacity is allocated but not touched, so it costs no resident
memory.
"""

from __future__ import annotations

import numpy as np

GROWTH = 2  # a full buffer is replaced by one this many times larger


class GrowingArray:
    """Appends along ``axis``; :attr:`values` is a view of what was appended.

    A view taken earlier stays valid (and unchanged) after later appends: a full buffer is replaced,
    never written over where it holds rows.

    Example:
        >>> rows = GrowingArray(np.dtype(np.int64), (2, 0), axis=1)
        >>> rows.append(np.array([[1], [2]])); rows.append(np.array([[3, 4], [5, 6]]))
        >>> rows.values.tolist()
        [[1, 3, 4], [2, 5, 6]]
    """

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...], axis: int = 0) -> None:
        """``shape``: the empty array's, with 0 along ``axis``."""
        self.axis = axis
        self._buffer = np.empty(shape, dtype)
        self._size = 0

    @staticmethod
    def like(values: np.ndarray, axis: int = 0) -> GrowingArray:
        """An empty one for arrays shaped and typed like ``values``."""
        shape = list(values.shape)
        shape[axis] = 0
        return GrowingArray(values.dtype, tuple(shape), axis)

    def __len__(self) -> int:
        return self._size

    @property
    def values(self) -> np.ndarray:
        return self._buffer[self._index(slice(0, self._size))]

    def append(self, values: np.ndarray) -> None:
        """Copy ``values`` (the same shape but along ``axis``, a dtype that casts safely) after the rows held."""
        count = values.shape[self.axis]
        end = self._size + count
        if end > self._buffer.shape[self.axis]:
            shape = list(self._buffer.shape)
            shape[self.axis] = max(end, GROWTH * self._buffer.shape[self.axis], 16)
            buffer = np.empty(shape, self._buffer.dtype)
            buffer[self._index(slice(0, self._size))] = self.values
            self._buffer = buffer  # views of the old buffer keep it alive
        self._buffer[self._index(slice(self._size, end))] = values
        self._size = end

    def _index(self, rows: slice) -> tuple[slice, ...]:
        return (slice(None),) * self.axis + (rows,)
