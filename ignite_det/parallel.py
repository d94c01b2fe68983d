"""Work spread over a few threads: numpy lets go of the GIL in its loops over large arrays, so threads
use the cores that one Python thread leaves idle: a list of like items (:func:`map_in_threads`), or one
call beside the caller's own work (:func:`in_background`).

How many: torch's intra-op thread count (``torch.set_num_threads``, which a training script may have
lowered on purpose), at most the cores this process may run on, less one for each background call
still running (its thread is busy: more would only contend for the cores, and each thread's freed
memory stays in its own allocator arena).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


_background_running = 0  # calls of in_background not yet finished
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


def in_background(function: Callable[..., R], *args: Any) -> Future[R]:
    """Start ``function(*args)`` on a thread of its own, so that the caller can do other work meanwhile;
    ``.result()`` waits for it (and raises its exception). Until it ends, :func:`thread_count` is one less,
    for it and for the caller alike. With one thread to use it runs now, and the future is already done.

    Example:
        >>> in_background(sum, [1, 2, 3]).result()
        6
    """
    if thread_count() <= 1:
        done: Future[R] = Future()
        try:
            done.set_result(function(*args))
        except BaseException as error:  # raised by result(), as from a thread
            done.set_exception(error)
        return done
    global _background_running
    with _background_lock:
        _background_running += 1

    def run() -> R:
        global _background_running
        try:
            return function(*args)
        finally:
            with _background_lock:
                _background_running -= 1

    pool = ThreadPoolExecutor(1)
    future = pool.submit(run)
    pool.shutdown(wait=False)  # the thread ends with the call
    return future
