"""The one retrieval evaluation of vbl, shared by training validation, benchmarks and replay evaluation.

:func:`evaluate_retrieval`: descriptors -> exact FAISS search (or a :class:`KeyframeMap`'s own
index) -> recall@N within ``threshold_m`` (horizontal distance in one frame: the map's, see
:mod:`vbl_ros.evaluation.ground_truth`) and the top-1 position error. Recall counts the queries that
have a map keyframe within ``threshold_m``, as :func:`~vbl_ros.evaluation.localization.evaluate_localization`
does for a replay's matches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vbl_ros.evaluation.metrics import nearest_distances
from vbl_ros.mapping import KeyframeMap

__all__ = ["RetrievalReport", "evaluate_retrieval", "horizontal"]

logger = logging.getLogger(__name__)


def horizontal(positions: np.ndarray) -> np.ndarray:
    """The ``(N, 2)`` x, y of ``(N, 2|3)`` positions (a ``ValueError`` for any other shape)."""
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"positions must be (N, 2) or (N, 3), got {p.shape}")
    return p[:, :2]


@dataclass(frozen=True)
class RetrievalReport:
    """Recall@N and top-1 error of a retrieval run.

    Attributes:
        ks: the N of recall@N.
        recalls: recall@N: the fraction of queries with a keyframe within ``threshold_m`` among their
            top N, over the queries that have one in the map at all (``has_positive``; ``nan`` if none).
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

    def to_dict(self) -> dict[str, float | int]:
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
    q_pos = horizontal(query_positions)
    if len(q_desc) != len(q_pos):
        raise ValueError(f"{len(q_desc)} query descriptors but {len(q_pos)} query positions")
    if isinstance(map_descriptors_or_map, KeyframeMap):
        kmap = map_descriptors_or_map
        m_pos = horizontal(kmap.positions() if map_positions is None else map_positions)
        size = len(kmap)
        search = kmap.search
    else:
        import faiss

        m_desc = np.ascontiguousarray(np.asarray(map_descriptors_or_map, dtype=np.float32))
        if map_positions is None:
            raise ValueError("map_positions are required with map descriptors")
        m_pos = horizontal(map_positions)
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
    # queries with no keyframe in range cannot be right: counted apart, as evaluate_localization does
    has_positive = nearest_distances(m_pos, q_pos) <= threshold_m
    recalls = {
        k: float(correct[has_positive, j].mean()) if has_positive.any() else math.nan
        for j, k in enumerate(ks)
    }
    report = RetrievalReport(
        ks=ks,
        recalls=recalls,
        threshold_m=float(threshold_m),
        median_error_m=float(np.median(dist[:, 0])),
        correct=correct,
        top1_ids=ids[:, 0],
        top1_scores=np.asarray(scores, dtype=np.float32)[:, 0],
        top1_errors_m=dist[:, 0],
        has_positive=has_positive,
    )
    logger.info("retrieval: %s", report.summary())
    return report
