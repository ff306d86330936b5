"""The one evaluation routine of vbl, shared by training validation, benchmarks and replay evaluation.

:func:`evaluate_retrieval`: descriptors -> exact FAISS search (or a :class:`KeyframeMap`'s own
index) -> recall@N within ``threshold_m`` (25 m, horizontal distance in the map frame / UTM) and
the top-1 position error. :func:`evaluate_localization` scores the :class:`LocalizationResult`s of a
replay against ground truth. :func:`plot_route` draws correct (green) and wrong (red) matches.
"""

from __future__ import annotations

import logging
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vbl_ros.mapping import KeyframeMap

__all__ = [
    "LocalizationReport",
    "RetrievalReport",
    "evaluate_localization",
    "evaluate_retrieval",
    "plot_route",
    "plot_localization",
]

logger = logging.getLogger(__name__)


def _horizontal(positions: np.ndarray) -> np.ndarray:
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"positions must be (N, 2) or (N, 3), got {p.shape}")
    return p[:, :2]


@dataclass(frozen=True)
class RetrievalReport:
    """Recall@N and top-1 error of a retrieval run.

    Attributes:
        ks: the N of recall@N.
        recalls: recall@N (fraction of queries with a keyframe within ``threshold_m`` among the top N).
        threshold_m: success radius (horizontal metres).
        median_error_m: median horizontal distance between each query and its top-1 keyframe.
        correct: ``(Q, len(ks))`` bool, query q correct at ``ks[j]``.
        top1_ids: ``(Q,)`` top-1 keyframe ids; ``top1_scores`` their cosine similarities.
        top1_errors_m: ``(Q,)`` horizontal error of the top-1 keyframe.
        has_positive: ``(Q,)`` whether any map keyframe lies within ``threshold_m`` of the query.
    """

    ks: tuple[int, ...]
    recalls: dict[int, float]
    threshold_m: float
    median_error_m: float
    correct: np.ndarray = field(repr=False)
    top1_ids: np.ndarray = field(repr=False)
    top1_scores: np.ndarray = field(repr=False)
    top1_errors_m: np.ndarray = field(repr=False)
    has_positive: np.ndarray = field(repr=False)

    @property
    def num_queries(self) -> int:
        return len(self.top1_ids)

    @property
    def top1_correct(self) -> np.ndarray:
        """``(Q,)`` bool: the top-1 keyframe is within ``threshold_m``."""
        return self.top1_errors_m <= self.threshold_m

    def summary(self) -> str:
        recalls = ", ".join(f"R@{k} {100 * self.recalls[k]:.1f}" for k in self.ks)
        return (
            f"{recalls} (within {self.threshold_m:g} m, {self.num_queries} queries, "
            f"{int(self.has_positive.sum())} with a keyframe in range); "
            f"median top-1 error {self.median_error_m:.1f} m"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable scalars."""
        return {
            **{f"recall@{k}": self.recalls[k] for k in self.ks},
            "threshold_m": self.threshold_m,
            "median_error_m": self.median_error_m,
            "num_queries": self.num_queries,
            "num_with_positive": int(self.has_positive.sum()),
        }


def evaluate_retrieval(
    query_descriptors: np.ndarray,
    query_positions: np.ndarray,
    map_descriptors_or_map: np.ndarray | KeyframeMap,
    map_positions: np.ndarray | None = None,
    *,
    ks: Sequence[int] = (1, 5, 10),
    threshold_m: float = 25.0,
) -> RetrievalReport:
    """Recall@N of ``Q`` queries against a map.

    Args:
        query_descriptors: ``(Q, D)`` unit-L2 float32.
        query_positions: ``(Q, 2|3)`` ground-truth positions (map frame or UTM; only x, y are used).
        map_descriptors_or_map: ``(M, D)`` map descriptors (searched exactly) or a :class:`KeyframeMap`
            (searched with its own index, so approximate indexes are evaluated as deployed).
        map_positions: ``(M, 2|3)``; taken from the map when a :class:`KeyframeMap` is given.
        ks: the N of recall@N.
        threshold_m: success radius.
    """
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    q_desc = np.ascontiguousarray(np.asarray(query_descriptors, dtype=np.float32))
    q_pos = _horizontal(query_positions)
    if len(q_desc) != len(q_pos):
        raise ValueError(f"{len(q_desc)} query descriptors but {len(q_pos)} query positions")
    if isinstance(map_descriptors_or_map, KeyframeMap):
        kmap = map_descriptors_or_map
        m_pos = _horizontal(kmap.positions() if map_positions is None else map_positions)
        size = len(kmap)
        search = kmap.search
    else:
        import faiss

        m_desc = np.ascontiguousarray(np.asarray(map_descriptors_or_map, dtype=np.float32))
        if map_positions is None:
            raise ValueError("map_positions are required with map descriptors")
        m_pos = _horizontal(map_positions)
        if len(m_desc) != len(m_pos):
            raise ValueError(f"{len(m_desc)} map descriptors but {len(m_pos)} map positions")
        index = faiss.IndexFlatIP(m_desc.shape[1])
        index.add(m_desc)
        size = len(m_desc)

        def search(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            return index.search(x, k)

    if size == 0 or len(q_desc) == 0:
        raise ValueError("evaluation needs at least one query and one map keyframe")
    k_max = min(ks[-1], size)
    scores, ids = search(q_desc, k_max)
    ids = np.asarray(ids, dtype=np.int64)
    dist = np.linalg.norm(m_pos[np.clip(ids, 0, None)] - q_pos[:, None, :], axis=2)
    dist[ids < 0] = np.inf
    within = dist <= threshold_m
    first_hit = np.where(within.any(axis=1), within.argmax(axis=1), np.iinfo(np.int64).max)
    correct = np.stack([first_hit < k for k in ks], axis=1)
    recalls = {k: float(correct[:, j].mean()) for j, k in enumerate(ks)}
    # any keyframe in range at all (the best any method could do); centred for float32 precision
    import faiss

    centre = m_pos.mean(axis=0)
    positions_index = faiss.IndexFlatL2(2)
    positions_index.add(np.ascontiguousarray(m_pos - centre, dtype=np.float32))
    nearest_sq, _ = positions_index.search(np.ascontiguousarray(q_pos - centre, dtype=np.float32), 1)
    nearest = np.sqrt(np.maximum(nearest_sq[:, 0], 0.0))
    report = RetrievalReport(
        ks=ks,
        recalls=recalls,
        threshold_m=float(threshold_m),
        median_error_m=float(np.median(dist[:, 0])),
        correct=correct,
        top1_ids=ids[:, 0],
        top1_scores=np.asarray(scores, dtype=np.float32)[:, 0],
        top1_errors_m=dist[:, 0],
        has_positive=nearest <= threshold_m,
    )
    logger.info("retrieval: %s", report.summary())
    return report


@dataclass(frozen=True)
class LocalizationReport:
    """Pose priors of a replay against ground truth.

    Attributes:
        num_frames: frames localized.
        fraction_published: frames with a pose prior.
        recall_at_1: frames whose top-1 map match is within ``threshold_m`` (published or not).
        precision: published priors within ``threshold_m`` of the truth.
        median_error_m: median horizontal error of the published priors (nan if none).
        threshold_m: success radius.
        errors_m: ``(F,)`` horizontal prior error, nan where nothing was published.
        top1_errors_m: ``(F,)`` horizontal error of the top-1 match, nan without matches.
        descriptor_ms_p95, search_ms_p95, total_ms_p95: latency percentiles.
    """

    num_frames: int
    fraction_published: float
    recall_at_1: float
    precision: float
    median_error_m: float
    threshold_m: float
    errors_m: np.ndarray = field(repr=False)
    top1_errors_m: np.ndarray = field(repr=False)
    descriptor_ms_p95: float = math.nan
    search_ms_p95: float = math.nan
    total_ms_p95: float = math.nan

    def summary(self) -> str:
        return (
            f"{self.num_frames} frames: {100 * self.fraction_published:.1f} % published, "
            f"precision {100 * self.precision:.1f} %, R@1 {100 * self.recall_at_1:.1f} % "
            f"(within {self.threshold_m:g} m), median prior error {self.median_error_m:.1f} m, "
            f"p95 latency {self.total_ms_p95:.1f} ms (descriptor {self.descriptor_ms_p95:.1f}, "
            f"search {self.search_ms_p95:.1f})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_frames": self.num_frames,
            "fraction_published": self.fraction_published,
            "recall@1": self.recall_at_1,
            "precision": self.precision,
            "median_error_m": self.median_error_m,
            "threshold_m": self.threshold_m,
            "descriptor_ms_p95": self.descriptor_ms_p95,
            "search_ms_p95": self.search_ms_p95,
            "total_ms_p95": self.total_ms_p95,
        }


def evaluate_localization(
    results: Sequence[Any], ground_truth_positions: np.ndarray, threshold_m: float = 25.0
) -> LocalizationReport:
    """Score :class:`~vbl_ros.localizer.LocalizationResult`s against ``(F, 2|3)`` true positions."""
    truth = _horizontal(ground_truth_positions)
    if len(results) != len(truth):
        raise ValueError(f"{len(results)} results but {len(truth)} ground-truth positions")
    if not len(results):
        raise ValueError("no results to evaluate")
    errors = np.full(len(results), np.nan)
    top1 = np.full(len(results), np.nan)
    for i, r in enumerate(results):
        if r.pose_prior is not None:
            errors[i] = float(np.linalg.norm(np.asarray(r.pose_prior.position[:2]) - truth[i]))
        if r.matches:
            top1[i] = float(np.linalg.norm(np.asarray(r.matches[0].keyframe.position[:2]) - truth[i]))
    published = ~np.isnan(errors)
    desc_ms = np.array([r.descriptor_ms for r in results], dtype=float)
    search_ms = np.array([r.search_ms for r in results], dtype=float)
    report = LocalizationReport(
        num_frames=len(results),
        fraction_published=float(published.mean()),
        recall_at_1=float((np.nan_to_num(top1, nan=np.inf) <= threshold_m).mean()),
        precision=float((errors[published] <= threshold_m).mean()) if published.any() else math.nan,
        median_error_m=float(np.median(errors[published])) if published.any() else math.nan,
        threshold_m=float(threshold_m),
        errors_m=errors,
        top1_errors_m=top1,
        descriptor_ms_p95=float(np.percentile(desc_ms, 95)),
        search_ms_p95=float(np.percentile(search_ms, 95)),
        total_ms_p95=float(np.percentile(desc_ms + search_ms, 95)),
    )
    logger.info("localization: %s", report.summary())
    return report


def plot_route(
    report: RetrievalReport,
    map_positions: np.ndarray,
    query_positions: np.ndarray,
    path: Path | str,
    *,
    title: str | None = None,
) -> Path:
    """Save a PNG of the route: map keyframes (grey), queries whose top-1 match is correct (green)
    or wrong (red, with a line to the wrong match). Returns ``path``."""
    m = _horizontal(map_positions)
    matched = np.where(report.top1_ids[:, None] >= 0, m[np.clip(report.top1_ids, 0, None)], np.nan)
    return _plot_matches(
        m, _horizontal(query_positions), matched, report.top1_correct, path, title or report.summary()
    )


def plot_localization(
    report: LocalizationReport,
    map_positions: np.ndarray,
    query_positions: np.ndarray,
    top1_positions: np.ndarray,
    path: Path | str,
    *,
    title: str | None = None,
) -> Path:
    """The same plot for a replay: ``top1_positions`` ``(F, 2|3)`` (nan where nothing matched)."""
    ok = np.nan_to_num(report.top1_errors_m, nan=np.inf) <= report.threshold_m
    return _plot_matches(
        _horizontal(map_positions),
        _horizontal(query_positions),
        _horizontal(top1_positions),
        ok,
        path,
        title or report.summary(),
    )


def _plot_matches(
    m: np.ndarray, q: np.ndarray, matched: np.ndarray, ok: np.ndarray, path: Path | str, title: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    try:
        ax.plot(m[:, 0], m[:, 1], ".", color="0.7", markersize=3, label=f"map keyframes ({len(m)})")
        for i in np.flatnonzero(~ok):
            if not np.isnan(matched[i]).any():
                ax.plot(
                    [q[i, 0], matched[i, 0]],
                    [q[i, 1], matched[i, 1]],
                    "-",
                    color="tab:red",
                    alpha=0.3,
                    linewidth=0.7,
                )
        ax.plot(q[ok, 0], q[ok, 1], "o", color="tab:green", markersize=3, label=f"correct top-1 ({ok.sum()})")
        ax.plot(
            q[~ok, 0], q[~ok, 1], "o", color="tab:red", markersize=3, label=f"wrong top-1 ({(~ok).sum()})"
        )
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x / east (m)")
        ax.set_ylabel("y / north (m)")
        ax.set_title(textwrap.fill(title, 100), fontsize=8)
        ax.legend(loc="best", fontsize=8)
        ax.grid(True, alpha=0.3)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
