"""Ground truth in the map's frame: a query drive's own odometry, brought into the map's UTM origin."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vbl_ros.bags import read_odometry
from vbl_ros.errors import ConfigError
from vbl_ros.geometry.rotations import quaternion_to_euler
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.geometry.utm import UtmOrigin

__all__ = ["FrameTruth", "frame_truth", "ground_truth"]


def ground_truth(bag: Path | str, stamps_ns: np.ndarray, map_origin: UtmOrigin | None) -> np.ndarray:
    """``(F, 3)`` true positions of the frames at ``stamps_ns`` of ``bag``, in the map's frame.

    Every converted drive has its own ``map`` frame (anchored at its first INS row); the query's
    odometry is translated into the frame anchored at ``map_origin`` (the map's manifest).

    Raises:
        FrameMismatchError: the bag or the map has no UTM origin, or they lie in different zones.
        PoseRangeError: a stamp lies outside the bag's odometry.
    """
    positions, _ = read_odometry(bag).in_frame(map_origin).interpolate(np.asarray(stamps_ns, np.int64))
    return positions


@dataclass(frozen=True)
class FrameTruth:
    """Where a drive was at some stamps, ``nan`` where that is not known.

    The truth of a stamp is known when it lies within the trajectory and the odometry samples
    around it are at most ``max_gap_s`` apart (an odometry gap is not bridged by interpolation).

    Attributes:
        trajectory: the drive's odometry in the map's frame (``None``: the drive has none).
        max_gap_s: the longest odometry gap interpolated across.
    """

    trajectory: Trajectory | None
    max_gap_s: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_gap_s) and self.max_gap_s > 0):
            raise ConfigError(f"max_gap_s must be a positive number of seconds, got {self.max_gap_s}")

    def known(self, stamps_ns: np.ndarray) -> np.ndarray:
        """``(F,)`` whether the truth at each stamp is known."""
        s = np.atleast_1d(np.asarray(stamps_ns, dtype=np.int64))
        t = self.trajectory
        if t is None:
            return np.zeros(len(s), dtype=bool)
        if len(t) == 1:
            return s == t.start_ns
        hi = np.clip(np.searchsorted(t.stamps_ns, s, side="left"), 1, len(t) - 1)
        lo = hi - 1
        on_sample = (t.stamps_ns[lo] == s) | (t.stamps_ns[hi] == s)
        short_gap = (t.stamps_ns[hi] - t.stamps_ns[lo]) <= round(self.max_gap_s * 1e9)
        return t.contains(s) & (on_sample | short_gap)

    def positions(self, stamps_ns: np.ndarray) -> np.ndarray:
        """``(F, 3)`` true positions in the map's frame, ``nan`` rows where unknown."""
        return self._at(stamps_ns)[0]

    def yaw_rad(self, stamps_ns: np.ndarray) -> np.ndarray:
        """``(F,)`` true yaw (ENU, radians), ``nan`` where unknown."""
        return self._at(stamps_ns)[1]

    def _at(self, stamps_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.atleast_1d(np.asarray(stamps_ns, dtype=np.int64))
        positions, yaw = np.full((len(s), 3), math.nan), np.full(len(s), math.nan)
        known = self.known(s)
        if known.any() and self.trajectory is not None:
            p, q = self.trajectory.interpolate(s[known])
            positions[known], yaw[known] = p, quaternion_to_euler(q)[:, 2]
        return positions, yaw


def frame_truth(bag: Path | str, map_origin: UtmOrigin | None, *, max_gap_s: float = 1.0) -> FrameTruth:
    """The truth of ``bag``'s frames in the map's frame, from its odometry (``/ins/odometry``).

    Raises:
        MissingDataError: the bag has no odometry (evaluate it without truth: ``FrameTruth(None)``).
        FrameMismatchError: the bag or the map has no UTM origin, or they lie in different zones.
    """
    return FrameTruth(read_odometry(bag).in_frame(map_origin), max_gap_s)
