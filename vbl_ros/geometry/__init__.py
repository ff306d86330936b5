"""Frames and poses: rotations and SE(3), NED/ENU/REP-103, UTM and origins, the one pose interpolator."""

from vbl_ros.geometry.frames import NED_TO_ENU, VEHICLE_TO_BASE_LINK, base_link_from_vehicle, map_from_world
from vbl_ros.geometry.rotations import (
    euler_to_rotation,
    homogeneous,
    quaternion_slerp,
    quaternion_to_euler,
    quaternion_to_rotation,
    quaternions_from_rotations,
    rotation_to_euler,
    rotation_to_quaternion,
    se3_from_xyzrpy,
    xyzrpy_from_se3,
)
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.geometry.utm import UtmOrigin, change_frame, latlon_to_utm, utm_to_latlon

__all__ = [
    "NED_TO_ENU",
    "VEHICLE_TO_BASE_LINK",
    "Trajectory",
    "UtmOrigin",
    "base_link_from_vehicle",
    "change_frame",
    "euler_to_rotation",
    "homogeneous",
    "latlon_to_utm",
    "map_from_world",
    "quaternion_slerp",
    "quaternion_to_euler",
    "quaternion_to_rotation",
    "quaternions_from_rotations",
    "rotation_to_euler",
    "rotation_to_quaternion",
    "se3_from_xyzrpy",
    "utm_to_latlon",
    "xyzrpy_from_se3",
]
