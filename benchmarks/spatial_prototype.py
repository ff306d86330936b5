"""Prototype (benchmarks only): search only the keyframes near a place, a grid over the map's positions.

Not used by the localizer: its temporal filter notices a wrong or kidnapped belief through the
global retrieval of every frame, which a search restricted to the believed place would hide
(issue 10 §3 / 11; ``search_floor.py`` measures what it would cost).

When the robot's place is known (a tracking filter), the keyframes more than a few hundred metres away
cannot be its match, and scanning them is what makes a search over a million keyframes cost
milliseconds (``benchmarks/search_floor.py``: an exact search reads every descriptor, 1.28 GB per
query at 1M x 320). :class:`SpatialGrid` buckets the keyframes' ``(x, y)`` into square cells once;
:func:`search_near` scores only the keyframes within ``radius_m`` of a point, exactly (inner products
on the map's float descriptors), so its cost depends on the keyframes in the disc, not on the map.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SpatialGrid", "search_near"]


class SpatialGrid:
    """Keyframe ids bucketed by square cells of ``cell_m`` over their ``(x, y)`` positions.

    Args:
        positions: ``(N, 2+)`` keyframe positions in the map frame (only x and y are used).
        cell_m: side of a cell in metres.
    """

    def __init__(self, positions: np.ndarray, cell_m: float = 50.0) -> None:
        if not (cell_m > 0 and math.isfinite(cell_m)):
            raise ValueError(f"grid cell size must be a positive number of metres, got {cell_m}")
        xy = np.asarray(positions, dtype=np.float64)[:, :2]
        self.cell_m = float(cell_m)
        self._xy = xy
        cells = np.floor(xy / self.cell_m).astype(np.int64)
        order = np.lexsort((cells[:, 1], cells[:, 0]))
        self._ids = order.astype(np.int64)
        sorted_cells = cells[order]
        self._buckets: dict[tuple[int, int], tuple[int, int]] = {}
        if len(order):
            change = np.flatnonzero(np.any(np.diff(sorted_cells, axis=0) != 0, axis=1)) + 1
            starts = np.concatenate([[0], change])
            ends = np.concatenate([change, [len(order)]])
            for s, e in zip(starts, ends, strict=True):
                cx, cy = sorted_cells[s]
                self._buckets[(int(cx), int(cy))] = (int(s), int(e))

    def __len__(self) -> int:
        return len(self._ids)

    def within(self, center: np.ndarray | tuple[float, float], radius_m: float) -> np.ndarray:
        """Ids (ascending) of the keyframes whose ``(x, y)`` lies within ``radius_m`` of ``center``."""
        cx, cy = float(center[0]), float(center[1])
        r = float(radius_m)
        x0, x1 = math.floor((cx - r) / self.cell_m), math.floor((cx + r) / self.cell_m)
        y0, y1 = math.floor((cy - r) / self.cell_m), math.floor((cy + r) / self.cell_m)
        parts = [
            self._ids[s:e]
            for ix in range(x0, x1 + 1)
            for iy in range(y0, y1 + 1)
            if (span := self._buckets.get((ix, iy))) is not None
            for s, e in [span]
        ]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        ids = np.concatenate(parts)
        d2 = np.sum((self._xy[ids] - (cx, cy)) ** 2, axis=1)
        return np.sort(ids[d2 <= r * r])


def search_near(
    descriptors: np.ndarray,
    grid: SpatialGrid,
    query: np.ndarray,
    k: int,
    center: np.ndarray | tuple[float, float],
    radius_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best keyframes within ``radius_m`` of ``center`` by inner product with ``query``.

    Args:
        descriptors: ``(N, D)`` the map's descriptors (the rows ``grid`` was built over).
        grid: the map's :class:`SpatialGrid`.
        query: ``(D,)`` or ``(1, D)`` unit-L2 descriptor.
        k: matches wanted.
        center: ``(x, y)`` in the map frame.
        radius_m: search radius.

    Returns:
        ``(scores, ids)``, each ``(1, k)`` like :meth:`KeyframeMap.search`, best first, padded with
        ``-inf`` / ``-1`` when fewer than ``k`` keyframes lie in the disc.
    """
    ids = grid.within(center, radius_m)
    scores_out = np.full((1, k), -np.inf, dtype=np.float32)
    ids_out = np.full((1, k), -1, dtype=np.int64)
    if len(ids) == 0 or k < 1:
        return scores_out, ids_out
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    scores = descriptors[ids] @ q
    n = min(k, len(ids))
    top = np.argpartition(-scores, n - 1)[:n] if n < len(ids) else np.arange(len(ids))
    top = top[np.argsort(-scores[top], kind="stable")]
    scores_out[0, :n] = scores[top]
    ids_out[0, :n] = ids[top]
    return scores_out, ids_out
