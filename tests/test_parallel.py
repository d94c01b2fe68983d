"""map_in_threads and in_background: the results of plain calls, on torch's thread count (less the background
calls running); errors surface."""

from __future__ import annotations

import threading

import pytest
import torch

from ignite_det.parallel import in_background, map_in_threads, thread_count


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


def test_a_background_call_runs_beside_the_caller_and_holds_a_thread(threads):
    torch.set_num_threads(2)
    if thread_count() < 2:
        pytest.skip("needs 2 cores")
    release = threading.Event()
    started = threading.Event()

    def wait_then_add(a: int, b: int) -> int:
        started.set()
        assert release.wait(10)
        return a + b

    future = in_background(wait_then_add, 2, 3)
    assert started.wait(10) and not future.done()  # running while the caller goes on
    assert thread_count() == 1  # its thread is busy: parallel steps meanwhile use one fewer
    release.set()
    assert future.result() == 5
    assert thread_count() == 2  # given back before the result is


def test_with_one_thread_a_background_call_runs_at_once_and_its_error_surfaces(threads):
    torch.set_num_threads(1)
    caller = threading.get_ident()
    assert in_background(threading.get_ident).result() == caller

    def fail() -> None:
        raise ValueError("in the background")

    with pytest.raises(ValueError, match="in the background"):
        in_background(fail).result()
    torch.set_num_threads(2)
    if thread_count() >= 2:
        with pytest.raises(ValueError, match="in the background"):
            in_background(fail).result()
