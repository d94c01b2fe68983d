"""map_in_threads and Background: the results of plain loops, on torch's thread count (less the background
helpers working); errors surface."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch

from ignite_det.parallel import Background, map_in_threads, thread_count


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_results_in_order_on_at_most_torch_threads(threads, count):
    torch.set_num_threads(count)
    seen = set()

    def square(x: int) -> int:
        seen.add(threading.get_ident())
        return x * x

    assert map_in_threads(square, range(50)) == [x * x for x in range(50)]
    assert len(seen) <= min(count, thread_count())
    assert map_in_threads(square, []) == []


def test_an_error_in_any_item_is_raised(threads):
    torch.set_num_threads(2)

    def fail_on_seven(x: int) -> int:
        if x == 7:
            raise ValueError("seven")
        return x

    with pytest.raises(ValueError, match="seven"):
        map_in_threads(fail_on_seven, range(20))


@pytest.fixture
def two_threads(threads):
    torch.set_num_threads(2)
    if thread_count() < 2:
        pytest.skip("needs 2 cores")


def _first_item_held() -> tuple[Callable[[int], tuple[int, bool]], threading.Event, threading.Event]:
    """A function giving (x * x, whether the caller's thread ran it) whose item 0 waits for ``release``, once
    ``started`` is set."""
    started, release = threading.Event(), threading.Event()
    caller = threading.get_ident()

    def square(x: int) -> tuple[int, bool]:
        if x == 0:
            started.set()
            assert release.wait(10)
        return x * x, threading.get_ident() == caller

    return square, started, release


def test_background_work_runs_beside_the_caller_and_holds_a_thread(two_threads):
    square, started, release = _first_item_held()
    work = Background(square, range(5))
    assert started.wait(10)  # begun on the helper while the caller goes on
    assert thread_count() == 1  # its thread is busy: parallel steps meanwhile use one fewer
    release.set()
    results = work.result()
    assert [value for value, _ in results] == [0, 1, 4, 9, 16]
    assert not results[0][1]  # the helper's
    assert thread_count() == 2  # given back once the helper is done


def test_the_caller_takes_what_is_left_when_it_asks(two_threads):
    square, started, release = _first_item_held()
    work = Background(square, range(4))
    assert started.wait(10)
    threading.Timer(0.5, release.set).start()  # the helper is held on item 0 while the caller asks
    assert [by_caller for _, by_caller in work.result()] == [False, True, True, True]


@pytest.mark.parametrize("count", [1, 2])
def test_an_error_in_background_work_is_raised_by_result(threads, count):
    torch.set_num_threads(count)

    def fail_on_three(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    before = thread_count()
    work = Background(fail_on_three, range(6))
    with pytest.raises(ValueError, match="three"):
        work.result()
    assert thread_count() == before  # the helper's thread is given back
