"""Triplets from the geotags: which frames of the training drives are positives and negatives of each other.

A positive of a query frame is a frame of ANOTHER drive within ``pos_radius_m`` (horizontal) whose
heading differs by less than ``max_heading_deg`` (the same place seen the same way, in another
condition); its negatives are frames, of any drive, farther than ``neg_radius_m``. Frames between
the two radii are neither. A frame is a query when it has at least one positive and one negative.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["Triplets", "find_triplets", "heading_difference"]

logger = logging.getLogger(__name__)


def heading_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute difference of headings (radians), in ``[0, pi]``."""
    return np.abs(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b)))))


@dataclass(frozen=True)
class Triplets:
    """Positives and negatives of the query frames of a :class:`~vbl_ros.training.frames.FrameSet`.

    Attributes:
        queries: ``(Q,)`` frame indices of the queries.
        positives: per query, the frame indices of its positives (non-empty).
        near: per query, the frame indices within ``neg_radius_m`` (never negatives), sorted.
        num_frames: ``N``, the frames negatives are drawn from (``0 .. N-1``).
    """

    queries: np.ndarray
    positives: tuple[np.ndarray, ...]
    near: tuple[np.ndarray, ...]
    num_frames: int

    def __len__(self) -> int:
        return len(self.queries)

    def sample_negatives(self, q: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """Up to ``count`` distinct random negatives of query ``q`` (a query's position, not a frame index)."""
        near = self.near[q]
        available = self.num_frames - len(near)
        draw = min(self.num_frames, count + len(near))
        candidates = rng.choice(self.num_frames, size=draw, replace=False)
        negatives = candidates[~np.isin(candidates, near, assume_unique=True)]
        return negatives[: min(count, available)]


def find_triplets(
    positions: np.ndarray,
    headings: np.ndarray,
    drives: np.ndarray,
    *,
    pos_radius_m: float,
    max_heading_deg: float,
    neg_radius_m: float,
) -> Triplets:
    """The queries, positives and exclusion zones of frames at ``positions`` ``(N, 2|3)`` (one frame).

    Args:
        positions: frame positions (only x, y are used).
        headings: ``(N,)`` radians.
        drives: ``(N,)`` drive index of each frame (positives come from other drives).
        pos_radius_m, max_heading_deg, neg_radius_m: see :class:`~vbl_ros.training.config.TrainConfig`.
    """
    xy = np.asarray(positions, dtype=np.float64)[:, :2]
    tree = cKDTree(xy)
    within_pos = tree.query_ball_point(xy, pos_radius_m)
    within_neg = tree.query_ball_point(xy, neg_radius_m)
    max_heading = np.deg2rad(max_heading_deg)
    queries, positives, near = [], [], []
    for i in range(len(xy)):
        candidates = np.asarray(within_pos[i], dtype=np.int64)
        keep = (drives[candidates] != drives[i]) & (
            heading_difference(headings[candidates], headings[i]) < max_heading
        )
        excluded = np.sort(np.asarray(within_neg[i], dtype=np.int64))
        if keep.any() and len(excluded) < len(xy):
            queries.append(i)
            positives.append(np.sort(candidates[keep]))
            near.append(excluded)
    logger.info(
        "triplets: %d of %d frames are queries (positives within %g m and %g deg, negatives beyond %g m)",
        len(queries), len(xy), pos_radius_m, max_heading_deg, neg_radius_m,
    )  # fmt: skip
    return Triplets(np.asarray(queries, dtype=np.int64), tuple(positives), tuple(near), len(xy))
