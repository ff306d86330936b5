"""Choosing each query's positive and negatives: partial hard mining by cached descriptors, or random.

Partial mining (NetVLAD's recipe, the strongest public one for GPS-tagged drives): for each query,
the positive is the one of its positives nearest in descriptor space, and the negatives are the
hardest ones (nearest in descriptor space) that still violate the margin, among a random pool of
``negative_pool`` negatives; a query none of whose pooled negatives violates the margin is skipped.
Distances come from a cache of every training frame's descriptor that the training loop refreshes
every ``cache_refresh_queries`` queries. Random mining (the baseline) takes a random positive and
random negatives. Mining draws from one ``numpy`` generator, so that every process of a distributed
run mines the same tuples for the global batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vbl_ros.training.triplets import Triplets

__all__ = ["MiningStats", "TrainingTuple", "TupleBatch", "mine"]


@dataclass(frozen=True)
class TrainingTuple:
    """One query with its positive and negatives (frame indices)."""

    query: int
    positive: int
    negatives: tuple[int, ...]


@dataclass(frozen=True)
class MiningStats:
    """What mining a batch found: queries asked, tuples kept, negatives used, and their mean hinge
    by the cached descriptors (``nan`` for random mining)."""

    queries: int
    tuples: int
    negatives: int
    mean_violation: float


def _distances(cache: np.ndarray, q: int, others: np.ndarray) -> np.ndarray:
    return np.linalg.norm(cache[others] - cache[q], axis=1)


def mine(
    triplets: Triplets,
    batch: Sequence[int],
    rng: np.random.Generator,
    *,
    mode: str,
    num_negatives: int,
    negative_pool: int,
    margin: float,
    cache: np.ndarray | None = None,
) -> tuple[list[TrainingTuple], MiningStats]:
    """The tuples of a batch of queries (positions in ``triplets.queries``).

    Args:
        triplets: positives and negatives of the queries.
        batch: the queries of the batch.
        rng: the mining generator (advanced).
        mode: ``partial`` (needs ``cache``) or ``random``.
        num_negatives: negatives per tuple (at most, for partial mining).
        negative_pool: size of the random pool partial mining picks from.
        margin: the triplet margin.
        cache: ``(N, D)`` descriptors of every frame (partial mining).
    """
    tuples: list[TrainingTuple] = []
    violations: list[float] = []
    for q in batch:
        query = int(triplets.queries[q])
        positives = triplets.positives[q]
        if mode == "random":
            positive = int(positives[rng.integers(len(positives))])
            negatives = triplets.sample_negatives(q, num_negatives, rng)
            tuples.append(TrainingTuple(query, positive, tuple(int(n) for n in negatives)))
            continue
        if cache is None:
            raise ValueError("partial mining needs the descriptor cache")
        d_pos = _distances(cache, query, positives)
        best = int(np.argmin(d_pos))
        pool = triplets.sample_negatives(q, negative_pool, rng)
        d_neg = _distances(cache, query, pool)
        hinge = margin + d_pos[best] - d_neg
        violating = np.flatnonzero(hinge > 0)
        if len(violating) == 0:
            continue
        hardest = violating[np.argsort(d_neg[violating], kind="stable")[:num_negatives]]
        violations.extend(hinge[hardest].tolist())
        tuples.append(TrainingTuple(query, int(positives[best]), tuple(int(n) for n in pool[hardest])))
    stats = MiningStats(
        queries=len(batch),
        tuples=len(tuples),
        negatives=sum(len(t.negatives) for t in tuples),
        mean_violation=float(np.mean(violations)) if violations else float("nan"),
    )
    return tuples, stats


@dataclass(frozen=True)
class TupleBatch:
    """Tuples laid out as one batch of images: each tuple's query, positive, then its negatives.

    Attributes:
        frames: ``(B,)`` frame index of each image.
        query, positive: ``(T,)`` the image rows of each tuple's query and positive.
        negative: ``(M,)`` the image rows of the negatives; ``pair_tuple``: ``(M,)`` their tuple.
    """

    frames: np.ndarray
    query: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    pair_tuple: np.ndarray

    @property
    def num_tuples(self) -> int:
        return len(self.query)

    @classmethod
    def from_tuples(cls, tuples: Sequence[TrainingTuple]) -> TupleBatch:
        frames: list[int] = []
        query, positive, negative, pair_tuple = [], [], [], []
        for t, item in enumerate(tuples):
            query.append(len(frames))
            positive.append(len(frames) + 1)
            frames += [item.query, item.positive]
            for n in item.negatives:
                negative.append(len(frames))
                pair_tuple.append(t)
                frames.append(n)
        as_int = lambda values: np.asarray(values, dtype=np.int64)  # noqa: E731
        return cls(as_int(frames), as_int(query), as_int(positive), as_int(negative), as_int(pair_tuple))
