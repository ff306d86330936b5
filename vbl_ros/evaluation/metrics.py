"""Metric primitives of the evaluation: precision-recall over scores, 95 % ellipses, headings, revisits.

Plain functions on arrays, each tested against hand-computed values; :mod:`.localization` composes
them into the one report. Values that do not exist (a median of nothing, a precision without any
candidate) are ``nan``, never an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CHI2_2DOF_95",
    "PrecisionRecall",
    "heading_error_deg",
    "json_number",
    "inside_95_ellipse",
    "nearest_distances",
    "percentile",
    "revisited",
]

# The 95 % quantile of the chi-square distribution with 2 degrees of freedom, -2 ln(0.05) = 5.991:
# a 2-D Gaussian error e with covariance S lies inside its 95 % ellipse when e' S^-1 e <= this.
CHI2_2DOF_95 = -2.0 * math.log(0.05)


def percentile(values: np.ndarray | list[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation, as ``numpy.percentile``) of the finite values;
    ``nan`` when there is none."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if len(v) else math.nan


def heading_error_deg(yaw_rad: np.ndarray | float, true_yaw_rad: np.ndarray | float) -> np.ndarray:
    """``|yaw - true_yaw|`` wrapped into [0, 180] degrees (``nan`` where either is ``nan``)."""
    diff = np.asarray(yaw_rad, dtype=np.float64) - np.asarray(true_yaw_rad, dtype=np.float64)
    return np.abs(np.degrees((diff + math.pi) % (2 * math.pi) - math.pi))


def inside_95_ellipse(error_xy: np.ndarray, covariance_xy: np.ndarray) -> bool:
    """Whether a horizontal ``(2,)`` error lies inside the 95 % ellipse of its ``(2, 2)`` covariance.

    A covariance that is not finite, not symmetric or not positive definite gives no ellipse: the
    error counts as outside (a prior with such a covariance cannot be trusted by a filter).
    """
    e = np.asarray(error_xy, dtype=np.float64).reshape(2)
    s = np.asarray(covariance_xy, dtype=np.float64).reshape(2, 2)
    if not (np.isfinite(s).all() and np.isfinite(e).all()) or not np.allclose(s, s.T):
        return False
    try:
        lower = np.linalg.cholesky(s)
    except np.linalg.LinAlgError:
        return False
    whitened = np.linalg.solve(lower, e)  # e' S^-1 e = |L^-1 e|^2 for S = L L'
    return bool(whitened @ whitened <= CHI2_2DOF_95)


def nearest_distances(points_xy: np.ndarray, query_xy: np.ndarray) -> np.ndarray:
    """``(Q,)`` distance from each query to its nearest point (``inf`` when there are no points)."""
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    queries = np.asarray(query_xy, dtype=np.float64).reshape(-1, 2)
    if not len(points):
        return np.full(len(queries), math.inf)
    if not len(queries):
        return np.zeros(0)
    import faiss

    # centred before the float32 index, so that UTM-sized coordinates keep centimetres
    centre = points.mean(axis=0)
    index = faiss.IndexFlatL2(2)
    index.add(np.ascontiguousarray(points - centre, dtype=np.float32))
    nearest_sq, _ = index.search(np.ascontiguousarray(queries - centre, dtype=np.float32), 1)
    return np.sqrt(np.maximum(nearest_sq[:, 0].astype(np.float64), 0.0))


def revisited(stamps_ns: np.ndarray, xy: np.ndarray, radius_m: float, exclude_ns: int) -> np.ndarray:
    """``(F,)`` whether frame ``i`` lies within ``radius_m`` of a frame at least ``exclude_ns`` older.

    These are the frames of a drive for which a loop-closure candidate can be right (the localizer
    searches only session keyframes older than its ``loop_exclude_recent_s``). Exact: frames are
    bucketed in a grid of ``radius_m`` cells and each is compared with the old-enough frames of the
    3 x 3 cells around it. Frames with a ``nan`` position are never revisits nor revisited.
    """
    stamps = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
    points = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    out = np.zeros(len(stamps), dtype=bool)
    finite = np.flatnonzero(np.isfinite(points).all(axis=1))
    if not len(finite):
        return out
    cells: dict[tuple[int, int], list[int]] = {}
    keys = np.floor(points[finite] / radius_m).astype(np.int64)
    for i in finite[np.argsort(stamps[finite], kind="stable")]:  # each cell's frames in time order
        cells.setdefault(
            (int(np.floor(points[i, 0] / radius_m)), int(np.floor(points[i, 1] / radius_m))), []
        ).append(i)
    members = {key: (np.array(idx), stamps[idx]) for key, idx in cells.items()}
    for i, (cx, cy) in zip(finite, keys, strict=True):
        newest = stamps[i] - int(exclude_ns)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                cell = members.get((int(cx) + dx, int(cy) + dy))
                if cell is None:
                    continue
                old = cell[0][: np.searchsorted(cell[1], newest, side="right")]
                if len(old) and (np.linalg.norm(points[old] - points[i], axis=1) <= radius_m).any():
                    out[i] = True
                    break
            if out[i]:
                break
    return out


@dataclass(frozen=True)
class PrecisionRecall:
    """Precision-recall of scored candidates (one per frame), swept over the score threshold.

    A candidate is accepted when its score is ``>=`` the threshold, so candidates with equal scores
    are accepted together: the curve has one point per distinct score (ties never split), highest
    threshold first. ``recall = TP / positives``, where ``positives`` counts the frames for which a
    correct candidate exists (a map keyframe, or an earlier pass of the drive, within the success
    radius), so a method that accepts everything does not reach recall 1 unless every such frame
    got a correct candidate.

    Attributes:
        thresholds, precision, recall: the curve's points (decreasing thresholds).
        positives: frames for which a correct candidate exists.
        candidates: scored candidates (frames that got one).
        average_precision: the area under the step curve, ``sum_n (R_n - R_{n-1}) P_n`` with
            ``R_0 = 0`` (scikit-learn's ``average_precision_score``; no interpolation); 0 when there
            are positives but no candidate, ``nan`` without positives.
        recall_at_100_precision: the highest recall of a point with precision 1 (0 when none;
            ``nan`` without positives).
        extended_precision: VPR-Bench's EP (see :meth:`of`); ``nan`` without candidates.
    """

    thresholds: tuple[float, ...]
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    positives: int
    candidates: int
    average_precision: float
    recall_at_100_precision: float
    extended_precision: float

    @classmethod
    def of(cls, scores: np.ndarray, correct: np.ndarray, positives: int) -> PrecisionRecall:
        """The curve of candidates with ``scores`` (``nan``: the frame has no candidate) and their
        correctness, for ``positives`` frames that could have a correct one.

        Extended precision, as defined by Ferrarini et al., "Exploring Performance Bounds of Visual
        Place Recognition Using Extended Precision", IEEE RA-L 2020, and computed by VPR-Bench
        (Zaffar et al., IJCV 2021; ``compute_extendedprecision`` in its ``performance_comparison.py``):
        ``EP = (P_R0 + R_P100) / 2``, where ``P_R0`` is the precision at the lowest recall (the
        highest threshold: the top-scored candidates, ties included) and ``R_P100`` the highest
        recall at 100 % precision, taken as 0 when ``P_R0 < 1``. One difference from VPR-Bench:
        VPR-Bench computes recall with scikit-learn over the correct retrievals only (its recall
        always ends at 1); here recall is over the frames that could be right (``positives``), so a
        frame without a correct candidate lowers it.
        """
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        c = np.asarray(correct, dtype=bool).reshape(-1)
        if len(s) != len(c):
            raise ValueError(f"{len(s)} scores but {len(c)} correctness flags")
        keep = np.isfinite(s)
        s, c = s[keep], c[keep]
        positives = int(positives)
        if int(c.sum()) > positives:
            raise ValueError(f"{int(c.sum())} correct candidates but only {positives} positives")
        order = np.argsort(-s, kind="stable")
        s, c = s[order], c[order]
        tp = np.cumsum(c)
        accepted = np.arange(1, len(s) + 1)
        last = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if len(s) else np.zeros(0, dtype=np.int64)
        thresholds, tp, accepted = s[last], tp[last].astype(np.float64), accepted[last].astype(np.float64)
        precision = tp / accepted
        recall = tp / positives if positives else np.full(len(tp), math.nan)
        if positives:
            steps = np.diff(np.r_[0.0, recall])
            average_precision = float((steps * precision).sum())
            perfect = precision == 1.0
            recall_at_100 = float(recall[perfect].max()) if perfect.any() else 0.0
        else:
            average_precision = recall_at_100 = math.nan
        if len(precision):
            p_r0 = float(precision[0])
            extended = 0.5 * (p_r0 + (recall_at_100 if p_r0 == 1.0 else 0.0))
        else:
            extended = math.nan
        return cls(
            thresholds=tuple(float(v) for v in thresholds),
            precision=tuple(float(v) for v in precision),
            recall=tuple(float(v) for v in recall),
            positives=positives,
            candidates=len(s),
            average_precision=average_precision,
            recall_at_100_precision=recall_at_100,
            extended_precision=extended,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``nan`` stays ``nan``; the report writer turns it into ``null``)."""
        return {
            "average_precision": self.average_precision,
            "recall_at_100_precision": self.recall_at_100_precision,
            "extended_precision": self.extended_precision,
            "positives": self.positives,
            "candidates": self.candidates,
            "curve": {
                "threshold": list(self.thresholds),
                "precision": list(self.precision),
                "recall": list(self.recall),
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrecisionRecall:
        curve = d["curve"]
        return cls(
            thresholds=tuple(json_number(v) for v in curve["threshold"]),
            precision=tuple(json_number(v) for v in curve["precision"]),
            recall=tuple(json_number(v) for v in curve["recall"]),
            positives=int(d["positives"]),
            candidates=int(d["candidates"]),
            average_precision=json_number(d["average_precision"]),
            recall_at_100_precision=json_number(d["recall_at_100_precision"]),
            extended_precision=json_number(d["extended_precision"]),
        )


def json_number(value: Any) -> float:
    """A JSON number back to float; ``null`` (written for ``nan``) back to ``nan``."""
    return math.nan if value is None else float(value)
