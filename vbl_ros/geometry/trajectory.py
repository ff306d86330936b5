"""The one pose interpolator: a timed trajectory (linear position, slerp orientation) in a known frame.

:class:`Trajectory` serves every place that needs a pose at a time: the RobotCar converter (INS poses
at camera and LIDAR times), the bag readers (odometry at image stamps), the simulator (the vehicle
along its route), the map builder and the evaluation's ground truth. It carries the UTM origin of its
frame, so :meth:`Trajectory.in_frame` can express it in another drive's (or a map's) frame.

It fixes the RobotCar SDK's interpolation bugs: a real-valued fraction (not integer division), the
caller's arrays are never modified, and stamps outside the poses' range raise
:class:`~vbl_ros.errors.PoseRangeError` instead of giving garbage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vbl_ros.errors import PoseRangeError
from vbl_ros.geometry.rotations import quaternion_slerp, quaternion_to_rotation, quaternions_from_rotations
from vbl_ros.geometry.utm import UtmOrigin, change_frame

__all__ = ["Trajectory"]


@dataclass(frozen=True)
class Trajectory:
    """Poses sorted by strictly increasing stamps.

    Attributes:
        stamps_ns: ``(N,)`` int64 stamps (nanoseconds).
        positions: ``(N, 3)`` positions in the frame.
        orientations: ``(N, 4)`` unit quaternions x y z w.
        origin: the UTM origin of the frame (``None``: not geo-referenced).
        source: a name for error messages (a bag, a csv file).
        hint: what to do when a stamp lies outside the poses (appended to the error).
    """

    stamps_ns: np.ndarray
    positions: np.ndarray
    orientations: np.ndarray
    origin: UtmOrigin | None = None
    source: str = "trajectory"
    hint: str = ""

    def __post_init__(self) -> None:
        stamps = np.array(self.stamps_ns, dtype=np.int64)  # copies: the caller's arrays are never touched
        positions = np.array(self.positions, dtype=np.float64).reshape(-1, 3)
        orientations = np.array(self.orientations, dtype=np.float64).reshape(-1, 4)
        if stamps.ndim != 1 or len(positions) != len(stamps) or len(orientations) != len(stamps):
            raise ValueError(
                f"{self.source}: {stamps.shape} stamps, {positions.shape} positions, {orientations.shape} orientations"
            )
        if len(stamps) == 0:
            raise PoseRangeError(f"{self.source}: no pose")
        if np.any(np.diff(stamps) <= 0):
            raise PoseRangeError(f"{self.source}: pose stamps must be strictly increasing")
        object.__setattr__(self, "stamps_ns", stamps)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "orientations", orientations)

    @classmethod
    def from_poses(
        cls,
        stamps_ns: np.ndarray,
        poses: np.ndarray,
        *,
        origin: UtmOrigin | None = None,
        source: str = "poses",
        hint: str = "",
    ) -> Trajectory:
        """A trajectory of ``(N, 4, 4)`` rigid transforms at ``N`` stamps."""
        poses = np.asarray(poses, dtype=np.float64)
        if poses.ndim != 3 or poses.shape[1:] != (4, 4):
            raise ValueError(f"{source}: expected (N, 4, 4) poses, got {poses.shape}")
        return cls(
            stamps_ns, poses[:, :3, 3], quaternions_from_rotations(poses[:, :3, :3]), origin, source, hint
        )

    def __len__(self) -> int:
        return len(self.stamps_ns)

    @property
    def start_ns(self) -> int:
        return int(self.stamps_ns[0])

    @property
    def end_ns(self) -> int:
        return int(self.stamps_ns[-1])

    def contains(self, stamps_ns: np.ndarray | int) -> np.ndarray:
        """Which stamps lie within the trajectory's time span (a boolean array)."""
        s = np.asarray(stamps_ns, dtype=np.int64)
        return (s >= self.start_ns) & (s <= self.end_ns)

    def interpolate(self, stamps_ns: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``(M, 3)`` (linear) and orientations ``(M, 4)`` (slerp) at ``M`` stamps.

        Raises:
            PoseRangeError: a stamp lies outside the trajectory.
        """
        s = np.atleast_1d(np.asarray(stamps_ns, dtype=np.int64))
        outside = ~self.contains(s)
        if outside.any():
            raise PoseRangeError(
                f"{self.source}: {int(outside.sum())} stamp(s) (first {int(s[np.argmax(outside)])} ns) outside "
                f"the poses' range {self.start_ns}..{self.end_ns} ns"
                + (f"; {self.hint}" if self.hint else "")
            )
        if len(self) == 1:
            return np.repeat(self.positions, len(s), 0), np.repeat(self.orientations, len(s), 0)
        hi = np.clip(np.searchsorted(self.stamps_ns, s, side="left"), 1, len(self) - 1)
        lo = hi - 1
        fraction = (s - self.stamps_ns[lo]).astype(np.float64) / (self.stamps_ns[hi] - self.stamps_ns[lo])
        positions = self.positions[lo] + fraction[:, None] * (self.positions[hi] - self.positions[lo])
        return positions, quaternion_slerp(self.orientations[lo], self.orientations[hi], fraction)

    def poses(self, stamps_ns: np.ndarray | int) -> np.ndarray:
        """``(M, 4, 4)`` poses at the stamps (one ``(4, 4)`` pose for a scalar stamp)."""
        positions, orientations = self.interpolate(stamps_ns)
        out = np.tile(np.eye(4), (len(positions), 1, 1))
        out[:, :3, :3] = quaternion_to_rotation(orientations)
        out[:, :3, 3] = positions
        return out[0] if np.ndim(stamps_ns) == 0 else out

    def arc_length(self, stamps_ns: np.ndarray | int) -> np.ndarray:
        """Distance travelled along the track from its start to each stamp (metres)."""
        steps = np.linalg.norm(np.diff(self.positions, axis=0), axis=1)
        cumulative = np.concatenate([[0.0], np.cumsum(steps)])
        s = np.atleast_1d(np.asarray(stamps_ns, dtype=np.int64))
        return np.interp(s.astype(np.float64), self.stamps_ns.astype(np.float64), cumulative)

    def in_frame(self, origin: UtmOrigin | None) -> Trajectory:
        """This trajectory expressed in the frame anchored at ``origin`` (same UTM zone: a translation).

        Raises:
            FrameMismatchError: either origin is unknown, or the zones differ.
        """
        if origin == self.origin and origin is not None:
            return self
        positions = change_frame(self.positions, self.origin, origin, what=self.source)
        return Trajectory(self.stamps_ns, positions, self.orientations, origin, self.source, self.hint)
