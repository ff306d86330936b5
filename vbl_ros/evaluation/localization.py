"""The one scoring routine of what the localizer said about each frame, against ground truth.

:func:`evaluate_localization` takes the localizer's per-frame results (map matches, pose priors, loop
candidates), the frames' truth in the map's frame and the map's keyframe positions, and returns a
:class:`LocalizationReport`:

- retrieval: recall@N within ``threshold_m`` from each frame's ranked matches, top-1 recall against
  the distance threshold; frames without a map keyframe within the threshold cannot be right and are
  counted apart (left out of recall);
- pose priors: availability, precision, position and heading errors, covariance honesty (the share
  of errors inside the 95 % ellipse of the prior's own covariance);
- map-match and loop-closure candidates: precision-recall over the score, its area, recall at 100 %
  precision and VPR-Bench's extended precision (:class:`~.metrics.PrecisionRecall`); loop candidates
  are judged on the query drive itself;
- latency percentiles and frame counts.

The same routine scores an offline replay (:mod:`vbl_ros.evaluation.replay`), the live node's
outputs collected over DDS (the demo, ``vbl evaluate``) and, next, training validation. Truth and
results must be in one frame: the map's (:func:`vbl_ros.evaluation.ground_truth.ground_truth`).
Per-query reports are combined into one ("all") by :func:`combine`, from the frames, not by
averaging.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vbl_ros.errors import ConfigError
from vbl_ros.evaluation.metrics import (
    PrecisionRecall,
    heading_error_deg,
    inside_95_ellipse,
    json_number,
    nearest_distances,
    percentile,
    revisited,
)
from vbl_ros.evaluation.retrieval import horizontal
from vbl_ros.geometry.rotations import quaternion_to_euler
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.localizer import LocalizationResult

__all__ = [
    "EvaluationConfig",
    "FrameCounts",
    "FrameScores",
    "LatencySummary",
    "LocalizationReport",
    "LoopClosureScores",
    "combine",
    "evaluate_localization",
]

logger = logging.getLogger(__name__)

_COMPLETE = np.iinfo(np.int64).max  # match depth of a frame whose matches cover the whole map


@dataclass(frozen=True)
class EvaluationConfig:
    """What counts as right, and which curves are drawn.

    Attributes:
        threshold_m: success radius (horizontal metres in the map's frame).
        recall_ns: the N of recall@N. A frame without a right match among fewer than N matches
            (the localizer's ``top_k``) makes recall@N unknown (``nan``), unless its matches cover
            the whole map.
        distance_thresholds_m: the radii of the top-1 recall against distance curve.
        loop_exclude_recent_s: a frame counts as a revisit (a loop candidate could be right) when
            the drive passed within ``threshold_m`` at least this long before; the localizer's own
            ``loop_exclude_recent_s``.
    """

    threshold_m: float = 25.0
    recall_ns: tuple[int, ...] = (1, 5, 10, 20)
    distance_thresholds_m: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0)
    loop_exclude_recent_s: float = 30.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold_m) and self.threshold_m > 0):
            raise ConfigError(f"threshold_m must be a positive number of metres, got {self.threshold_m}")
        ns = self.recall_ns
        if not ns or any(n < 1 for n in ns) or list(ns) != sorted(set(ns)):
            raise ConfigError(
                f"recall_ns must be increasing positive integers, e.g. [1, 5, 10, 20]; got {ns}"
            )
        ds = self.distance_thresholds_m
        if not ds or any(not (math.isfinite(d) and d > 0) for d in ds) or list(ds) != sorted(set(ds)):
            raise ConfigError(
                f"distance_thresholds_m must be increasing positive distances, e.g. [5, 10, 25, 50]; got {ds}"
            )
        if not (math.isfinite(self.loop_exclude_recent_s) and self.loop_exclude_recent_s >= 0):
            raise ConfigError(f"loop_exclude_recent_s must be >= 0 s, got {self.loop_exclude_recent_s}")


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of per-frame latencies in milliseconds (what was measured, and how many)."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    count: int

    @classmethod
    def of(cls, latencies_ms: Sequence[float] | np.ndarray) -> LatencySummary | None:
        """The summary of the finite values, ``None`` when there is none."""
        values = np.asarray(latencies_ms, dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if not len(values):
            return None
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), len(values))


@dataclass(frozen=True)
class FrameCounts:
    """Frames sent to the localizer, processed by it, dropped unprocessed (stale, or lost on the
    way), rejected (processed, but no pose prior: the node's ``frames_rejected``) and bad (could
    not be decoded or processed: the node's ``frames_bad`` and ``frames_failed``)."""

    sent: int
    processed: int
    dropped: int
    rejected: int
    bad: int = 0

    def __post_init__(self) -> None:
        if min(self.sent, self.processed, self.dropped, self.rejected, self.bad) < 0:
            raise ValueError(f"frame counts must be >= 0, got {self}")

    @classmethod
    def of(cls, results: Sequence[LocalizationResult]) -> FrameCounts:
        """The counts of an offline replay: every frame processed, none dropped."""
        rejected = sum(r.rejected_reason is not None for r in results)
        return cls(len(results), len(results), 0, rejected)

    def __add__(self, other: FrameCounts) -> FrameCounts:
        return FrameCounts(
            self.sent + other.sent,
            self.processed + other.processed,
            self.dropped + other.dropped,
            self.rejected + other.rejected,
            self.bad + other.bad,
        )


@dataclass(frozen=True)
class FrameScores:
    """What was right and wrong about each of ``F`` frames: the per-frame arrays a report is made of.

    Distances are horizontal metres in the map's frame; ``nan`` where a value does not exist. A frame
    whose true position is unknown (``nan``) is not judged: it counts for availability only.

    Attributes:
        stamps_ns: ``(F,)`` frame stamps.
        truth_xy: ``(F, 2)`` true positions.
        nearest_place_m: ``(F,)`` distance to the nearest map keyframe (``nan``: map not given).
        first_hit_rank: ``(F,)`` rank of the first match within ``threshold_m`` (0: none).
        match_depth: ``(F,)`` ranks the frame's matches cover (the number of matches; a huge value
            when they cover the whole map or the frame has none).
        top1_xyz, top1_errors_m, top1_scores: ``(F, 3)``, ``(F,)``, ``(F,)`` the best map match.
        has_prior: ``(F,)`` the localizer gave a pose prior.
        prior_errors_m: ``(F,)`` position error of the pose prior (``nan`` also where the truth is unknown).
        heading_errors_deg: ``(F,)`` heading error of the prior (``nan`` also where the true yaw is unknown).
        prior_inside_95: ``(F,)`` 1.0 when the prior's error lies inside its 95 % ellipse, 0.0 when
            not (or when its covariance gives no ellipse), ``nan`` without a prior.
        loop: the loop-closure candidates' per-frame scores.
    """

    stamps_ns: np.ndarray
    truth_xy: np.ndarray
    nearest_place_m: np.ndarray
    first_hit_rank: np.ndarray
    match_depth: np.ndarray
    top1_xyz: np.ndarray
    top1_errors_m: np.ndarray
    top1_scores: np.ndarray
    has_prior: np.ndarray
    prior_errors_m: np.ndarray
    heading_errors_deg: np.ndarray
    prior_inside_95: np.ndarray
    loop: LoopClosureScores

    def __len__(self) -> int:
        return len(self.stamps_ns)

    @classmethod
    def concatenate(cls, parts: Sequence[FrameScores]) -> FrameScores:
        """The frames of several drives one after the other."""
        if not parts:
            raise ValueError("nothing to concatenate")
        values = {
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in dataclasses.fields(cls)
            if f.name != "loop"
        }
        return cls(**values, loop=LoopClosureScores.concatenate([p.loop for p in parts]))


@dataclass(frozen=True)
class LoopClosureScores:
    """Per-frame loop-closure candidates judged against the drive's own truth (``(F,)`` arrays).

    Attributes:
        count: candidates reported for the frame.
        wrong: those farther than ``threshold_m`` from the frame's true position.
        best_score: the rank-1 candidate's score (``nan``: no candidate).
        best_correct: the rank-1 candidate is within ``threshold_m``.
        revisit: the drive passed within ``threshold_m`` at least ``loop_exclude_recent_s`` before.
    """

    count: np.ndarray
    wrong: np.ndarray
    best_score: np.ndarray
    best_correct: np.ndarray
    revisit: np.ndarray

    @classmethod
    def concatenate(cls, parts: Sequence[LoopClosureScores]) -> LoopClosureScores:
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)}
        )


@dataclass(frozen=True)
class LoopClosureMetrics:
    """Loop-closure candidates of a drive judged on the drive itself.

    Attributes:
        frames_with_candidates: share of frames with at least one candidate (a drive that never
            revisits a place should get none).
        candidates: candidates reported, all ranks; ``wrong_candidates`` of them farther than the
            threshold from the frame's true position.
        revisit_frames: frames for which a correct candidate exists (the drive passed there before).
        curve: precision-recall of the rank-1 candidates over their score.
    """

    frames_with_candidates: float
    candidates: int
    wrong_candidates: int
    revisit_frames: int
    curve: PrecisionRecall

    def to_dict(self) -> dict[str, Any]:
        """The curve's entries (its ``candidates``: the rank-1 candidates scored) and the counts
        (``reported_candidates``: all ranks)."""
        return {
            **self.curve.to_dict(),
            "frames_with_candidates": self.frames_with_candidates,
            "reported_candidates": self.candidates,
            "wrong_candidates": self.wrong_candidates,
            "revisit_frames": self.revisit_frames,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopClosureMetrics:
        return cls(
            frames_with_candidates=json_number(d["frames_with_candidates"]),
            candidates=int(d["reported_candidates"]),
            wrong_candidates=int(d["wrong_candidates"]),
            revisit_frames=int(d["revisit_frames"]),
            curve=PrecisionRecall.from_dict(d),
        )


@dataclass(frozen=True)
class LocalizationReport:
    """Everything measured about one replay (or several combined), against ground truth.

    Shares are fractions in [0, 1]; ``nan`` where a value does not exist (no prior: no precision;
    no frame with a map place: no recall; no latency measured: ``latency`` is ``None``).

    Attributes:
        config: what counted as right.
        num_frames: frames scored.
        recall_at: recall@N over the frames with a map keyframe within ``threshold_m``.
        recall_vs_distance: top-1 recall within each distance ``d``, over the frames with a map
            keyframe within ``d``.
        frames_without_map_place: frames with no map keyframe within ``threshold_m`` (off the map).
        frames_without_truth: frames whose true position is unknown (not judged).
        availability: share of frames with a pose prior; ``priors_published`` of them.
        prior_precision: share of priors within ``threshold_m`` (of those whose truth is known).
        prior_error_median_m, prior_error_p95_m: horizontal error of the priors.
        heading_error_median_deg, heading_error_p95_deg: heading error of the priors whose frame's
            true yaw is known.
        covariance_coverage_95: share of priors whose horizontal error lies inside the 95 % ellipse
            of the x/y block of their own covariance (an honest covariance gives about 0.95).
        map_matches: precision-recall of the top-1 map matches over their score.
        loop_candidates: the loop-closure candidates, judged on the drive itself.
        latency: latency percentiles, when latencies were measured.
        frames: frames sent, processed, dropped, rejected.
        prior_errors_m: the priors' errors, sorted (the error CDF).
        latencies_ms: the measured latencies (the histogram).
        per_frame: the per-frame scores (to combine reports and draw the route); ``None`` for a
            report read back from JSON.
    """

    config: EvaluationConfig
    num_frames: int
    recall_at: dict[int, float]
    recall_vs_distance: dict[float, float]
    frames_without_map_place: int
    frames_without_truth: int
    availability: float
    priors_published: int
    prior_precision: float
    prior_error_median_m: float
    prior_error_p95_m: float
    heading_error_median_deg: float
    heading_error_p95_deg: float
    covariance_coverage_95: float
    map_matches: PrecisionRecall
    loop_candidates: LoopClosureMetrics
    latency: LatencySummary | None
    frames: FrameCounts
    prior_errors_m: tuple[float, ...] = field(repr=False)
    latencies_ms: tuple[float, ...] = field(repr=False)
    per_frame: FrameScores | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        per_frame: FrameScores,
        config: EvaluationConfig,
        frames: FrameCounts,
        latencies_ms: Sequence[float] | np.ndarray = (),
    ) -> LocalizationReport:
        """The report of scored frames."""
        thr = config.threshold_m
        n = len(per_frame)
        known = np.isfinite(per_frame.truth_xy).all(axis=1)
        nearest = per_frame.nearest_place_m
        has_place = known & ~(nearest > thr)  # nearest nan (map not given): taken to have a place
        top1_ok = np.nan_to_num(per_frame.top1_errors_m, nan=math.inf) <= thr
        recall_at = {}
        for k in config.recall_ns:
            hit = (per_frame.first_hit_rank >= 1) & (per_frame.first_hit_rank <= k)
            # a frame without a hit among fewer than k matches may have one at rank <= k: unknown
            unknown = has_place & (per_frame.first_hit_rank == 0) & (per_frame.match_depth < k)
            recall_at[k] = math.nan if unknown.any() else _share(hit[has_place])
        recall_vs_distance = {}
        for d in config.distance_thresholds_m:
            reachable = known & ~(nearest > d)
            ok = np.nan_to_num(per_frame.top1_errors_m, nan=math.inf) <= d
            recall_vs_distance[d] = _share(ok[reachable])
        errors = per_frame.prior_errors_m
        judged = np.isfinite(errors)  # priors whose truth is known
        inside = per_frame.prior_inside_95
        loop = per_frame.loop
        loop_positives = int((loop.revisit | loop.best_correct).sum())
        values = np.asarray(latencies_ms, dtype=np.float64).reshape(-1)
        return cls(
            config=config,
            num_frames=n,
            recall_at=recall_at,
            recall_vs_distance=recall_vs_distance,
            frames_without_map_place=int((known & (nearest > thr)).sum()),
            frames_without_truth=int((~known).sum()),
            availability=_share(per_frame.has_prior),
            priors_published=int(per_frame.has_prior.sum()),
            prior_precision=_share(errors[judged] <= thr),
            prior_error_median_m=percentile(errors, 50),
            prior_error_p95_m=percentile(errors, 95),
            heading_error_median_deg=percentile(per_frame.heading_errors_deg, 50),
            heading_error_p95_deg=percentile(per_frame.heading_errors_deg, 95),
            covariance_coverage_95=_share(inside[np.isfinite(inside)] == 1.0),
            map_matches=PrecisionRecall.of(
                np.where(known, per_frame.top1_scores, math.nan), top1_ok, int((has_place | top1_ok).sum())
            ),
            loop_candidates=LoopClosureMetrics(
                frames_with_candidates=_share(loop.count > 0),
                candidates=int(loop.count.sum()),
                wrong_candidates=int(loop.wrong.sum()),
                revisit_frames=int(loop.revisit.sum()),
                curve=PrecisionRecall.of(loop.best_score, loop.best_correct, loop_positives),
            ),
            latency=LatencySummary.of(values),
            frames=frames,
            prior_errors_m=tuple(float(v) for v in np.sort(errors[judged])),
            latencies_ms=tuple(float(v) for v in values[np.isfinite(values)]),
            per_frame=per_frame,
        )

    # ---------------------------------------------------------------- names
    @property
    def threshold_m(self) -> float:
        return self.config.threshold_m

    @property
    def loop_recall_at_100_precision(self) -> float:
        return self.loop_candidates.curve.recall_at_100_precision

    # The names the demo (vbl_ros/ros/demo.py) and test_frames_across_drives read.
    @property
    def recall_at_1(self) -> float:
        """Recall@1 (``recall_at[1]``; computed from the frames when 1 is not among the configured N)."""
        return self.recall_at[1] if 1 in self.recall_at else self._top1_recall()

    @property
    def fraction_published(self) -> float:
        return self.availability

    @property
    def precision(self) -> float:
        return self.prior_precision

    @property
    def median_error_m(self) -> float:
        return self.prior_error_median_m

    @property
    def errors_m(self) -> np.ndarray:
        """``(F,)`` prior errors, ``nan`` where no prior was published."""
        return self._frames().prior_errors_m

    @property
    def top1_errors_m(self) -> np.ndarray:
        """``(F,)`` top-1 match errors, ``nan`` where the frame got no match."""
        return self._frames().top1_errors_m

    def _frames(self) -> FrameScores:
        if self.per_frame is None:
            raise ValueError("this report was read back from JSON: it has no per-frame scores")
        return self.per_frame

    def _top1_recall(self) -> float:
        f = self._frames()
        has_place = np.isfinite(f.truth_xy).all(axis=1) & ~(f.nearest_place_m > self.threshold_m)
        return _share((np.nan_to_num(f.top1_errors_m, nan=math.inf) <= self.threshold_m)[has_place])

    # ---------------------------------------------------------------- text
    def summary(self) -> str:
        thr = f"{self.threshold_m:g} m"
        apart = [
            f"{count} frames {what}"
            for count, what in (
                (self.frames_without_map_place, "off the map"),
                (self.frames_without_truth, "without truth"),
            )
            if count
        ]
        text = (
            f"{self.num_frames} frames: R@1 {_pct(self.recall_at_1)} within {thr}"
            + (f" ({', '.join(apart)})" if apart else "")
            + f"; pose priors for {self.priors_published} frames ({_pct(self.availability)}), "
            f"{_pct(self.prior_precision)} of them within {thr}, median error {self.prior_error_median_m:.2f} m, "
            f"{_pct(self.covariance_coverage_95)} inside their 95 % ellipse"
        )
        loop = self.loop_candidates
        if loop.candidates:
            text += (
                f"; loop candidates for {_pct(loop.frames_with_candidates)} of frames, "
                f"{loop.wrong_candidates} of {loop.candidates} wrong"
            )
        if self.latency is not None:
            text += f"; latency p50 {self.latency.p50_ms:.1f} ms, p95 {self.latency.p95_ms:.1f} ms"
        return text

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """The report's entry of ``report.json`` (``nan`` stays ``nan``; the writer makes it ``null``)."""
        lat = self.latency
        return {
            "num_frames": self.num_frames,
            "threshold_m": self.threshold_m,
            "loop_exclude_recent_s": self.config.loop_exclude_recent_s,
            "recall_at": {str(k): v for k, v in self.recall_at.items()},
            "recall_vs_distance_m": {f"{d:g}": v for d, v in self.recall_vs_distance.items()},
            "frames_without_map_place": self.frames_without_map_place,
            "frames_without_truth": self.frames_without_truth,
            "availability": self.availability,
            "prior_precision": self.prior_precision,
            "priors_published": self.priors_published,
            "prior_error_median_m": self.prior_error_median_m,
            "prior_error_p95_m": self.prior_error_p95_m,
            "heading_error_median_deg": self.heading_error_median_deg,
            "heading_error_p95_deg": self.heading_error_p95_deg,
            "covariance_coverage_95": self.covariance_coverage_95,
            "loop_recall_at_100_precision": self.loop_recall_at_100_precision,
            "latency_ms": {
                "p50": math.nan if lat is None else lat.p50_ms,
                "p95": math.nan if lat is None else lat.p95_ms,
                "p99": math.nan if lat is None else lat.p99_ms,
                "count": 0 if lat is None else lat.count,
            },
            "frames": dataclasses.asdict(self.frames),
            "map_matches": self.map_matches.to_dict(),
            "loop_candidates": self.loop_candidates.to_dict(),
            "prior_errors_m": list(self.prior_errors_m),
            "latencies_ms": list(self.latencies_ms),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LocalizationReport:
        """A report from its :meth:`to_dict` (with ``null`` for ``nan``), without per-frame scores."""
        recall_at = {int(k): json_number(v) for k, v in d["recall_at"].items()}
        recall_vs_distance = {float(k): json_number(v) for k, v in d["recall_vs_distance_m"].items()}
        config = EvaluationConfig(
            threshold_m=float(d["threshold_m"]),
            recall_ns=tuple(recall_at),
            distance_thresholds_m=tuple(recall_vs_distance),
            loop_exclude_recent_s=float(d["loop_exclude_recent_s"]),
        )
        lat = d["latency_ms"]
        latency = (
            LatencySummary(
                json_number(lat["p50"]), json_number(lat["p95"]), json_number(lat["p99"]), int(lat["count"])
            )
            if int(lat["count"])
            else None
        )
        return cls(
            config=config,
            num_frames=int(d["num_frames"]),
            recall_at=recall_at,
            recall_vs_distance=recall_vs_distance,
            frames_without_map_place=int(d["frames_without_map_place"]),
            frames_without_truth=int(d["frames_without_truth"]),
            availability=json_number(d["availability"]),
            priors_published=int(d["priors_published"]),
            prior_precision=json_number(d["prior_precision"]),
            prior_error_median_m=json_number(d["prior_error_median_m"]),
            prior_error_p95_m=json_number(d["prior_error_p95_m"]),
            heading_error_median_deg=json_number(d["heading_error_median_deg"]),
            heading_error_p95_deg=json_number(d["heading_error_p95_deg"]),
            covariance_coverage_95=json_number(d["covariance_coverage_95"]),
            map_matches=PrecisionRecall.from_dict(d["map_matches"]),
            loop_candidates=LoopClosureMetrics.from_dict(d["loop_candidates"]),
            latency=latency,
            frames=FrameCounts(**{k: int(v) for k, v in d["frames"].items()}),
            prior_errors_m=tuple(json_number(v) for v in d["prior_errors_m"]),
            latencies_ms=tuple(json_number(v) for v in d["latencies_ms"]),
        )


def combine(reports: Sequence[LocalizationReport]) -> LocalizationReport:
    """One report of several drives' frames together ("all"), recomputed from their frames.

    Raises:
        ValueError: no report, a report without per-frame scores (read from JSON), or reports made
            with different settings.
    """
    if not reports:
        raise ValueError("no report to combine")
    configs = {r.config for r in reports}
    if len(configs) != 1:
        raise ValueError(f"reports made with different settings cannot be combined: {configs}")
    parts = [r._frames() for r in reports]
    counts = reports[0].frames
    for r in reports[1:]:
        counts = counts + r.frames
    latencies = [v for r in reports for v in r.latencies_ms]
    return LocalizationReport.of(FrameScores.concatenate(parts), reports[0].config, counts, latencies)


PositionsAt = Callable[[np.ndarray], np.ndarray]


def evaluate_localization(
    results: Sequence[LocalizationResult],
    ground_truth_positions: np.ndarray,
    *,
    threshold_m: float | None = None,
    latencies_ms: Sequence[float] | np.ndarray | None = None,
    map_positions: np.ndarray | None = None,
    ground_truth_yaw_rad: np.ndarray | None = None,
    query_trajectory: Trajectory | PositionsAt | None = None,
    frames: FrameCounts | None = None,
    config: EvaluationConfig | None = None,
) -> LocalizationReport:
    """Score ``F`` results against ``(F, 2|3)`` true positions in the same (the map's) frame.

    Args:
        results: what the localizer said about each frame, in frame order (the truth's order).
        ground_truth_positions: the frames' true positions in the map's frame; ``nan`` rows (truth
            unknown, e.g. outside the query's odometry) are not judged and counted apart.
        threshold_m: success radius; overrides ``config.threshold_m`` when given.
        latencies_ms: latencies, when measured (offline: descriptor + search time; live: image
            published -> output received); non-finite values are frames without a measurement.
        map_positions: ``(M, 2|3)`` the map's keyframe positions; frames with none within the
            threshold are counted apart. ``None``: every frame is taken to have one.
        ground_truth_yaw_rad: ``(F,)`` the frames' true yaw (ENU, radians), ``nan`` where unknown;
            ``None``: no heading error.
        query_trajectory: the query drive's truth in the map's frame, to place loop candidates (a
            :class:`~vbl_ros.geometry.trajectory.Trajectory` or ``stamps_ns -> (N, 2|3)``);
            ``None``: interpolated between the frames' own true positions. (The candidates' own
            ``position``, from the robot's odometry, is not used.)
        frames: frames sent/processed/dropped/rejected; ``None``: those of an offline replay
            (:meth:`FrameCounts.of`).
        config: what counts as right (:class:`EvaluationConfig` defaults: 25 m, R@1/5/10/20).

    Raises:
        ValueError: the results and the truth differ in length, or a loop candidate's keyframe
            stamp lies outside the frames (pass ``query_trajectory``).
        ConfigError: a bad ``threshold_m``.
    """
    config = config or EvaluationConfig()
    if threshold_m is not None:
        config = dataclasses.replace(config, threshold_m=float(threshold_m))
    truth = np.asarray(ground_truth_positions, dtype=np.float64)
    truth_xy = np.zeros((0, 2)) if truth.size == 0 else horizontal(truth)
    n = len(results)
    if len(truth_xy) != n:
        raise ValueError(f"{n} results but {len(truth_xy)} ground-truth positions")
    yaw = (
        np.full(n, math.nan) if ground_truth_yaw_rad is None else np.asarray(ground_truth_yaw_rad, np.float64)
    )
    if yaw.shape != (n,):
        raise ValueError(f"{n} results but ground-truth yaw of shape {yaw.shape}")
    stamps = np.array([r.stamp_ns for r in results], dtype=np.int64)
    nearest, map_size = np.full(n, math.nan), None
    if map_positions is not None:
        m = np.asarray(map_positions, dtype=np.float64)
        m_xy = np.zeros((0, 2)) if m.size == 0 else horizontal(m)
        known = np.isfinite(truth_xy).all(axis=1)
        nearest[known], map_size = nearest_distances(m_xy, truth_xy[known]), len(m_xy)
    per_frame = FrameScores(
        stamps_ns=stamps,
        truth_xy=truth_xy,
        nearest_place_m=nearest,
        **_score_matches(results, truth_xy, config.threshold_m, map_size),
        **_score_priors(results, truth_xy, yaw),
        loop=_score_loops(results, stamps, truth_xy, query_trajectory, config),
    )
    report = LocalizationReport.of(
        per_frame,
        config,
        frames if frames is not None else FrameCounts.of(results),
        () if latencies_ms is None else latencies_ms,
    )
    logger.info("localization: %s", report.summary())
    return report


def _score_matches(
    results: Sequence[LocalizationResult], truth_xy: np.ndarray, thr: float, map_size: int | None
) -> dict[str, np.ndarray]:
    n = len(results)
    first_hit = np.zeros(n, dtype=np.int64)
    depth = np.full(n, _COMPLETE, dtype=np.int64)
    top1_xyz = np.full((n, 3), math.nan)
    top1_scores = np.full(n, math.nan)
    for i, r in enumerate(results):
        if not r.matches:
            continue  # no answer: wrong at every N
        matches = sorted(r.matches, key=lambda m: m.rank)
        xy = np.array([m.keyframe.position[:2] for m in matches], dtype=np.float64)
        hits = np.flatnonzero(np.linalg.norm(xy - truth_xy[i], axis=1) <= thr)
        first_hit[i] = hits[0] + 1 if len(hits) else 0
        if map_size is None or len(matches) < map_size:
            depth[i] = len(matches)
        top1_xyz[i] = matches[0].keyframe.position
        top1_scores[i] = matches[0].score
    top1_errors = np.linalg.norm(top1_xyz[:, :2] - truth_xy, axis=1)
    return {
        "first_hit_rank": first_hit,
        "match_depth": depth,
        "top1_xyz": top1_xyz,
        "top1_errors_m": top1_errors,
        "top1_scores": top1_scores,
    }


def _score_priors(
    results: Sequence[LocalizationResult], truth_xy: np.ndarray, yaw: np.ndarray
) -> dict[str, np.ndarray]:
    n = len(results)
    has_prior = np.array([r.pose_prior is not None for r in results], dtype=bool)
    errors, heading, inside = np.full(n, math.nan), np.full(n, math.nan), np.full(n, math.nan)
    for i, r in enumerate(results):
        prior = r.pose_prior
        if prior is None or not np.isfinite(truth_xy[i]).all():
            continue
        error_xy = np.asarray(prior.position[:2], dtype=np.float64) - truth_xy[i]
        errors[i] = float(np.linalg.norm(error_xy))
        if math.isfinite(yaw[i]):
            prior_yaw = float(quaternion_to_euler(np.asarray(prior.orientation, dtype=np.float64))[2])
            heading[i] = float(heading_error_deg(prior_yaw, yaw[i]))
        cov = np.asarray(prior.covariance, dtype=np.float64)
        inside[i] = float(cov.size == 36 and inside_95_ellipse(error_xy, cov.reshape(6, 6)[:2, :2]))
    return {
        "has_prior": has_prior,
        "prior_errors_m": errors,
        "heading_errors_deg": heading,
        "prior_inside_95": inside,
    }


def _score_loops(
    results: Sequence[LocalizationResult],
    stamps: np.ndarray,
    truth_xy: np.ndarray,
    query_trajectory: Trajectory | PositionsAt | None,
    config: EvaluationConfig,
) -> LoopClosureScores:
    n = len(results)
    count = np.array([len(r.loop_candidates) for r in results], dtype=np.int64)
    wrong = np.zeros(n, dtype=np.int64)
    best_score = np.full(n, math.nan)
    best_correct = np.zeros(n, dtype=bool)
    frame_of = np.repeat(np.arange(n), count)
    candidates = [c for r in results for c in r.loop_candidates]
    if candidates:
        at = np.array([c.keyframe_stamp_ns for c in candidates], dtype=np.int64)
        distance = np.linalg.norm(
            horizontal(_positions_at(at, query_trajectory, stamps, truth_xy)) - truth_xy[frame_of], axis=1
        )
        judged, correct = np.isfinite(distance), distance <= config.threshold_m  # nan: truth unknown
        np.add.at(wrong, frame_of, judged & ~correct)
        start = 0
        for i in np.flatnonzero(count):
            best = start + int(np.argmin([c.rank for c in candidates[start : start + count[i]]]))
            if judged[best]:
                best_score[i], best_correct[i] = candidates[best].score, correct[best]
            start += count[i]
    exclude_ns = round(config.loop_exclude_recent_s * 1e9)
    return LoopClosureScores(
        count=count,
        wrong=wrong,
        best_score=best_score,
        best_correct=best_correct,
        revisit=revisited(stamps, truth_xy, config.threshold_m, exclude_ns),
    )


def _positions_at(
    stamps_ns: np.ndarray,
    query_trajectory: Trajectory | PositionsAt | None,
    frame_stamps: np.ndarray,
    frame_xy: np.ndarray,
) -> np.ndarray:
    """The query drive's true positions at ``stamps_ns`` (loop candidates' keyframe stamps)."""
    if isinstance(query_trajectory, Trajectory):
        return query_trajectory.interpolate(stamps_ns)[0]
    if query_trajectory is not None:
        return np.asarray(query_trajectory(stamps_ns), dtype=np.float64)
    order = np.argsort(frame_stamps, kind="stable")
    s, xy = frame_stamps[order], frame_xy[order]
    outside = (stamps_ns < s[0]) | (stamps_ns > s[-1])
    if outside.any():
        raise ValueError(
            f"loop candidate keyframe stamp {int(stamps_ns[np.argmax(outside)])} ns lies outside the frames "
            f"({int(s[0])}..{int(s[-1])} ns); pass the query drive's trajectory as query_trajectory"
        )
    t = (stamps_ns - s[0]).astype(np.float64)
    ts = (s - s[0]).astype(np.float64)
    return np.stack([np.interp(t, ts, xy[:, 0]), np.interp(t, ts, xy[:, 1])], axis=1)


def _share(flags: np.ndarray) -> float:
    """The share of true values, ``nan`` of nothing."""
    flags = np.asarray(flags, dtype=bool)
    return float(flags.mean()) if len(flags) else math.nan


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:.1f} %"
