"""The confusion matrix's greedy pairing, in rounds, against the pair-by-pair pass it stands for."""

from __future__ import annotations

import numpy as np
import pytest

from ignite_det.confusion import _greedy_pairs


def _pair_by_pair(det_i: np.ndarray, gt_i: np.ndarray) -> list[tuple[int, int]]:
    """The definition: go through the pairs in order, take each whose detection and ground truth are free."""
    det_taken, gt_taken, pairs = set(), set(), []
    for d, g in zip(det_i.tolist(), gt_i.tolist()):
        if d not in det_taken and g not in gt_taken:
            det_taken.add(d)
            gt_taken.add(g)
            pairs.append((d, g))
    return pairs


@pytest.mark.parametrize("seed", range(20))
def test_rounds_take_the_pairs_of_the_pair_by_pair_pass(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_dets, num_gts = rng.integers(1, 40, size=2)
    count = int(rng.integers(0, 200))
    det_i, gt_i = rng.integers(0, num_dets, count), rng.integers(0, num_gts, count)
    got_det, got_gt = _greedy_pairs(det_i, gt_i, int(num_dets), int(num_gts))
    assert list(zip(got_det.tolist(), got_gt.tolist())) == _pair_by_pair(det_i, gt_i)


def test_a_long_chain_takes_every_other_link() -> None:
    """Detection i overlaps ground truths i and i + 1, the pairs in that order: one round per link taken,
    among many pairs of other, independent images that the first rounds settle."""
    links = 300
    chain_det = np.repeat(np.arange(links), 2)[:-1]
    chain_gt = np.arange(2 * links - 1) // 2 + np.arange(2 * links - 1) % 2
    others = np.arange(links, links + 5000)  # one pair each: all taken in the first round
    det_i = np.r_[chain_det, others]
    gt_i = np.r_[chain_gt, others + 1]
    got_det, got_gt = _greedy_pairs(det_i, gt_i, links + 5000, links + 5001)
    assert list(zip(got_det.tolist(), got_gt.tolist())) == _pair_by_pair(det_i, gt_i)
    assert got_det[:links].tolist() == list(range(links))
