"""Ground truth in the map's frame: a query drive's own odometry, brought into the map's UTM origin."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vbl_ros.bags import read_odometry
from vbl_ros.geometry.utm import UtmOrigin

__all__ = ["ground_truth"]


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
