"""The one evaluation routine on tiny drives whose every metric is computed by hand (real result objects)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vbl_ros.errors import ConfigError
from vbl_ros.evaluation import (
    EvaluationConfig,
    EvaluationReport,
    FrameCounts,
    LocalizationReport,
    combine,
    evaluate_localization,
)
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.localizer import LocalizationResult, LoopCandidate, Match, PosePrior
from vbl_ros.mapping import Keyframe

S = 1_000_000_000  # ns per second


def quat(yaw_deg: float) -> tuple[float, float, float, float]:
    half = math.radians(yaw_deg) / 2
    return (0.0, 0.0, math.sin(half), math.cos(half))


def match(rank: int, score: float, x: float, y: float = 0.0) -> Match:
    return Match(rank=rank, score=score, keyframe=Keyframe(rank, (x, y, 0.0), quat(0.0)))


def prior(x: float, y: float, *, yaw_deg: float = 0.0, var_x: float = 1.0, var_y: float = 1.0) -> PosePrior:
    cov = np.diag([var_x, var_y, 1.0, 0.01, 0.01, 0.03])
    return PosePrior(0, (x, y, 0.0), quat(yaw_deg), tuple(cov.reshape(-1)), 0.9, ())


def loop(rank: int, score: float, keyframe_s: float) -> LoopCandidate:
    return LoopCandidate(rank, score, round(keyframe_s * S), None, None)


def result(
    stamp_s: float,
    matches: tuple[Match, ...] = (),
    pose_prior: PosePrior | None = None,
    loops: tuple[LoopCandidate, ...] = (),
) -> LocalizationResult:
    return LocalizationResult(
        stamp_ns=round(stamp_s * S),
        pose_prior=pose_prior,
        matches=matches,
        loop_candidates=loops,
        rejected_reason=None if pose_prior is not None else "no prior",
        descriptor_ms=20.0,
        search_ms=1.0,
    )


MAP = np.array([[0.0, 0, 0], [10, 0, 0], [100, 0, 0], [200, 0, 0], [300, 0, 0]])


@pytest.fixture
def retrieval_drive() -> tuple[list[LocalizationResult], np.ndarray]:
    """Five frames against a five-keyframe map (every frame gets all five: recall@10 is measurable).

    frame 0 at 0 m: first right match at rank 2; frame 1 at 100 m: rank 1; frame 2 at 200 m: rank 5;
    frame 3 at 1000 m: off the map (nearest keyframe 700 m away); frame 4 at (10, 5): no match at all.
    Top-1 scores 0.9 (wrong), 0.8 (right), 0.8 (wrong: a tie), 0.5 (wrong).
    """
    order = {
        0: ((300, 0.9), (0, 0.85), (10, 0.8), (100, 0.7), (200, 0.6)),
        1: ((100, 0.8), (0, 0.7), (10, 0.6), (200, 0.5), (300, 0.4)),
        2: ((0, 0.8), (10, 0.7), (100, 0.6), (300, 0.5), (200, 0.4)),
        3: ((300, 0.5), (200, 0.4), (100, 0.3), (10, 0.2), (0, 0.1)),
    }
    results = [result(i, tuple(match(r + 1, s, x) for r, (x, s) in enumerate(order[i]))) for i in range(4)]
    results.append(result(4))
    truth = np.array([[0.0, 0, 0], [100, 0, 0], [200, 0, 0], [1000, 0, 0], [10, 5, 0]])
    return results, truth


def test_recall_at_n_counts_off_map_frames_apart(retrieval_drive) -> None:
    results, truth = retrieval_drive
    config = EvaluationConfig(distance_thresholds_m=(5.0, 250.0, 1000.0))
    report = evaluate_localization(results, truth, map_positions=MAP, config=config)
    assert report.num_frames == 5 and report.frames_without_map_place == 1
    # frames 0, 1, 2, 4 can be right: hits at ranks 2, 1, 5 and none
    assert report.recall_at == pytest.approx({1: 0.25, 5: 0.75, 10: 0.75, 20: 0.75})
    assert report.recall_at_1 == 0.25
    # top-1 errors 300, 0, 200, 700, none; nearest keyframes 0, 0, 0, 700, 5 m
    # 5 m: frames 0 1 2 4 reachable, 1 right; 250 m: + frame 2; 1000 m: all five, 0 1 2 3 right
    assert report.recall_vs_distance == pytest.approx({5.0: 0.25, 250.0: 0.5, 1000.0: 0.8})


def test_map_match_precision_recall_with_a_tie(retrieval_drive) -> None:
    results, truth = retrieval_drive
    pr = evaluate_localization(results, truth, map_positions=MAP).map_matches
    # 0.9 wrong; 0.8 right and 0.8 wrong together; 0.5 wrong; 4 frames could be right
    assert pr.thresholds == (0.9, 0.8, 0.5)
    assert pr.precision == pytest.approx((0.0, 1 / 3, 0.25))
    assert pr.recall == pytest.approx((0.0, 0.25, 0.25))
    assert pr.average_precision == pytest.approx(0.25 / 3)
    assert pr.recall_at_100_precision == 0.0 and pr.extended_precision == 0.0


def test_recall_at_n_is_not_measured_beyond_the_matches_given() -> None:
    # two matches per frame on a five-keyframe map: frame 0 is right at rank 2 (so at 5 too), frame 1
    # has no right match among its two: whether it has one by rank 5 cannot be told
    results = [
        result(0, (match(1, 0.9, 300), match(2, 0.8, 0))),
        result(1, (match(1, 0.9, 300), match(2, 0.5, 200))),
    ]
    truth = np.array([[0.0, 0], [100.0, 0]])
    config = EvaluationConfig(recall_ns=(1, 2, 5))
    report = evaluate_localization(results, truth, map_positions=MAP, config=config)
    assert report.recall_at[1] == 0.0 and report.recall_at[2] == 0.5 and math.isnan(report.recall_at[5])
    # the same matches cover a two-keyframe map (0 and 300 m): every recall is known; frame 1 (100 m)
    # has no keyframe within 25 m there and is counted apart
    small = evaluate_localization(results, truth, map_positions=MAP[[0, 4]], config=config)
    assert small.recall_at == {1: 0.0, 2: 1.0, 5: 1.0} and small.frames_without_map_place == 1
    # without the map's positions the depth is unknown
    assert math.isnan(evaluate_localization(results, truth, config=config).recall_at[5])


@pytest.fixture
def prior_drive() -> tuple[list[LocalizationResult], np.ndarray, np.ndarray]:
    """Five frames at the origin, true yaw 0 except frame 3 (unknown).

    frame 0: prior 5 m off, sigma 2 m (6.25 > 5.991: outside its ellipse), yaw 10 deg off;
    frame 1: 30 m off (wrong), sigma_y 20 m (2.25: inside), yaw 170 vs -170 deg: 20 deg off;
    frame 2: no prior; frame 3: 1 m off, sigma 1 m (inside), yaw unknown;
    frame 4: 10 m off, a zero covariance (no ellipse: outside), yaw 30 deg off.
    """
    results = [
        result(0, (match(1, 0.9, 3, 4),), prior(3, 4, yaw_deg=10, var_x=4, var_y=4)),
        result(1, (match(1, 0.8, 0, 30),), prior(0, 30, yaw_deg=170, var_y=400)),
        result(2, (match(1, 0.5, 0, 0),)),
        result(3, (match(1, 0.9, 1, 0),), prior(1, 0)),
        result(
            4,
            (match(1, 0.9, 6, 8),),
            PosePrior(4, (6.0, 8.0, 0.0), quat(-30), (0.0,) * 36, 0.9, ()),
        ),
    ]
    truth = np.zeros((5, 3))
    yaw = np.radians([0.0, -170.0, 0.0, np.nan, 0.0])
    return results, truth, yaw


def test_pose_prior_metrics_by_hand(prior_drive) -> None:
    results, truth, yaw = prior_drive
    report = evaluate_localization(results, truth, ground_truth_yaw_rad=yaw)
    assert report.availability == pytest.approx(0.8) and report.priors_published == 4
    assert report.prior_precision == pytest.approx(0.75)  # errors 5, 30, 1, 10 m
    assert report.prior_error_median_m == pytest.approx(7.5)
    assert report.prior_error_p95_m == pytest.approx(10 + 0.85 * 20)  # linear between 10 and 30
    assert report.heading_error_median_deg == pytest.approx(20.0)  # 10, 20, 30
    assert report.heading_error_p95_deg == pytest.approx(29.0)
    assert report.covariance_coverage_95 == pytest.approx(0.5)  # frames 1 and 3
    assert report.prior_errors_m == pytest.approx((1.0, 5.0, 10.0, 30.0))
    assert math.isnan(report.errors_m[2]) and report.errors_m[1] == pytest.approx(30.0)
    # the names the demo reads
    assert (report.fraction_published, report.precision, report.median_error_m) == (
        report.availability,
        report.prior_precision,
        report.prior_error_median_m,
    )
    # without the true yaw there is no heading error
    assert math.isnan(evaluate_localization(results, truth).heading_error_median_deg)


def test_loop_candidates_judged_on_the_drive_itself() -> None:
    """Out and back along x (0 100 200 300 200 100 0 m, one frame each 10 s, 30 s excluded).

    Revisits: frames 5 (100 m, passed at 10 s) and 6 (0 m, passed at 0 s).
    frame 4: candidate at 0 s (0 m; 200 m off: wrong), score 0.9;
    frame 5: rank 1 at 10 s (100 m: right) 0.95, rank 2 at 5 s (50 m, interpolated: wrong) 0.75;
    frame 6: candidate at 25 s (250 m: wrong), 0.85.
    """
    xs = [0, 100, 200, 300, 200, 100, 0]
    truth = np.array([[x, 0.0] for x in xs])
    loops = {4: (loop(1, 0.9, 0),), 5: (loop(1, 0.95, 10), loop(2, 0.75, 5)), 6: (loop(1, 0.85, 25),)}
    results = [result(10 * i, loops=loops.get(i, ())) for i in range(7)]
    report = evaluate_localization(results, truth)
    lc = report.loop_candidates
    assert lc.frames_with_candidates == pytest.approx(3 / 7)
    assert (lc.candidates, lc.wrong_candidates, lc.revisit_frames) == (4, 3, 2)
    # rank 1: 0.95 right, 0.9 wrong, 0.85 wrong; 2 positives
    assert lc.curve.precision == pytest.approx((1.0, 0.5, 1 / 3))
    assert lc.curve.recall == pytest.approx((0.5, 0.5, 0.5))
    assert lc.curve.average_precision == pytest.approx(0.5)
    assert report.loop_recall_at_100_precision == pytest.approx(0.5)
    assert lc.curve.extended_precision == pytest.approx(0.75)

    # the drive's truth as a trajectory (or a function) places the candidates the same way
    trajectory = Trajectory(
        np.arange(7, dtype=np.int64) * 10 * S, np.c_[truth, np.zeros(7)], np.tile([0.0, 0, 0, 1], (7, 1))
    )
    by_trajectory = evaluate_localization(results, truth, query_trajectory=trajectory)
    by_function = evaluate_localization(
        results, truth, query_trajectory=lambda s: trajectory.interpolate(s)[0]
    )
    assert by_trajectory.loop_candidates == lc == by_function.loop_candidates


def test_a_drive_without_revisits_has_no_loop_recall_but_counts_wrong_candidates() -> None:
    truth = np.array([[100.0 * i, 0.0] for i in range(5)])
    results = [result(10 * i) for i in range(4)] + [result(40, loops=(loop(1, 0.93, 0), loop(2, 0.9, 10)))]
    lc = evaluate_localization(results, truth).loop_candidates
    assert lc.frames_with_candidates == pytest.approx(0.2)
    assert (lc.candidates, lc.wrong_candidates, lc.revisit_frames) == (2, 2, 0)
    assert math.isnan(lc.curve.recall_at_100_precision) and lc.curve.extended_precision == 0.0
    with pytest.raises(ValueError, match="query_trajectory"):
        evaluate_localization(results[1:], truth[1:])  # a candidate at 0 s, before the frames


def test_latency_and_frame_counts() -> None:
    results = [result(i, (match(1, 0.9, 0),)) for i in range(5)]
    truth = np.zeros((5, 2))
    report = evaluate_localization(results, truth, latencies_ms=[10.0, 20.0, 30.0, 40.0, np.nan])
    assert report.latency is not None and report.latency.count == 4
    assert (report.latency.p50_ms, report.latency.p95_ms, report.latency.p99_ms) == pytest.approx(
        (25.0, 38.5, 39.7)
    )
    assert report.frames == FrameCounts(sent=5, processed=5, dropped=0, rejected=5)  # no prior: rejected
    live = evaluate_localization(
        results, truth, frames=FrameCounts(sent=9, processed=5, dropped=4, rejected=5)
    )
    assert live.frames.dropped == 4 and live.latency is None


def test_the_demos_call_still_works() -> None:
    """``evaluate_localization(results, truth, threshold_m=..., latencies_ms=...)`` as vbl_ros/ros/demo.py calls it."""
    results = [
        result(0, (match(1, 0.9, 3, 4),), prior(3, 4)),  # published, 5 m off
        result(1, (match(1, 0.9, 100, 0),), prior(100, 0)),  # published, wrong
        result(2, (match(1, 0.9, 10, 0),)),  # not published, top-1 right
        result(3),  # nothing at all
    ]
    report = evaluate_localization(
        results, np.zeros((4, 3)), threshold_m=20.0, latencies_ms=[21.0, 21.0, np.nan, 21.0]
    )
    assert report.threshold_m == 20.0
    assert (report.fraction_published, report.precision, report.recall_at_1) == (0.5, 0.5, 0.5)
    assert report.median_error_m == pytest.approx(52.5)
    assert report.latency is not None and report.latency.count == 3
    assert report.top1_errors_m[2] == pytest.approx(10.0) and math.isnan(report.top1_errors_m[3])
    summary = report.summary()
    assert (
        "pose priors for 2 frames (50.0 %)" in summary and "within 20 m" in summary and "25 m" not in summary
    )


# ------------------------------------------------------------------ edge cases


def test_empty_results_give_nan_not_a_crash() -> None:
    report = evaluate_localization([], np.zeros((0, 3)), map_positions=MAP, latencies_ms=[])
    assert report.num_frames == 0 and report.frames == FrameCounts(0, 0, 0, 0)
    assert all(math.isnan(v) for v in report.recall_at.values())
    for value in (
        report.availability,
        report.prior_precision,
        report.prior_error_median_m,
        report.covariance_coverage_95,
        report.map_matches.average_precision,
        report.loop_candidates.frames_with_candidates,
        report.loop_recall_at_100_precision,
    ):
        assert math.isnan(value)
    assert report.latency is None
    entry = json.loads(EvaluationReport.of({"empty": report}).to_json())["all"]
    assert entry["availability"] is None and entry["recall_at"]["1"] is None
    assert entry["latency_ms"] == {"p50": None, "p95": None, "p99": None, "count": 0}


def test_one_frame() -> None:
    report = evaluate_localization(
        [result(0, (match(1, 0.9, 2, 0),), prior(2, 0))],
        np.zeros((1, 3)),
        map_positions=MAP,
        latencies_ms=[7.0],
    )
    assert report.recall_at == {1: 1.0, 5: 1.0, 10: 1.0, 20: 1.0}
    assert report.prior_error_median_m == report.prior_error_p95_m == pytest.approx(2.0)
    assert report.covariance_coverage_95 == 1.0  # 4 / 1 <= 5.991
    assert report.map_matches.recall_at_100_precision == 1.0 and report.map_matches.extended_precision == 1.0
    assert report.latency is not None and report.latency.p99_ms == 7.0


def test_no_prior_at_all() -> None:
    results = [result(i, (match(1, 0.4, 0),)) for i in range(3)]
    report = evaluate_localization(results, np.zeros((3, 3)))
    assert report.availability == 0.0 and report.priors_published == 0
    for value in (
        report.prior_precision,
        report.prior_error_median_m,
        report.prior_error_p95_m,
        report.heading_error_median_deg,
        report.covariance_coverage_95,
    ):
        assert math.isnan(value)
    assert "n/a" in report.summary()
    entry = json.loads(EvaluationReport.of({"q": report}).to_json())["queries"]["q"]
    assert entry["prior_precision"] is None and entry["covariance_coverage_95"] is None
    assert entry["availability"] == 0.0 and entry["prior_errors_m"] == []


def test_a_drive_that_leaves_the_map() -> None:
    # frames 0-1 on the map (x = 0, 100), frames 2-3 far off (x = 2000, 3000) with confident priors
    truth = np.array([[0.0, 0], [100, 0], [2000, 0], [3000, 0]])
    results = [
        result(0, (match(1, 0.9, 0),), prior(0, 0)),
        result(1, (match(1, 0.9, 100),), prior(100, 0)),
        result(2, (match(1, 0.9, 300),), prior(300, 0)),
        result(3, (match(1, 0.9, 300),)),
    ]
    report = evaluate_localization(results, truth, map_positions=MAP)
    assert report.frames_without_map_place == 2
    assert report.recall_at[1] == 1.0  # over the two frames that can be right
    assert report.prior_precision == pytest.approx(2 / 3)  # the off-map prior is wrong
    assert report.map_matches.positives == 2 and report.map_matches.recall_at_100_precision == 0.0


def test_frames_without_truth_count_for_availability_only() -> None:
    # frame 1 lies outside the query's odometry: its truth is unknown; its prior and loop candidate
    # are not judged, its frame still counts as published
    truth = np.array([[0.0, 0], [np.nan, np.nan], [100, 0]])
    results = [
        result(0, (match(1, 0.9, 0),), prior(0, 0)),
        result(1, (match(1, 0.9, 300),), prior(300, 0), loops=(loop(1, 0.9, 0),)),
        result(2, (match(1, 0.8, 100),)),
    ]
    report = evaluate_localization(
        results, truth, map_positions=MAP, config=EvaluationConfig(loop_exclude_recent_s=0)
    )
    assert (report.frames_without_truth, report.frames_without_map_place) == (1, 0)
    assert report.availability == pytest.approx(2 / 3) and report.priors_published == 2
    assert report.prior_precision == 1.0 and report.prior_errors_m == (0.0,)
    assert report.covariance_coverage_95 == 1.0 and report.recall_at[1] == 1.0
    assert report.map_matches.candidates == 2 and report.map_matches.precision == (1.0, 1.0)
    assert report.loop_candidates.candidates == 1 and report.loop_candidates.wrong_candidates == 0
    assert "1 frames without truth" in report.summary()


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="2 results but 3"):
        evaluate_localization([result(0), result(1)], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="yaw"):
        evaluate_localization([result(0)], np.zeros((1, 3)), ground_truth_yaw_rad=np.zeros(2))
    with pytest.raises(ConfigError, match="threshold_m"):
        evaluate_localization([result(0)], np.zeros((1, 3)), threshold_m=0.0)
    with pytest.raises(ConfigError, match="recall_ns"):
        EvaluationConfig(recall_ns=(5, 1))
    with pytest.raises(ConfigError, match="distance_thresholds_m"):
        EvaluationConfig(distance_thresholds_m=())


# ------------------------------------------------------------------ several query bags


def test_combined_report_is_computed_from_the_frames_not_averaged() -> None:
    a = evaluate_localization(
        [result(0, (match(1, 0.9, 1, 0),), prior(1, 0)), result(1, (match(1, 0.9, 2, 0),), prior(2, 0))],
        np.zeros((2, 3)),
        latencies_ms=[10.0, 20.0],
    )
    b = evaluate_localization(
        [result(0, (match(1, 0.9, 300, 0),), prior(9, 0)), result(1, (match(1, 0.9, 100, 0),)), result(2)],
        np.zeros((3, 3)),
        latencies_ms=[30.0],
        frames=FrameCounts(sent=4, processed=3, dropped=1, rejected=2),
    )
    both = combine([a, b])
    assert both.num_frames == 5
    assert both.recall_at_1 == pytest.approx(2 / 5)
    assert both.availability == pytest.approx(3 / 5)
    assert both.prior_error_median_m == pytest.approx(2.0)  # of 1, 2, 9 (the mean of medians would be 5.25)
    assert both.frames == FrameCounts(sent=6, processed=5, dropped=1, rejected=2)
    assert (
        both.latencies_ms == (10.0, 20.0, 30.0) and both.latency is not None and both.latency.p50_ms == 20.0
    )
    with pytest.raises(ValueError, match="different settings"):
        combine([a, evaluate_localization([result(0)], np.zeros((1, 3)), threshold_m=5.0)])
    assert isinstance(EvaluationReport.of({"a": a, "b": b}).all, LocalizationReport)
