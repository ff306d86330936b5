"""The coordinate frames vbl uses and the fixed changes between them (NED, ENU, REP-103).

- ``world``: local NED, the INS's UTM north-east-down coordinates minus an origin (RobotCar's frame).
- ``map`` (ROS, ENU, REP-103): ``x = easting - E0``, ``y = northing - N0``, ``z = up - U0``, anchored
  at a :class:`~vbl_ros.geometry.utm.UtmOrigin`.
- ``vehicle``: RobotCar's vehicle frame, x forward, y right, z down.
- ``base_link`` (REP-103): the vehicle frame's origin, x forward, y left, z up.
"""

from __future__ import annotations

import numpy as np

from vbl_ros.geometry.rotations import homogeneous

__all__ = ["NED_TO_ENU", "VEHICLE_TO_BASE_LINK", "base_link_from_vehicle", "map_from_world"]

#: Rotation taking NED coordinates to ENU coordinates (a proper rotation: det = +1); its own inverse.
NED_TO_ENU = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
#: Rotation taking vehicle-frame (x fwd, y right, z down) coordinates to base_link (x fwd, y left,
#: z up): 180 degrees about x.
VEHICLE_TO_BASE_LINK = np.diag([1.0, -1.0, -1.0])


def map_from_world(world_pose: np.ndarray) -> np.ndarray:
    """Change the parent frame of 4x4 pose(s) ``T_world_x`` (local NED) to ``T_map_x`` (local ENU)."""
    return homogeneous(NED_TO_ENU) @ world_pose


def base_link_from_vehicle(pose_vehicle: np.ndarray) -> np.ndarray:
    """``T_parent_base_link`` from ``T_parent_vehicle`` (4x4 or (N, 4, 4))."""
    return pose_vehicle @ homogeneous(VEHICLE_TO_BASE_LINK.T)
