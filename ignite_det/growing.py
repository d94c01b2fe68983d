"""An array that grows in place as rows are appended: what the store and the matcher keep per detection.

Joining the parts of an evaluation at ``compute()`` would copy everything once more, at the moment a
training loop waits, into memory the process has to fault in fresh. Appending into a buffer whose
capacity doubles when full copies each row about once more, spread over the updates, and
reading every row is a view. Unused capacity is allocated but not touched, so it costs no resident
memory.

A column whose rows are all one value (the masks of boxes, which have none) comes as a broadcast
(a stride of 0): it is kept as that one row and a count, and read back as a broadcast, until a
different row arrives.
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
        self._constant: np.ndarray | None = None  # while every row appended is this one: no buffer

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
        if self._constant is not None:  # read-only, as any broadcast
            shape = list(self._constant.shape)
            shape[self.axis] = self._size
            return np.broadcast_to(self._constant, shape)
        return self._buffer[self._index(slice(0, self._size))]

    def append(self, values: np.ndarray) -> None:
        """Copy ``values`` (the same shape but along ``axis``, a dtype that casts safely) after the rows held."""
        count = values.shape[self.axis]
        if count == 0:
            return
        repeated = values.strides[self.axis] == 0  # a broadcast of one row
        if self._size == 0 and repeated:
            self._constant = np.array(values[self._index(slice(0, 1))], dtype=self._buffer.dtype)
        if self._constant is not None:
            if (repeated or count == 1) and self._same_row(values[self._index(slice(0, 1))], self._constant):
                self._size += count
                return
            self._materialize()
        end = self._size + count
        if end > self._buffer.shape[self.axis]:
            shape = list(self._buffer.shape)
            shape[self.axis] = max(end, GROWTH * self._buffer.shape[self.axis], 16)
            buffer = np.empty(shape, self._buffer.dtype)
            buffer[self._index(slice(0, self._size))] = self.values
            self._buffer = buffer  # views of the old buffer keep it alive
        self._buffer[self._index(slice(self._size, end))] = values
        self._size = end

    @staticmethod
    def _same_row(row: np.ndarray, constant: np.ndarray) -> bool:
        """The same bits (for objects, the same objects: broadcasts of one row hold it; else a buffer is made)."""
        return row.dtype == constant.dtype and row.tobytes() == constant.tobytes()

    def _materialize(self) -> None:
        """Write the constant rows held into a buffer, as any other rows."""
        held = self.values
        self._constant = None
        shape = list(held.shape)
        shape[self.axis] = max(GROWTH * self._size, 16)
        self._buffer = np.empty(shape, held.dtype)
        self._buffer[self._index(slice(0, self._size))] = held

    def _index(self, rows: slice) -> tuple[slice, ...]:
        return (slice(None),) * self.axis + (rows,)
