"""Work spread over a few threads: numpy lets go of the GIL in its loops over large arrays, so threads
use the cores that one Python thread leaves idle: a list of like items (:func:`map_in_threads`), or one
list begun beside the caller's own work (:class:`Background`).

How many: torch's intra-op thread count (``torch.set_num_threads``, which a training script may have
lowered on purpose), at most the cores this process may run on, less one for each background helper
still working (its thread is busy: more would only contend for the cores, and each thread's freed
memory stays in its own allocator arena).
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


_background_running = 0  # Background helpers still working
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
    workers = min(thread_count(), len(items))
    if workers <= 1:
        return [function(item) for item in items]
    results: list[Any] = [None] * len(items)
    queue = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:  # take the next item until none is left
        while True:
            with lock:
                index = next(queue, None)
            if index is None:
                return
            results[index] = function(items[index])

    with ThreadPoolExecutor(workers - 1) as pool:  # a pool per call: nothing to go stale across a fork
        helpers = [pool.submit(work) for _ in range(workers - 1)]
        work()
        for helper in helpers:
            helper.result()
    return results


class Background(Generic[R]):
    """``[function(item) for item in items]`` begun on a helper thread, so that the caller can do other work
    meanwhile; :meth:`result` has the caller take the items not begun yet, then waits for the helper. While the
    helper works, :func:`thread_count` is one less, for it and for the caller alike; with one thread to use
    there is no helper, and :meth:`result` does it all.

    Example:
        >>> squares = Background(lambda x: x * x, range(4))
        >>> squares.result()
        [0, 1, 4, 9]
    """

    def __init__(self, function: Callable[[T], R], items: Iterable[T]) -> None:
        self._function = function
        self._items = list(items)
        self._results: list[Any] = [None] * len(self._items)
        self._queue = iter(range(len(self._items)))
        self._lock = threading.Lock()
        self._helper: Future[None] | None = None
        if thread_count() > 1 and self._items:
            global _background_running
            with _background_lock:
                _background_running += 1
            pool = ThreadPoolExecutor(1)
            self._helper = pool.submit(self._help)
            pool.shutdown(wait=False)  # the thread ends with the work

    def result(self) -> list[R]:
        """The results in order (an exception of any item is raised once the helper has stopped)."""
        try:
            self._work()
        finally:
            if self._helper is not None:
                self._helper.result()
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
