"""COCOeval's ``accumulate`` on match records: a sort and some cumulative counts, all categories at once.

For each (area range, maxDets), pycocotools sorts a category's counted detections by descending
score (a stable sort over images in sorted-id order, each image's detections in their cell order),
and at each IoU threshold takes cumulative true and false positive counts ``tp``, ``fp``, recall
``tp / npig``, precision ``tp / (fp + tp + eps)`` made non-increasing from the right, and samples
both at the recall thresholds with ``searchsorted`` (cocoeval.py:354-409).

The same numbers follow from the true positives alone, with integers until the last division:

- the first position where recall reaches a threshold is where the ``c``-th true positive is, for
  the smallest ``c`` with ``c / npig >= threshold`` (a float64 division is monotone in ``c``), or
  the first detection when ``c`` is 0;
- between true positives precision only falls, so the interpolated precision at the ``c``-th true
  positive is the largest precision at it or any later true positive.

Precision is computed as pycocotools computes it, ``c / ((fp + c) + eps)`` in float64, so the
arrays are equal to the last bit.

Most detections are a false positive at every threshold (or, in the area ranges of small, medium and
large objects, counted at none): they only add to the false positives between the others. So each list
is looked at as places in one category-then-score listing: the false positives before a true positive are
its distance from its category's first place, less the true positives and the uncounted detections on
the way, which are all among the few *candidates* (about a tenth on COCO val) whose outcomes are read.
Area ranges are independent, and run on threads (:class:`Accumulation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ignite_det.backends.base import CocoArrays, non_ignored_gt_counts
from ignite_det.backends.native.matching import NOT_COUNTED, TRUE_POSITIVE, MatchRecords
from ignite_det.backends.native.radix import descending_score_key, radix_order
from ignite_det.parallel import map_in_threads
from ignite_det.params import EvalParams
from ignite_det.table import Detections

_EPS = np.spacing(1)


@dataclass(frozen=True)
class Ranking:
    """The evaluated detections (of an evaluated category, within ``max_detections[-1]`` of their
    cell) in COCOeval's accumulation order.

    ``by_score``: rows by descending score, ties by image id, then rank in the cell (what
    pycocotools' stable sort over its per-image lists gives). ``by_class``: the same, category by
    category (a stable sort of ``by_score``), as ``accumulate`` takes them.
    """

    by_score: np.ndarray
    by_class: np.ndarray

    @staticmethod
    def create(d: Detections, rank: np.ndarray, det_k: np.ndarray, max_det: int) -> Ranking:
        """Stable radix sorts, least significant key first: image id, score, category.

        Rows come image by image, each image's in arrival order (when the images came in id order and no row
        was added out of place, as the error analysis adds some, that is the image key's order already);
        within a cell, detections of equal score are in rank order (a stable sort ranked them), so ties need
        no rank key.
        """
        rows = np.flatnonzero((det_k >= 0) & (rank < max_det))
        position = d.det_position
        in_order = not (np.any(d.image_ids[1:] < d.image_ids[:-1]) or np.any(position[1:] < position[:-1]))
        if not in_order:  # images did not arrive in id order (or rows were added out of place)
            image_order = np.empty(len(d.image_ids), dtype=np.uint64)
            image_order[np.argsort(d.image_ids, kind="stable")] = np.arange(len(d.image_ids))
            rows = rows[radix_order(image_order[d.det_position[rows]], len(d.image_ids).bit_length())]
        key, bits = descending_score_key(d.det_scores[rows])
        by_score = rows[radix_order(key, bits)]
        k = det_k[by_score]
        k_bits = int(k.max(initial=0)).bit_length()
        by_class = by_score[radix_order(k.astype(np.uint16 if k_bits <= 16 else np.uint64), k_bits)]
        index = np.int32 if len(d.det_scores) < 2**31 else np.int64  # rows: held through compute(), half the memory
        return Ranking(by_score.astype(index), by_class.astype(index))


class Accumulation:
    """pycocotools' ``precision``, ``recall`` and ``scores`` from the records of ``d``'s detections, in steps:
    prepared when created, then :meth:`fill` for each area range (independent: any order, on any threads),
    then :attr:`arrays`; or all at once, :meth:`computed`.

    ``d`` holds each image once (positions 0..I-1); ``records`` and ``det_k`` (each detection's
    index in ``category_ids``, -1 if not evaluated) are in its detection row order; ``ranking`` is
    :meth:`Ranking.create` on them.
    """

    def __init__(
        self,
        d: Detections,
        records: MatchRecords,
        det_k: np.ndarray,
        category_ids: np.ndarray,
        params: EvalParams,
        ranking: Ranking,
    ) -> None:
        t_count, r_count = len(params.iou_thresholds), len(params.rec_thresholds)
        k_count, a_count, m_count = len(category_ids), len(params.area_ranges), len(params.max_detections)
        self.area_count = a_count
        self._scores, self._records, self._rec_thresholds = d.det_scores, records, params.rec_thresholds
        # Filled area range by area range, each list's curves (T, K, R) as computed: laid out (A, M, T, K, R)
        # and returned as views in pycocotools' axis order.
        self._precision = np.empty((a_count, m_count, t_count, k_count, r_count))
        self._score_at = np.empty_like(self._precision)
        self._recall = np.empty((a_count, m_count, t_count, k_count))
        self._npig = non_ignored_gt_counts(d, category_ids, params)  # (K, A)
        self._listing = _Listing.create(ranking.by_class, det_k, records.rank, params.max_detections, k_count)
        self._specials = _ListedSpecials.of(self._listing, records.special, len(records.rank))
        self._firsts = [_FirstDetections.of(self._listing, within, d.det_scores) for within in self._listing.within]
        self._r_order = np.argsort(params.rec_thresholds, kind="stable")

    def fill(self, a: int) -> None:
        """Area range ``a``'s slices of the arrays (threads filling different ones write disjoint memory)."""
        listing, npig, r_order = self._listing, self._npig[:, a], self._r_order
        # Counted at some threshold (the others add to no count): a false positive everywhere, or special.
        counted = self._records.false_positive[a][listing.rows]
        specials = self._specials
        outcome = self._records.special_outcome[a][:, specials.column]  # (T, S) in listing order
        best, worst = outcome.max(axis=0, initial=NOT_COUNTED), outcome.min(axis=0, initial=TRUE_POSITIVE)
        counted[specials.place] = best != NOT_COUNTED
        # A false positive at every threshold adds to the counts between the others only: those are enough.
        candidate = (best == TRUE_POSITIVE) | ((worst == NOT_COUNTED) & (best != NOT_COUNTED))
        missing = npig == 0  # no ground truth to find: -1, as pycocotools leaves it
        needed = _tp_needed(npig, self._rec_thresholds[r_order])
        # those of the largest maxDets, the others' superset
        every = _Candidates.of(listing, counted, specials.place[candidate], outcome[:, candidate])
        for m, within in enumerate(listing.within):
            candidates = every if within is None else every.narrowed(listing, counted & within)
            curves = _Curves(self._precision[a, m], self._recall[a, m], self._score_at[a, m])
            curves.fill(candidates, self._scores, self._firsts[m], npig, needed, r_order)
            for out in curves:
                out[:, missing] = -1.0

    def computed(self) -> CocoArrays:
        """Every area range filled (on threads), then :attr:`arrays`."""
        map_in_threads(self.fill, range(self.area_count))
        return self.arrays

    @property
    def arrays(self) -> CocoArrays:
        """The arrays, in pycocotools' axis order (views), once every area range is filled."""
        return CocoArrays(
            self._precision.transpose(2, 4, 3, 0, 1),
            self._recall.transpose(2, 3, 0, 1),
            self._score_at.transpose(2, 4, 3, 0, 1),
        )


@dataclass(frozen=True)
class _Listing:
    """The evaluated detections in accumulation order (category by category, then as COCOeval sorts them),
    and what each (area range, maxDets) list needs of them, by place in that order.

    ``rows``: detection rows; ``k``: their category, ascending; ``category_start`` (K + 1,): where each
    category begins, then the end; ``within``: per maxDets, whether each is within it (None for the
    largest: all are).
    """

    rows: np.ndarray
    k: np.ndarray
    category_start: np.ndarray
    within: list[np.ndarray | None]

    @staticmethod
    def create(
        rows: np.ndarray, det_k: np.ndarray, rank: np.ndarray, max_detections: Sequence[int], k_count: int
    ) -> _Listing:
        k = det_k[rows].astype(np.int32 if k_count < 2**31 else np.int64)  # held while accumulating: half the memory
        rank = rank[rows]
        within = [rank < limit if m < len(max_detections) - 1 else None for m, limit in enumerate(max_detections)]
        return _Listing(rows, k, np.searchsorted(k, np.arange(k_count + 1)), within)


@dataclass(frozen=True)
class _ListedSpecials:
    """The special detections (matched somewhere: :class:`~.matching.MatchRecords`) that are in the
    :class:`_Listing`, in its order: ``place`` (S,) ascending, their places in it; ``column``: their
    indices among the records' special ones."""

    place: np.ndarray
    column: np.ndarray

    @staticmethod
    def of(listing: _Listing, special: np.ndarray, num_detections: int) -> _ListedSpecials:
        place_of_row = np.full(num_detections, -1, dtype=np.int32 if num_detections < 2**31 else np.int64)
        place_of_row[listing.rows] = np.arange(len(listing.rows))
        place = place_of_row[special]
        column = np.flatnonzero(place >= 0)
        order = np.argsort(place[column])
        return _ListedSpecials(place[column[order]], column[order])


@dataclass(frozen=True)
class _FirstDetections:
    """Per category, whether it has a detection among the (area range's, maxDets') evaluated ones, counted or
    not, and the score of the first one: what pycocotools reports at a recall threshold of 0, where
    ``searchsorted`` stops at its first detection whatever that one's outcome."""

    exists: np.ndarray
    score: np.ndarray

    @staticmethod
    def of(listing: _Listing, within: np.ndarray | None, det_scores: np.ndarray) -> _FirstDetections:
        """Of the listed detections ``within`` one maxDets (all: None); ``det_scores`` per detection row."""
        start, end = listing.category_start[:-1], listing.category_start[1:]
        first = start
        if within is not None:  # each category's first place within maxDets (past the listing: none)
            places = np.r_[np.flatnonzero(within), len(within)]
            first = places[np.searchsorted(places, start)]
        if not len(listing.rows):
            return _FirstDetections(first < end, np.zeros(len(start)))
        return _FirstDetections(first < end, det_scores[listing.rows[np.minimum(first, len(listing.rows) - 1)]])


@dataclass(frozen=True)
class _Candidates:
    """The detections of one (area range, maxDets) list that are not a false positive at some IoU
    threshold: every other one is a false positive at every threshold, so counts between these places
    give the false positives.

    ``place`` (S,) ascending: their places in the :class:`_Listing`; ``position``: in the list; ``k``:
    their categories; ``row``: their detection rows; ``outcome``: int8 (T, S) theirs. ``category_start``
    (K,): where each category's detections begin in the list.
    """

    place: np.ndarray
    position: np.ndarray
    k: np.ndarray
    row: np.ndarray
    outcome: np.ndarray
    category_start: np.ndarray

    @staticmethod
    def of(listing: _Listing, listed: np.ndarray, places: np.ndarray, outcome: np.ndarray) -> _Candidates:
        """``listed``: bool per place in ``listing``, whether in the list; ``places`` (S,) ascending: the
        candidates' places, all listed; ``outcome``: (T, S) theirs."""
        return _Candidates._listed(listing, listed, places, listing.k[places], listing.rows[places], outcome)

    def narrowed(self, listing: _Listing, listed: np.ndarray) -> _Candidates:
        """The candidates of a list within this one (``listed``: bool per place in ``listing``)."""
        keep = listed[self.place]
        outcome = np.compress(keep, self.outcome, axis=1)
        return _Candidates._listed(listing, listed, self.place[keep], self.k[keep], self.row[keep], outcome)

    @staticmethod
    def _listed(
        listing: _Listing, listed: np.ndarray, places: np.ndarray, k: np.ndarray, rows: np.ndarray, outcome: np.ndarray
    ) -> _Candidates:
        # listed detections before each place (int32 when they fit: half the memory of a list's largest array)
        before = np.zeros(len(listed) + 1, dtype=np.int32 if len(listed) < 2**31 else np.int64)
        np.cumsum(listed, out=before[1:])
        return _Candidates(places, before[places], k, rows, outcome, before[listing.category_start[:-1]])


class _Curves(NamedTuple):
    """One (area range, maxDets) list's arrays, contiguous, written in place: ``precision`` and ``score``
    (T, K, R), recall thresholds in their given order, and ``recall`` (T, K)."""

    precision: np.ndarray
    recall: np.ndarray
    score: np.ndarray

    def fill(
        self,
        candidates: _Candidates,
        det_scores: np.ndarray,
        firsts: _FirstDetections,
        npig: np.ndarray,
        needed: np.ndarray,
        r_order: np.ndarray,
    ) -> None:
        """The curves of ``candidates`` (a category without ground truth gets them too: the caller sets it to -1).

        ``det_scores`` is per detection row. Segment ``t * K + k`` is category ``k`` at threshold ``t``.
        ``needed`` (K, R): true positives needed to reach each recall threshold, thresholds in ascending
        order ``r_order``. The arrays are written in place (with a thousand classes each is about 10 MB).
        """
        t_count, k_count, r_count = len(candidates.outcome), len(npig), len(r_order)
        tp = _TruePositives(candidates)
        np.divide(tp.count.reshape(t_count, k_count), np.maximum(npig, 1), out=self.recall)

        needed = np.tile(needed, (t_count, 1))  # (T*K, R)
        seg_first = tp.first[:, None]
        seg_end = seg_first + tp.count[:, None]
        valid = np.where(needed == 0, np.tile(firsts.exists, t_count)[:, None], needed <= tp.count[:, None])
        at = np.where(valid, seg_first + np.maximum(needed - 1, 0), seg_end)  # index into the true positives

        # With the thresholds in ascending order (as given, usually), straight into the arrays.
        ascending = np.array_equal(r_order, np.arange(r_count))
        precision, score = (x.reshape(t_count * k_count, r_count) for x in (self.precision, self.score))
        q = precision if ascending else np.empty(at.shape)
        ss = score if ascending else np.empty(at.shape)

        # Interpolated precision: the largest precision at or after each query, within its segment.
        # reduceat's pieces run from one query to the next (or the segment's end); an empty piece gives
        # the true positive at its start, which is in the query's suffix anyway.
        bounds = np.concatenate([at, seg_end], axis=1)
        pieces = np.maximum.reduceat(tp.precision, bounds.ravel()).reshape(bounds.shape)[:, :-1]
        pieces[at >= seg_end] = -np.inf
        np.maximum.accumulate(pieces[:, ::-1], axis=1, out=q[:, ::-1])
        np.maximum(q, 0.0, out=q)  # no true positive yet: pycocotools' precision is 0
        tp_score = np.r_[det_scores[candidates.row[tp.candidate]], 0.0]  # at the last segment's end: 0
        np.take(tp_score, at, out=ss)
        np.copyto(ss, np.tile(firsts.score, t_count)[:, None], where=needed == 0)

        if not ascending:  # back to the given threshold order
            precision[:, r_order], score[:, r_order] = q, ss
            valid = _in_given_order(valid, r_order)
        # pycocotools stops at the first threshold out of reach: 0 from there on (a segment's end included)
        unreached = ~np.logical_and.accumulate(valid, axis=1)
        precision[unreached] = 0.0
        score[unreached] = 0.0


def _in_given_order(values: np.ndarray, r_order: np.ndarray) -> np.ndarray:
    """(S, R) values at the recall thresholds in ascending order, put back in their given order."""
    given = np.empty_like(values)
    given[:, r_order] = values
    return given


class _TruePositives:
    """The true positives of every (threshold, category) segment, in order, with their precision.

    ``count`` and ``first`` (T*K,): how many each segment has and where its first one is listed;
    ``candidate``: each one's index among the candidates; ``precision``: pycocotools' ``tp / (fp + tp +
    eps)`` at it, counts exact as integers until the division, then one ``-inf`` (where a segment's
    maximum can stop). A true positive's false positives before it in its category are the list's places
    from the category's first to it, less the true positives and the detections not counted among them,
    which are all candidates.
    """

    def __init__(self, candidates: _Candidates) -> None:
        first_place = candidates.category_start
        k_count, (t_count, s_count) = len(first_place), candidates.outcome.shape
        outcome = candidates.outcome
        # Every threshold at once, segment after segment: flat indices t * S + candidate are in that order.
        flat = np.flatnonzero(outcome == TRUE_POSITIVE)
        t, cols = np.divmod(flat, s_count)
        segment = t * k_count + candidates.k[cols]
        self.count = np.bincount(segment, minlength=t_count * k_count)
        self.first = np.cumsum(self.count) - self.count
        c = np.arange(1, len(cols) + 1) - self.first[segment]  # its place among its segment's
        # the candidates not counted before it in its category (a true positive is not one of them):
        # not_counted[t, s] counts those before candidate s at threshold t
        not_counted = np.zeros((t_count, s_count + 1), dtype=np.int32)
        np.cumsum(outcome == NOT_COUNTED, axis=1, dtype=np.int32, out=not_counted[:, 1:])
        category_first = np.searchsorted(candidates.position, first_place)  # each category's first candidate
        skipped = not_counted.ravel()[flat + t + 1] - not_counted[:, category_first].ravel()[segment]
        in_category = candidates.position - first_place[candidates.k]  # listed detections before it in its category
        fp = in_category[cols] - (c - 1) - skipped
        self.candidate = cols
        c_float = c.astype(np.float64)
        self.precision = np.empty(len(c) + 1)
        np.divide(c_float, (fp.astype(np.float64) + c_float) + _EPS, out=self.precision[:-1])  # as pycocotools
        self.precision[-1] = -np.inf


def _tp_needed(npig: np.ndarray, rec_thresholds: np.ndarray) -> np.ndarray:
    """(K, R) the smallest ``c`` with ``c / npig >= threshold`` in float64 (``npig + 1``: never)."""
    n = np.maximum(npig, 1)[:, None, None].astype(np.int64)
    guess = np.floor(rec_thresholds[None, :, None] * n).astype(np.int64) + np.arange(-2, 4)[None, None, :]
    guess = np.clip(guess, 0, n)
    reaches = guess / n >= rec_thresholds[None, :, None]
    return np.where(reaches, guess, n + 1).min(axis=2)
