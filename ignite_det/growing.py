"""An array that grows in place as rows are appended: what the store keeps per detection.

Joining the parts of an evaluation at ``compute()`` would copy everything once more, at the moment a
training loop waits, into memory the process has to fault in fresh. Appending into a buffer whose
capacity doubles when full copies each row about once more, spread over the updates, and
reading every row is a view. Unused capacity is allocated but not touched, so it costs no resident
memory. Rows lie along the first axis, so a growth copies one contiguous block (the matcher's outcomes,
which would grow along their last axis, are joined once instead: see ``ChunkedMatcher.records``).

A column whose rows are all one value (the masks of boxes, which have none) comes as a broadcast
(a stride of 0): it is kept as that one row and a count, and read back as a broadcast, until a
different row arrives.
"""

from __future__ import annotations

import numpy as np

GROWTH = 2  # a full buffer is replaced by one this many times larger


class GrowingArray:
    """Appends rows (along the first axis); :attr:`values` is a view of what was appended.

    A view taken earlier stays valid (and unchanged) after later appends: a full buffer is replaced,
    never written over where it holds rows.

    Example:
        >>> rows = GrowingArray(np.dtype(np.int64), (0, 2))
        >>> rows.append(np.array([[1, 2]])); rows.append(np.array([[3, 4], [5, 6]]))
        >>> rows.values.tolist()
        [[1, 2], [3, 4], [5, 6]]
    """

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        """``shape``: the empty array's, with 0 rows."""
        self._buffer = np.empty(shape, dtype)
        self._size = 0
        self._constant: np.ndarray | None = None  # while every row appended is this one: no buffer

    @staticmethod
    def like(values: np.ndarray) -> GrowingArray:
        """An empty one for rows shaped and typed like those of ``values``."""
        return GrowingArray(values.dtype, (0, *values.shape[1:]))

    def __len__(self) -> int:
        return self._size

    @property
    def values(self) -> np.ndarray:
        if self._constant is not None:  # read-only, as any broadcast
            return np.broadcast_to(self._constant, (self._size, *self._constant.shape[1:]))
        return self._buffer[: self._size]

    def append(self, values: np.ndarray) -> None:
        """Copy ``values`` (rows of the same shape, a dtype that casts safely) after the rows held."""
        count = len(values)
        if count == 0:
            return
        repeated = values.strides[0] == 0  # a broadcast of one row
        if self._size == 0 and repeated:
            self._constant = np.array(values[:1], dtype=self._buffer.dtype)
        if self._constant is not None:
            if (repeated or count == 1) and self._same_row(values[:1], self._constant):
                self._size += count
                return
            self._materialize()
        end = self._size + count
        if end > len(self._buffer):
            rows = max(end, GROWTH * len(self._buffer), 16)
            buffer = np.empty((rows, *self._buffer.shape[1:]), self._buffer.dtype)
            buffer[: self._size] = self.values
            self._buffer = buffer  # views of the old buffer keep it alive
        self._buffer[self._size : end] = values
        self._size = end

    @staticmethod
    def _same_row(row: np.ndarray, constant: np.ndarray) -> bool:
        """The same bits (for objects, the same objects: broadcasts of one row hold it; else a buffer is made)."""
        return row.dtype == constant.dtype and row.tobytes() == constant.tobytes()

    def _materialize(self) -> None:
        """Write the constant rows held into a buffer, as any other rows."""
        held = self.values
        self._constant = None
        self._buffer = np.empty((max(GROWTH * self._size, 16), *held.shape[1:]), held.dtype)
        self._buffer[: self._size] = held
