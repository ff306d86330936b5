"""geometry/: the one pose interpolator (the SDK's bugs fixed), frames, UTM origins; RobotCar VO chaining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vbl_ros.errors import ConfigError, FrameMismatchError, PoseRangeError, RobotCarFormatError
from vbl_ros.geometry import (
    NED_TO_ENU,
    Trajectory,
    UtmOrigin,
    base_link_from_vehicle,
    change_frame,
    euler_to_rotation,
    latlon_to_utm,
    map_from_world,
    quaternion_slerp,
    rotation_to_quaternion,
    se3_from_xyzrpy,
)
from vbl_ros.robotcar.ins import VoData
from vbl_ros.robotcar.poses import chain_vo


def PoseInterpolator(times, poses, source: str = "poses") -> Trajectory:
    return Trajectory.from_poses(np.asarray(times), np.asarray(poses), source=source)


def _pose(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    return se3_from_xyzrpy(x, y, z, 0.0, 0.0, yaw)


def test_interpolation_is_linear_with_a_real_fraction() -> None:
    times = [1_000_000, 1_000_003]  # 3 us apart: integer division would snap to the first pose
    poses = np.stack([_pose(0, 0, 0, 0.0), _pose(3, 6, -3, 0.3)])
    interp = PoseInterpolator(times, poses)
    out = interp.poses([1_000_001, 1_000_002])
    np.testing.assert_allclose(out[0, :3, 3], [1, 2, -1])
    np.testing.assert_allclose(out[1, :3, 3], [2, 4, -2])
    np.testing.assert_allclose(out[0, :3, :3], euler_to_rotation(0, 0, 0.1), atol=1e-12)
    np.testing.assert_allclose(out[1, :3, :3], euler_to_rotation(0, 0, 0.2), atol=1e-12)


def test_interpolation_at_the_poses_and_scalar() -> None:
    poses = np.stack([_pose(0, 0, 0, 0.0), _pose(1, 0, 0, 0.5), _pose(1, 1, 0, 1.0)])
    interp = PoseInterpolator([0, 10, 20], poses)
    np.testing.assert_allclose(interp.poses([0, 10, 20]), poses, atol=1e-12)
    assert interp.poses(15).shape == (4, 4)
    np.testing.assert_allclose(interp.poses(15)[:3, 3], [1, 0.5, 0])


def test_callers_times_are_not_modified() -> None:
    times = [0, 10, 20]
    queries = [5, 15]
    poses = np.stack([_pose(0, 0, 0, 0.0), _pose(1, 0, 0, 0.5), _pose(1, 1, 0, 1.0)])
    interp = PoseInterpolator(times, poses)
    interp.poses(queries)
    assert times == [0, 10, 20]
    assert queries == [5, 15]
    array = np.array([0, 10, 20])
    interp2 = PoseInterpolator(array, poses)
    array[0] = 99
    assert interp2.start_ns == 0


def test_outside_range_raises_pose_range_error() -> None:
    interp = PoseInterpolator([100, 200], np.stack([np.eye(4), np.eye(4)]), source="gps/ins.csv")
    with pytest.raises(PoseRangeError, match=r"gps/ins.csv: 1 stamp\(s\) \(first 99 ns\) outside"):
        interp.poses([150, 99])
    with pytest.raises(PoseRangeError, match="201"):
        interp.poses(201)
    assert interp.contains([99, 100, 200, 201]).tolist() == [False, True, True, False]


def test_needs_increasing_times() -> None:
    single = PoseInterpolator([5], _pose(1, 2, 3, 0.4)[None])
    np.testing.assert_allclose(single.poses(5), _pose(1, 2, 3, 0.4), atol=1e-12)
    with pytest.raises(PoseRangeError):
        PoseInterpolator([], np.zeros((0, 4, 4)))
    with pytest.raises(PoseRangeError):
        PoseInterpolator([0, 0], np.stack([np.eye(4)] * 2))


def test_slerp_takes_the_short_way_when_the_dot_product_is_negative() -> None:
    q0 = rotation_to_quaternion(euler_to_rotation(0, 0, 0.1))
    q1 = -rotation_to_quaternion(euler_to_rotation(0, 0, 0.3))  # same rotation, opposite sign
    mid = quaternion_slerp(q0[None], q1[None], np.array([0.5]))[0]
    expected = rotation_to_quaternion(euler_to_rotation(0, 0, 0.2))
    assert min(np.linalg.norm(mid - expected), np.linalg.norm(mid + expected)) < 1e-9
    # across +-pi: yaw 3.0 -> -3.0 passes through pi, not through 0
    poses = np.stack([_pose(0, 0, 0, 3.0), _pose(0, 0, 0, -3.0)])
    rotation = PoseInterpolator([0, 2], poses).poses(1)[:3, :3]
    np.testing.assert_allclose(rotation, euler_to_rotation(0, 0, np.pi), atol=1e-9)


def test_chain_vo_as_the_sdk() -> None:
    rows = np.array([[1.0, 0, 0, 0, 0, np.pi / 2], [1.0, 0, 0, 0, 0, 0]])
    vo = VoData(Path("vo.csv"), np.array([20, 30]), np.array([10, 20]), rows)
    times, poses = chain_vo(vo)
    assert times.tolist() == [10, 20, 30]
    np.testing.assert_allclose(poses[0], np.eye(4))
    np.testing.assert_allclose(poses[1][:3, 3], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(poses[2][:3, 3], [1, 1, 0], atol=1e-12)  # turned left 90 deg, then forward
    interp = PoseInterpolator(times, poses)
    np.testing.assert_allclose(interp.poses(25)[:3, 3], [1, 0.5, 0], atol=1e-12)
    with pytest.raises(RobotCarFormatError):
        chain_vo(VoData(Path("vo.csv"), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 6))))


def test_ned_to_enu_and_base_link() -> None:
    assert np.isclose(np.linalg.det(NED_TO_ENU), 1.0)
    # a vehicle heading east (NED yaw = +90 deg) at north 2, east 5, down -1
    world_vehicle = se3_from_xyzrpy(2.0, 5.0, -1.0, 0.0, 0.0, np.pi / 2)
    map_base = base_link_from_vehicle(map_from_world(world_vehicle))
    np.testing.assert_allclose(map_base[:3, 3], [5.0, 2.0, 1.0])  # x east, y north, z up
    np.testing.assert_allclose(map_base[:3, :3] @ [1, 0, 0], [1, 0, 0], atol=1e-12)  # forward = east
    np.testing.assert_allclose(map_base[:3, :3] @ [0, 1, 0], [0, 1, 0], atol=1e-12)  # left = north
    np.testing.assert_allclose(map_base[:3, :3] @ [0, 0, 1], [0, 0, 1], atol=1e-12)  # up = up
    # heading north: forward = +y in ENU; left = west = -x
    north = base_link_from_vehicle(map_from_world(se3_from_xyzrpy(0, 0, 0, 0, 0, 0.0)))
    np.testing.assert_allclose(north[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(north[:3, :3] @ [0, 1, 0], [-1, 0, 0], atol=1e-12)
    # a nose-up pitch in NED stays nose-up in ENU
    pitched = base_link_from_vehicle(map_from_world(se3_from_xyzrpy(0, 0, 0, 0, 0.2, 0.0)))
    assert (pitched[:3, :3] @ [1, 0, 0])[2] > 0.19


OXFORD = UtmOrigin(619000.0, 5736000.0, 100.0, "30U")


def test_utm_origin_offsets_relate_two_frames() -> None:
    other = UtmOrigin(619250.0, 5735900.0, 97.0, "30U")
    point_utm = np.array([619123.0, 5736050.0, 105.0])
    in_oxford = point_utm - [OXFORD.easting, OXFORD.northing, OXFORD.up]
    in_other = point_utm - [other.easting, other.northing, other.up]
    np.testing.assert_allclose(change_frame(in_oxford[None], OXFORD, other, what="t"), in_other[None])
    np.testing.assert_allclose(OXFORD.to_utm(in_oxford[None])[0], point_utm)
    # another latitude band of the same zone and hemisphere shares the projection
    assert OXFORD.same_projection(UtmOrigin(0.0, 0.0, 0.0, "30T"))
    lat, lon = OXFORD.to_latlon(in_oxford[None])[0]
    east, north, _ = latlon_to_utm(lat, lon, "30U")
    assert abs(east - point_utm[0]) < 1e-3 and abs(north - point_utm[1]) < 1e-3


def test_origins_that_cannot_be_related_are_refused() -> None:
    with pytest.raises(FrameMismatchError, match="zone 30U and zone 31U"):
        change_frame(np.zeros((1, 3)), OXFORD, UtmOrigin(400000.0, 5736000.0, 0.0, "31U"), what="bag b")
    with pytest.raises(FrameMismatchError, match="bag b: its own UTM origin is unknown"):
        change_frame(np.zeros((1, 3)), None, OXFORD, what="bag b")
    with pytest.raises(FrameMismatchError, match="target frame's UTM origin is unknown"):
        change_frame(np.zeros((1, 3)), OXFORD, None, what="bag b")
    with pytest.raises(ConfigError):
        UtmOrigin(0.0, 0.0, 0.0, "99Z")


def test_trajectory_in_another_frame_keeps_orientations_and_stamps() -> None:
    poses = np.stack([_pose(0, 0, 0, 0.0), _pose(10, 0, 0, 0.5)])
    track = Trajectory.from_poses(np.array([0, 10]), poses, origin=OXFORD, source="drive a")
    other = UtmOrigin(OXFORD.easting + 300.0, OXFORD.northing - 200.0, OXFORD.up, "30U")
    moved = track.in_frame(other)
    assert moved.origin == other
    np.testing.assert_allclose(moved.positions[:, :2], track.positions[:, :2] + [-300.0, 200.0])
    np.testing.assert_allclose(moved.orientations, track.orientations)
    np.testing.assert_allclose(moved.in_frame(OXFORD).positions, track.positions, atol=1e-9)
    assert track.in_frame(OXFORD) is track
    with pytest.raises(FrameMismatchError):
        Trajectory.from_poses(np.array([0, 10]), poses).in_frame(OXFORD)
