"""map_in_threads: the results of a plain loop, in order, with torch's thread count; errors surface."""

from __future__ import annotations

import threading

import pytest
import torch

from ignite_det.parallel import map_in_threads, thread_count


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
