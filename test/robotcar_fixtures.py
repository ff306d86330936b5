"""A tiny synthetic RobotCar traversal in the real on-disk formats, for tests.

The vehicle drives a straight line at constant speed and heading, level, over flat ground
``GROUND_BELOW_CAMERA_M`` below the stereo camera. ``ins.csv`` holds the INS sensor's pose
(``T_world_vehicle @ T_vehicle_ins``, with the real SDK extrinsics), so a converter that mishandles
the extrinsics gets the ground at the wrong height. The front LIDAR's points are where its rays
hit the ground; each point's reflectance is its along-track world coordinate (metres from the start),
so a depth map's reflectance can be checked exactly: at an image taken at ``t``, a ground point seen
at depth ``z`` has reflectance ``speed * (t - t0) + z``.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vbl_ros.geometry.rotations import euler_to_rotation, rotation_to_euler, se3_from_xyzrpy
from vbl_ros.images import mosaic
from vbl_ros.robotcar.calibration import CameraModel
from vbl_ros.sim.calibration_data import EXTRINSICS_TEXT, stereo_narrow_left

T0_US = 1_418_132_462_123_457  # odd microseconds: a us->ns bug shows
SPEED_MPS = 5.0
YAW_RAD = 0.3
GROUND_BELOW_CAMERA_M = 1.6
ORIGIN_NED = (5_735_000.25, 620_000.75, -110.5)  # northing, easting, down of the vehicle at t0
ZONE = "30U"
SCALE = 0.125  # 1280x960 -> 160x120


@dataclass(frozen=True)
class FixtureTraversal:
    """Paths and ground truth of a synthetic traversal."""

    root: Path
    extrinsics: Path
    models: Path
    image_times_us: tuple[int, ...]
    scan_times_us: tuple[int, ...]
    ins_times_us: tuple[int, ...]
    gps_times_us: tuple[int, ...]
    model: CameraModel
    width: int
    height: int


def vehicle_pose(t_us: int) -> np.ndarray:
    """``T_world_vehicle`` (NED world, absolute UTM coordinates) at ``t_us``."""
    s = SPEED_MPS * (t_us - T0_US) / 1e6
    pose = np.eye(4)
    pose[:3, :3] = euler_to_rotation(0.0, 0.0, YAW_RAD)
    pose[:3, 3] = (
        ORIGIN_NED[0] + s * np.cos(YAW_RAD),
        ORIGIN_NED[1] + s * np.sin(YAW_RAD),
        ORIGIN_NED[2],
    )
    return pose


def extrinsic(sensor: str) -> np.ndarray:
    return se3_from_xyzrpy(*[float(v) for v in EXTRINSICS_TEXT[sensor].split()])


def write_sdk(folder: Path, *, scale: float = SCALE) -> tuple[Path, Path, CameraModel]:
    """An SDK checkout with the real extrinsics and a stereo centre model scaled by ``scale``."""
    extrinsics = folder / "extrinsics"
    models = folder / "models"
    extrinsics.mkdir(parents=True)
    models.mkdir(parents=True)
    for sensor, text in EXTRINSICS_TEXT.items():
        (extrinsics / f"{sensor}.txt").write_text(text)
    model = stereo_narrow_left().scaled(scale)
    (models / "stereo_narrow_left.txt").write_text(model.to_text())
    return extrinsics, models, model


def ground_scan(*, step_deg: float = 2.0) -> np.ndarray:
    """``(N, 3)`` lms_front points (x, y in the scan plane, along-track x in the vehicle frame)."""
    lidar = extrinsic("lms_front")
    angles = np.deg2rad(np.arange(-135.0, 135.0 + 1e-9, step_deg))
    directions = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)])
    in_vehicle = lidar[:3, :3] @ directions
    origin = lidar[:3, 3]
    with np.errstate(divide="ignore"):
        ranges = (GROUND_BELOW_CAMERA_M - origin[2]) / in_vehicle[2]
    keep = (in_vehicle[2] > 1e-3) & (ranges > 0) & (ranges < 40)
    ranges, angles = ranges[keep], angles[keep]
    along_track = origin[0] + ranges * in_vehicle[0, keep]
    return np.stack([ranges * np.cos(angles), ranges * np.sin(angles), along_track], axis=1)


def _png(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return buffer.tobytes()


def test_image(width: int, height: int, seed: int) -> np.ndarray:
    """A Bayer GBRG mosaic of a colourful RGB pattern."""
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), (xx + yy + seed * 17) % 256], -1
    )
    return mosaic(rgb.astype(np.uint8), "gbrg")


test_image.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def make_traversal(
    folder: Path,
    *,
    n_images: int = 6,
    image_hz: float = 4.0,
    duration_s: float = 12.0,
    scan_hz: float = 25.0,
    ins_hz: float = 50.0,
    gps_hz: float = 5.0,
    scale: float = SCALE,
) -> FixtureTraversal:
    """Write ``folder/2014-12-09-13-41-02/`` and ``folder/sdk/{extrinsics,models}``."""
    root = folder / "2014-12-09-13-41-02"
    extrinsics, models, model = write_sdk(folder / "sdk", scale=scale)
    width, height = round(1280 * scale), round(960 * scale)

    def times(rate_hz: float, start_s: float, count: int) -> list[int]:
        return [T0_US + round((start_s + i / rate_hz) * 1e6) for i in range(count)]

    ins_times = times(ins_hz, 0.0, int(duration_s * ins_hz) + 1)
    scan_times = times(scan_hz, 0.013, int((duration_s - 0.1) * scan_hz))
    image_times = times(image_hz, 1.0007, n_images)
    gps_times = times(gps_hz, 0.05, int((duration_s - 0.1) * gps_hz))

    (root / "stereo" / "centre").mkdir(parents=True)
    (root / "gps").mkdir()
    (root / "vo").mkdir()
    (root / "lms_front").mkdir()
    (root / "stereo.timestamps").write_text("".join(f"{t} {1 + i // 4}\n" for i, t in enumerate(image_times)))
    for i, t in enumerate(image_times):
        (root / "stereo" / "centre" / f"{t}.png").write_bytes(_png(test_image(width, height, i)))

    vehicle_ins = extrinsic("ins")
    lines = [
        ",".join(
            (
                "timestamp",
                "ins_status",
                "latitude",
                "longitude",
                "altitude",
                "northing",
                "easting",
                "down",
                "utm_zone",
                "velocity_north",
                "velocity_east",
                "velocity_down",
                "roll",
                "pitch",
                "yaw",
            )
        )
    ]
    for t in ins_times:
        pose = vehicle_pose(t) @ vehicle_ins
        roll, pitch, yaw = rotation_to_euler(pose[:3, :3])
        north, east, down = pose[:3, 3]
        lines.append(
            f"{t},INS_SOLUTION_GOOD,51.7{(t - T0_US) % 1000:03d},-1.25,{-down:.4f},{float(north)!r},{float(east)!r},{float(down)!r},{ZONE},"
            f"{float(SPEED_MPS * np.cos(YAW_RAD))!r},{float(SPEED_MPS * np.sin(YAW_RAD))!r},0.0,{float(roll)!r},{float(pitch)!r},{float(yaw)!r}"
        )
    (root / "gps" / "ins.csv").write_text("\n".join(lines) + "\n")

    gps_lines = [
        "timestamp,num_satellites,latitude,longitude,altitude,latitude_sigma,longitude_sigma,"
        "altitude_sigma,northing,easting,down,utm_zone"
    ]
    for i, t in enumerate(gps_times):
        north, east, down = vehicle_pose(t)[:3, 3]
        gps_lines.append(
            f"{t},{7 + i % 3},51.76{i:02d},-1.2577,110.5,0.8,0.6,1.5,{float(north)!r},{float(east)!r},{float(down)!r},{ZONE}"
        )
    (root / "gps" / "gps.csv").write_text("\n".join(gps_lines) + "\n")

    vo_lines = ["source_timestamp,destination_timestamp,x,y,z,roll,pitch,yaw"]
    for previous, current in itertools.pairwise(image_times):
        vo_lines.append(
            f"{current},{previous},{float(SPEED_MPS * (current - previous) / 1e6)!r},0,0,0,0,0.01"
        )
    (root / "vo" / "vo.csv").write_text("\n".join(vo_lines) + "\n")

    scan = ground_scan()
    (root / "lms_front.timestamps").write_text("".join(f"{t} 1\n" for t in scan_times))
    for t in scan_times:
        values = scan.copy()
        values[:, 2] += SPEED_MPS * (t - T0_US) / 1e6  # reflectance = along-track world coordinate
        (root / "lms_front" / f"{t}.bin").write_bytes(values.astype("<f8").tobytes())

    return FixtureTraversal(
        root=root,
        extrinsics=extrinsics,
        models=models,
        image_times_us=tuple(image_times),
        scan_times_us=tuple(scan_times),
        ins_times_us=tuple(ins_times),
        gps_times_us=tuple(gps_times),
        model=model,
        width=width,
        height=height,
    )


def copy_traversal(fixture: FixtureTraversal, folder: Path) -> Path:
    """A copy of the fixture's traversal folder (to break it without touching the original)."""
    out = folder / fixture.root.name
    shutil.copytree(fixture.root, out)
    return out
