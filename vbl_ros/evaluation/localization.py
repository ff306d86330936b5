"""Scoring what the localizer said about each frame (top-1 match, pose prior) against ground truth.

The same routine scores an offline replay (:mod:`vbl_ros.evaluation.replay`), the live node's
outputs collected over DDS (the demo, ``benchmarks/``) and, next, training validation. Truth and
results must be in one frame: the map's (:func:`vbl_ros.evaluation.ground_truth.ground_truth`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vbl_ros.evaluation.retrieval import horizontal
from vbl_ros.localizer import LocalizationResult

__all__ = ["LatencySummary", "LocalizationReport", "evaluate_localization"]

logger = logging.getLogger(__name__)


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
        values = np.asarray(latencies_ms, dtype=np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            return None
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), len(values))


@dataclass(frozen=True)
class LocalizationReport:
    """Pose priors and top-1 matches of a replay against ground truth.

    Attributes:
        num_frames: frames scored.
        threshold_m: success radius (horizontal metres), as configured.
        fraction_published: frames with a pose prior.
        recall_at_1: frames whose top-1 map match is within ``threshold_m`` (published or not).
        precision: published priors within ``threshold_m`` of the truth (nan when none was published).
        median_error_m: median horizontal error of the published priors (nan when none).
        errors_m: ``(F,)`` horizontal prior error, nan where nothing was published.
        top1_errors_m: ``(F,)`` horizontal error of the top-1 match, nan without matches.
        latency: latency percentiles, when latencies were measured (``None`` otherwise).
    """

    num_frames: int
    threshold_m: float
    fraction_published: float
    recall_at_1: float
    precision: float
    median_error_m: float
    errors_m: np.ndarray = field(repr=False)
    top1_errors_m: np.ndarray = field(repr=False)
    latency: LatencySummary | None = None

    @property
    def priors_published(self) -> int:
        return int(np.isfinite(self.errors_m).sum())

    def summary(self) -> str:
        text = (
            f"{self.num_frames} frames: R@1 {100 * self.recall_at_1:.1f} % within {self.threshold_m:g} m; "
            f"pose priors for {self.priors_published} frames ({100 * self.fraction_published:.1f} %), "
            f"{100 * self.precision:.1f} % of them within {self.threshold_m:g} m, "
            f"median error {self.median_error_m:.2f} m"
        )
        if self.latency is not None:
            text += f"; latency p50 {self.latency.p50_ms:.1f} ms, p95 {self.latency.p95_ms:.1f} ms"
        return text

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-serialisable scalars."""
        return {
            "num_frames": self.num_frames,
            "threshold_m": self.threshold_m,
            "fraction_published": self.fraction_published,
            "priors_published": self.priors_published,
            "recall@1": self.recall_at_1,
            "precision": self.precision,
            "median_error_m": self.median_error_m,
            "latency_p50_ms": None if self.latency is None else self.latency.p50_ms,
            "latency_p95_ms": None if self.latency is None else self.latency.p95_ms,
            "latency_p99_ms": None if self.latency is None else self.latency.p99_ms,
        }


def evaluate_localization(
    results: Sequence[LocalizationResult],
    ground_truth_positions: np.ndarray,
    *,
    threshold_m: float = 25.0,
    latencies_ms: Sequence[float] | np.ndarray | None = None,
) -> LocalizationReport:
    """Score ``F`` results against ``(F, 2|3)`` true positions in the same (the map's) frame.

    Args:
        results: what the localizer said about each frame, in the order of the truth.
        ground_truth_positions: the frames' true positions in the map's frame.
        threshold_m: success radius.
        latencies_ms: per-frame latencies, when measured (offline: descriptor + search time; live:
            image published -> output received); non-finite values are frames without a measurement.
    """
    truth = horizontal(ground_truth_positions)
    if len(results) != len(truth):
        raise ValueError(f"{len(results)} results but {len(truth)} ground-truth positions")
    if not len(results):
        raise ValueError("no results to evaluate")
    if not threshold_m > 0:
        raise ValueError(f"threshold_m must be > 0, got {threshold_m}")
    errors = np.full(len(results), np.nan)
    top1 = np.full(len(results), np.nan)
    for i, r in enumerate(results):
        if r.pose_prior is not None:
            errors[i] = float(np.linalg.norm(np.asarray(r.pose_prior.position[:2]) - truth[i]))
        if r.matches:
            top1[i] = float(np.linalg.norm(np.asarray(r.matches[0].keyframe.position[:2]) - truth[i]))
    published = ~np.isnan(errors)
    report = LocalizationReport(
        num_frames=len(results),
        threshold_m=float(threshold_m),
        fraction_published=float(published.mean()),
        recall_at_1=float((np.nan_to_num(top1, nan=np.inf) <= threshold_m).mean()),
        precision=float((errors[published] <= threshold_m).mean()) if published.any() else math.nan,
        median_error_m=float(np.median(errors[published])) if published.any() else math.nan,
        errors_m=errors,
        top1_errors_m=top1,
        latency=None if latencies_ms is None else LatencySummary.of(latencies_ms),
    )
    logger.info("localization: %s", report.summary())
    return report
