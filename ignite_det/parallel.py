"""Work spread over a few threads: numpy lets go of the GIL in its loops over large arrays, so threads
use the cores that one Python thread leaves idle: a list of like items (:func:`map_in_threads`), or one
list begun beside the caller's own work (:class:`Background`).

How many: torch's intra-op thread count (``torch.set_num_threads``, which a training script may have
lowered on purpose), at most the cores this process may run on, less one for each helper thread still
working (its thread is busy: more would only contend for the cores, and each thread's freed memory
stays in its own allocator arena).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


_background_running = 0  # helper threads still working
_background_lock = threading.Lock()


def thread_count() -> int:
    """The threads a parallel step may use now."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cores) - _background_running)


def map_in_threads(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[function(item) for item in items]``, over :func:`thread_count` threads, the calling one among them
    (so one allocator arena fewer: each thread's freed memory stays in its own arena, which the others
    cannot reuse). Results in order; an exception is raised once every thread has stopped.

    Example:
        >>> map_in_threads(lambda x: x * x, range(4))
        [0, 1, 4, 9]
    """
    items = list(items)
    return Background(function, items, helpers=min(thread_count(), len(items)) - 1).result()


class Background(Generic[R]):
    """``[function(item) for item in items]`` begun on ``helpers`` threads (at most :func:`thread_count` less
    one), so that the caller can do other work meanwhile; :meth:`result` has the caller take the items not
    begun yet, then waits for the helpers. While helpers work, :func:`thread_count` is that many less, for
    them and for the caller alike; with one thread to use there is no helper, and :meth:`result` does it all.

    Example:
        >>> squares = Background(lambda x: x * x, range(4))
        >>> squares.result()
        [0, 1, 4, 9]
    """

    def __init__(self, function: Callable[[T], R], items: Iterable[T], helpers: int = 1) -> None:
        self._function = function
        self._items = list(items)
        self._results: list[Any] = [None] * len(self._items)
        self._queue = iter(range(len(self._items)))
        self._lock = threading.Lock()
        count = min(helpers, thread_count() - 1) if self._items else 0
        self._helpers: list[Future[None]] = []
        if count > 0:
            global _background_running
            with _background_lock:
                _background_running += count
            pool = ThreadPoolExecutor(count)  # a pool per call: nothing to go stale across a fork
            self._helpers = [pool.submit(self._help) for _ in range(count)]
            pool.shutdown(wait=False)  # its threads end with the work

    def result(self) -> list[R]:
        """The results in order (an exception of any item is raised once every helper has stopped)."""
        try:
            self._work()
        finally:
            for helper in self._helpers:
                helper.result()
        return self._results

    def _help(self) -> None:
        global _background_running
        try:
            self._work()
        finally:
            with _background_lock:
                _background_running -= 1

    def _work(self) -> None:  # take the next item until none is left
        while True:
            with self._lock:
                index = next(self._queue, None)
            if index is None:
                return
            self._results[index] = self._function(self._items[index])
