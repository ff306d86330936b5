"""Metric primitives against hand-computed values: precision-recall with ties, 95 % ellipses, headings, revisits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vbl_ros.evaluation.metrics import (
    CHI2_2DOF_95,
    PrecisionRecall,
    heading_error_deg,
    inside_95_ellipse,
    nearest_distances,
    percentile,
    revisited,
)


def test_chi_square_2_dof_95_percent() -> None:
    assert CHI2_2DOF_95 == pytest.approx(5.991464547, abs=1e-9)


def test_precision_recall_by_hand_with_a_tie() -> None:
    # scores 0.9 (right), 0.8 (right), 0.8 (wrong), 0.7 (right), one frame without a candidate;
    # 5 frames could be right. Points: t=0.9 P 1 R .2; t=0.8 P 2/3 R .4 (the tie accepted together);
    # t=0.7 P 3/4 R .6
    pr = PrecisionRecall.of(
        np.array([0.9, 0.8, 0.8, 0.7, np.nan]), np.array([True, True, False, True, False]), positives=5
    )
    assert pr.thresholds == (0.9, 0.8, 0.7)
    assert pr.precision == pytest.approx((1.0, 2 / 3, 0.75))
    assert pr.recall == pytest.approx((0.2, 0.4, 0.6))
    assert pr.candidates == 4 and pr.positives == 5
    assert pr.average_precision == pytest.approx(0.2 * 1 + 0.2 * 2 / 3 + 0.2 * 0.75)
    # the tie is never split: the right 0.8 alone would have given recall 0.4 at precision 1
    assert pr.recall_at_100_precision == pytest.approx(0.2)
    assert pr.extended_precision == pytest.approx((1.0 + 0.2) / 2)


def test_tied_scores_give_the_same_curve_in_either_order() -> None:
    a = PrecisionRecall.of(np.array([0.8, 0.8, 0.5]), np.array([True, False, True]), positives=2)
    b = PrecisionRecall.of(np.array([0.8, 0.8, 0.5]), np.array([False, True, True]), positives=2)
    assert a == b
    assert a.precision == pytest.approx((0.5, 2 / 3)) and a.recall == pytest.approx((0.5, 1.0))
    assert a.recall_at_100_precision == 0.0 and a.extended_precision == pytest.approx(0.25)


def test_a_wrong_best_candidate_zeroes_recall_at_full_precision() -> None:
    # VPR-Bench: R_P100 = 0 when the precision at the lowest recall is below 1; EP = P_R0 / 2
    pr = PrecisionRecall.of(np.array([0.9, 0.6, 0.5]), np.array([False, True, True]), positives=4)
    assert pr.precision == pytest.approx((0.0, 0.5, 2 / 3))
    assert pr.recall == pytest.approx((0.0, 0.25, 0.5))
    assert pr.average_precision == pytest.approx(0.25 * 0.5 + 0.25 * 2 / 3)
    assert pr.recall_at_100_precision == 0.0 and pr.extended_precision == 0.0


def test_precision_recall_without_candidates_or_positives() -> None:
    none = PrecisionRecall.of(np.array([np.nan, np.nan]), np.array([False, False]), positives=2)
    assert none.thresholds == () and none.candidates == 0
    assert none.average_precision == 0.0 and none.recall_at_100_precision == 0.0
    assert math.isnan(none.extended_precision)
    # a drive that never revisits a place: every candidate is wrong, recall does not exist
    wrong = PrecisionRecall.of(np.array([0.9, 0.8]), np.array([False, False]), positives=0)
    assert wrong.precision == (0.0, 0.0) and all(math.isnan(r) for r in wrong.recall)
    assert math.isnan(wrong.average_precision) and math.isnan(wrong.recall_at_100_precision)
    assert wrong.extended_precision == 0.0
    empty = PrecisionRecall.of(np.zeros(0), np.zeros(0, bool), positives=0)
    assert empty.candidates == 0 and math.isnan(empty.average_precision)
    with pytest.raises(ValueError):
        PrecisionRecall.of(np.array([0.9]), np.array([True]), positives=0)


def test_precision_recall_dict_round_trip() -> None:
    pr = PrecisionRecall.of(np.array([0.9, 0.8, 0.8]), np.array([True, False, True]), positives=3)
    assert PrecisionRecall.from_dict(pr.to_dict()) == pr


def test_95_percent_ellipse() -> None:
    eye = np.eye(2)
    assert inside_95_ellipse(np.array([math.sqrt(5.99), 0.0]), eye)
    assert not inside_95_ellipse(np.array([math.sqrt(6.0), 0.0]), eye)
    # sigma 2 m per axis: a (3, 4) error has e'S^-1 e = 25 / 4 = 6.25 > 5.991
    assert not inside_95_ellipse(np.array([3.0, 4.0]), 4 * eye)
    assert inside_95_ellipse(np.array([3.0, 4.0]), 5 * eye)  # 25 / 5 = 5
    # correlated: variance 7.8 along (1, 1), 0.2 along (1, -1)
    s = np.array([[4.0, 3.8], [3.8, 4.0]])
    assert inside_95_ellipse(np.array([3.0, 3.0]), s)  # 18 / 7.8 = 2.3
    assert not inside_95_ellipse(np.array([3.0, -3.0]), s)  # 18 / 0.2 = 90
    # no ellipse: zero, negative, asymmetric or non-finite covariances count as outside
    assert not inside_95_ellipse(np.zeros(2), np.zeros((2, 2)))
    assert not inside_95_ellipse(np.zeros(2), -eye)
    assert not inside_95_ellipse(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]))
    assert not inside_95_ellipse(np.zeros(2), np.full((2, 2), np.nan))


def test_heading_error_wraps() -> None:
    assert float(heading_error_deg(math.radians(170), math.radians(-170))) == pytest.approx(20.0)
    assert float(heading_error_deg(math.radians(-30), 0.0)) == pytest.approx(30.0)
    assert float(heading_error_deg(math.pi, 0.0)) == pytest.approx(180.0)
    assert math.isnan(float(heading_error_deg(0.0, math.nan)))


def test_percentile_ignores_nan_and_is_nan_of_nothing() -> None:
    assert percentile([1.0, np.nan, 5.0, 10.0, 30.0], 50) == pytest.approx(7.5)
    assert percentile([1.0, 5.0, 10.0, 30.0], 95) == pytest.approx(10 + 0.85 * 20)
    assert math.isnan(percentile([np.nan], 50)) and math.isnan(percentile([], 95))


def test_nearest_distances_keep_centimetres_far_from_the_origin() -> None:
    points = np.array([[600_000.0, 5_700_000.0], [600_010.0, 5_700_000.0]])
    queries = np.array([[600_000.03, 5_700_000.04], [600_013.0, 5_700_004.0]])
    assert nearest_distances(points, queries) == pytest.approx([0.05, 5.0], abs=1e-3)
    assert np.isinf(nearest_distances(np.zeros((0, 2)), queries)).all()


def test_revisits_respect_the_exclusion_window() -> None:
    # out and back along x, one frame every 10 s: 0 100 200 300 200 100 0 m; 30 s excluded
    stamps = np.arange(7, dtype=np.int64) * 10_000_000_000
    xy = np.stack([np.array([0, 100, 200, 300, 200, 100, 0], float), np.zeros(7)], axis=1)
    flags = revisited(stamps, xy, 25.0, 30_000_000_000)
    # frame 4 (200 m at 40 s) passed 200 m at 20 s: only 20 s before, excluded
    assert flags.tolist() == [False, False, False, False, False, True, True]
    assert revisited(stamps, xy, 25.0, 0).tolist() == [True] * 7  # each frame is within 0 s of itself
    assert revisited(stamps[:0], xy[:0], 25.0, 0).shape == (0,)


def test_revisits_agree_with_all_pairs() -> None:
    rng = np.random.default_rng(0)
    stamps = np.sort(rng.integers(0, 10**12, 400))
    xy = rng.uniform(0, 300, (400, 2))
    xy[7] = np.nan  # a frame without truth: never a revisit, never revisited
    close = np.linalg.norm(xy[:, None] - xy[None], axis=2) <= 25.0
    old_enough = stamps[None, :] <= stamps[:, None] - 50_000_000_000
    expected = (close & old_enough).any(axis=1)
    assert 0.2 < expected.mean() < 0.98
    assert np.array_equal(revisited(stamps, xy, 25.0, 50_000_000_000), expected)
