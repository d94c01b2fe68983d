"""best_f1_points and f1_curve against counts at every threshold, on score lists with many ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ignite_det.operating_point import CURVE_POINTS, F1Point, best_f1_points, f1_curve


def _sweep(scores: list[float], is_tp: list[bool], num_gt: int) -> F1Point:
    """Every distinct score as threshold (whole ties kept), highest first; the first of equal F1s wins."""
    if num_gt == 0:
        return F1Point(math.nan, math.nan, math.nan, math.nan)
    best = None
    for threshold in sorted(set(scores), reverse=True):
        kept = sum(s >= threshold for s in scores)
        tp = sum(t for s, t in zip(scores, is_tp) if s >= threshold)
        precision, recall = tp / kept, tp / num_gt
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        if best is None or f1 > best.f1:
            best = F1Point(threshold, precision, recall, f1)
    return best if best is not None else F1Point(math.nan, 0.0, 0.0, 0.0)


def _same(found: F1Point, expected: F1Point) -> bool:
    pairs = zip(found.as_array().tolist(), expected.as_array().tolist())
    return all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in pairs)


@pytest.mark.parametrize("seed", range(30))
def test_best_f1_of_each_class_and_pooled_equal_a_sweep(seed):
    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(0, 60)), int(rng.integers(1, 6))
    scores = np.round(rng.random(n), int(rng.integers(1, 3)))  # one or two decimals: many ties
    labels = rng.integers(0, classes, n)
    outcome = rng.choice(np.array([-1, 0, 1], np.int8), n, p=[0.2, 0.5, 0.3])
    if seed % 5 == 0:
        outcome[outcome == 1] = 0  # no true positive anywhere: F1 is 0 throughout
    num_gt = rng.integers(0, 8, classes)
    num_gt[labels[outcome == 1]] = np.maximum(num_gt[labels[outcome == 1]], 8)  # at least its true positives
    by_score = np.argsort(-scores, kind="stable")
    per_class, pooled = best_f1_points(scores, labels, outcome, num_gt, by_score)
    counted = outcome >= 0
    for k in range(classes):
        rows = counted & (labels == k)
        expected = _sweep(scores[rows].tolist(), (outcome[rows] == 1).tolist(), int(num_gt[k]))
        assert _same(per_class[k], expected), (k, per_class[k], expected)
    expected = _sweep(scores[counted].tolist(), (outcome[counted] == 1).tolist(), int(num_gt.sum()))
    assert _same(pooled, expected), (pooled, expected)


@pytest.mark.parametrize("seed", range(10))
def test_f1_curve_counts_every_detection_at_or_above_each_threshold(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 80))
    scores = np.round(rng.random(n) * rng.choice([1.0, 2.0]) - rng.choice([0.0, 0.5]), 2)  # ties, beyond [0, 1]
    outcome = rng.choice(np.array([-1, 0, 1], np.int8), n, p=[0.2, 0.5, 0.3])
    num_gt = int((outcome == 1).sum()) + int(rng.integers(0, 5)) if seed % 4 else 0
    curve = f1_curve(scores, outcome, num_gt, np.argsort(-scores, kind="stable"))
    counted = outcome >= 0
    low = min(0.0, float(scores[counted].min())) if counted.any() else 0.0
    high = max(1.0, float(scores[counted].max())) if counted.any() else 1.0
    for threshold, precision, recall, f1 in curve.tolist():
        assert threshold in np.linspace(low, high, CURVE_POINTS)
        passing = counted & (scores >= threshold)
        tp, kept = int((outcome[passing] == 1).sum()), int(passing.sum())
        assert precision == (tp / kept if kept else 0.0)
        if num_gt == 0:
            assert math.isnan(recall) and math.isnan(f1)
            continue
        assert recall == tp / num_gt
        assert f1 == (2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
