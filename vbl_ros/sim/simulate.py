"""``simulate(out_dir, config)``: simulated RobotCar traversals in the RobotCar on-disk format.

For each condition in :attr:`SimConfig.conditions` one traversal drives the same route through the
same town (parked cars, speed and lateral offset change) and writes ``OUT_DIR/<YYYY-MM-DD-HH-MM-SS>/``
with ``stereo.timestamps``, ``stereo/centre/<unix_us>.png`` (Bayer GBRG), ``gps/ins.csv``,
``gps/gps.csv``, ``vo/vo.csv``, ``lms_front.timestamps`` and ``lms_front/<unix_us>.bin``, and
optionally ``sim_depth/<unix_us>.npy`` (the renderer's depth). ``OUT_DIR/sdk`` gets the camera model
scaled to the image size, the real extrinsics and one ``tags/<traversal>.yaml`` per traversal.

Geometry: the world is local ENU with the UTM origin ``(E0, N0, U0)``; the trajectory gives
``T_world_vehicle`` (vehicle = stereo camera frame); the camera renders at ``T_world_vehicle @
G_camera_image``; the LIDAR casts at ``T_world_vehicle @ T_vehicle_lms``; ``ins.csv`` holds
``T_ned_ins = T_ned_world @ T_world_vehicle @ T_vehicle_ins`` (plus small smooth noise when
``ins_noise_m`` > 0), so ``T_vehicle = T_ins @ inv(T_vehicle_ins)`` as FORMAT.md defines.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import mujoco
import numpy as np
from tqdm import tqdm

import vbl_ros.sim  # noqa: F401  (selects MuJoCo's EGL backend first)
from vbl_ros.errors import ConfigError, OutputExistsError
from vbl_ros.geometry.frames import NED_TO_ENU
from vbl_ros.geometry.rotations import xyzrpy_from_se3
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.geometry.utm import utm_to_latlon
from vbl_ros.images import mosaic
from vbl_ros.robotcar.calibration import CameraModel
from vbl_ros.sim.calibration_data import EXTRINSICS_TEXT, extrinsics, stereo_narrow_left
from vbl_ros.sim.lidar import LMS_MAX_RANGE, LidarScanner, geom_reflectance
from vbl_ros.sim.render import Condition, SceneRenderer, condition
from vbl_ros.sim.route import drive, plan_route, seconds_to_ns
from vbl_ros.sim.scene import REFLECTANCE, town_spec
from vbl_ros.sim.town import Town, build_town, parked_cars

__all__ = ["SimConfig", "simulate", "traversal_name", "camera_model", "ned_from_world"]

log = logging.getLogger(__name__)

REAL_WIDTH = 1280  # the stereo camera's width: the simulated intrinsics are scaled from it
_LMS_SECTION_M = 30.0  # route length per ray-casting model


@dataclass(frozen=True)
class SimConfig:
    """Everything a simulation run depends on; the same config and seed give the same files."""

    seed: int = 0
    conditions: tuple[str, ...] = ("overcast", "sun")
    route_length_m: float = 1000.0
    block_m: tuple[float, float] = (50.0, 90.0)
    width: int = 320
    height: int = 240
    speed_mps: float = 8.0
    camera_hz: float = 3.2
    ins_hz: float = 50.0
    gps_hz: float = 5.0
    lms_hz: float = 25.0
    lms_max_range_m: float = LMS_MAX_RANGE
    ins_noise_m: float = 0.02
    gps_noise_m: float = 2.0
    vo_noise: float = 0.005
    lateral_jitter_m: float = 0.3
    speed_jitter: float = 0.1
    parked_occupancy: float = 0.45
    save_depth: bool = False
    post_process: bool = True
    start_date: str = "2014-11-28"
    days_between: int = 9
    utm_origin: tuple[float, float, float] = (620150.0, 5734600.0, 60.0)  # E0, N0, U0 (Oxford)
    utm_zone: str = "30U"

    def __post_init__(self) -> None:
        if self.width * 3 != self.height * 4:
            raise ConfigError(f"image size {self.width}x{self.height} must be 4:3 like RobotCar's 1280x960")
        if self.width % 2 or self.height % 2:
            raise ConfigError("image width and height must be even (Bayer mosaic)")
        for name in self.conditions:
            condition(name)
        for key in ("camera_hz", "ins_hz", "gps_hz", "lms_hz", "speed_mps", "route_length_m"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"SimConfig.{key} must be positive, got {getattr(self, key)}")
        try:
            dt.date.fromisoformat(self.start_date)
        except ValueError as err:
            raise ConfigError(f"SimConfig.start_date {self.start_date!r} is not YYYY-MM-DD") from err

    @staticmethod
    def preset(name: str) -> SimConfig:
        """``tiny`` (tests, seconds) or ``demo`` (about 1 km, two traversals, a few minutes)."""
        if name == "tiny":
            return SimConfig(
                conditions=("overcast", "night"),
                route_length_m=60.0,
                block_m=(40.0, 55.0),
                width=160,
                height=120,
                speed_mps=6.0,
                camera_hz=2.0,
                lms_hz=25.0,
            )
        if name == "demo":
            return SimConfig()
        raise ConfigError(f"unknown SimConfig preset {name!r}; choose 'tiny' or 'demo'")


def camera_model(config: SimConfig) -> CameraModel:
    """The real ``stereo_narrow_left`` model scaled to the simulated image size."""
    return stereo_narrow_left().scaled(config.width / REAL_WIDTH)


def traversal_name(config: SimConfig, index: int) -> tuple[str, int]:
    """Folder name (UTC start time) and start time in unix microseconds of traversal ``index``."""
    cond = condition(config.conditions[index])
    day = dt.date.fromisoformat(config.start_date) + dt.timedelta(days=config.days_between * index)
    rng = np.random.default_rng([config.seed, 5, index])
    seconds = int(cond.hour * 3600 + rng.integers(0, 1800))
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return start.strftime("%Y-%m-%d-%H-%M-%S"), int(start.timestamp()) * 1_000_000


def ned_from_world(config: SimConfig) -> np.ndarray:
    """``T_ned_world``: local ENU (x east, y north, z up) to UTM NED (northing, easting, down)."""
    e0, n0, u0 = config.utm_origin
    out = np.eye(4)
    out[:3, :3] = NED_TO_ENU.T
    out[:3, 3] = (n0, e0, -u0)
    return out


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, amplitude: float, dims: int) -> np.ndarray:
    """A sum of slow sinusoids per dimension, std about ``amplitude``."""
    out = np.zeros((len(t), dims))
    for d in range(dims):
        for _ in range(3):
            period = rng.uniform(8.0, 40.0)
            out[:, d] += amplitude / np.sqrt(1.5) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return out


def _times(duration: float, rate: float, margin: float) -> np.ndarray:
    return np.arange(margin, duration - margin + 1e-9, 1.0 / rate)


def _write_timestamps(path: Path, stamps: np.ndarray) -> None:
    path.write_text("".join(f"{int(us)} 1\n" for us in stamps))


def _write_ins(path: Path, config: SimConfig, stamps: np.ndarray, t: np.ndarray, traj: Trajectory,
               rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Write ``gps/ins.csv``; return the INS positions ``(N, 3)`` NED (with noise) for the GPS."""
    t_ned_world = ned_from_world(config)
    t_vehicle_ins = extrinsics("ins")
    poses = t_ned_world @ traj.poses(seconds_to_ns(t)) @ t_vehicle_ins
    xyzrpy = np.array([xyzrpy_from_se3(p) for p in poses])
    if config.ins_noise_m > 0:
        xyzrpy[:, :3] += _smooth_noise(rng, t, config.ins_noise_m, 3)
        xyzrpy[:, 3:] += _smooth_noise(rng, t, config.ins_noise_m * 0.02, 3)
    xyzrpy[:, 5] = np.angle(np.exp(1j * xyzrpy[:, 5]))
    lat, lon = utm_to_latlon(xyzrpy[:, 1], xyzrpy[:, 0], config.utm_zone)
    velocity = np.gradient(xyzrpy[:, :3], t, axis=0)
    lines = ["timestamp,ins_status,latitude,longitude,altitude,northing,easting,down,utm_zone,"
             "velocity_north,velocity_east,velocity_down,roll,pitch,yaw"]  # fmt: skip
    for k, us in enumerate(stamps):
        n, e, d, roll, pitch, yaw = xyzrpy[k]
        vn, ve, vd = velocity[k]
        lines.append(
            f"{int(us)},INS_SOLUTION_GOOD,{lat[k]:.9f},{lon[k]:.9f},{-d:.6f},{n:.6f},{e:.6f},{d:.6f},"
            f"{config.utm_zone},{vn:.6f},{ve:.6f},{vd:.6f},{roll:.9f},{pitch:.9f},{yaw:.9f}"
        )
    path.write_text("\n".join(lines) + "\n")
    return xyzrpy[:, :3]


def _write_gps(path: Path, config: SimConfig, stamps: np.ndarray, ned: np.ndarray,
               rng: np.random.Generator) -> None:  # fmt: skip
    """Write ``gps/gps.csv``: the INS position plus a correlated error of ``gps_noise_m``."""
    n = len(stamps)
    sigma = config.gps_noise_m
    err = np.zeros((n, 3))
    rho = np.exp(-1.0 / (config.gps_hz * 10.0))  # 10 s correlation time
    err[0] = rng.normal(0.0, sigma, 3) * (1.0, 1.0, 1.5)
    for k in range(1, n):
        err[k] = rho * err[k - 1] + np.sqrt(1 - rho**2) * rng.normal(0.0, sigma, 3) * (1.0, 1.0, 1.5)
    pos = ned + err
    lat, lon = utm_to_latlon(pos[:, 1], pos[:, 0], config.utm_zone)
    sats = np.clip(
        np.round(9 + 2 * np.sin(np.arange(n) / (config.gps_hz * 30.0)) + rng.normal(0, 0.6, n)), 4, 14
    )
    lines = ["timestamp,num_satellites,latitude,longitude,altitude,latitude_sigma,longitude_sigma,altitude_sigma,"
             "northing,easting,down,utm_zone"]  # fmt: skip
    for k, us in enumerate(stamps):
        s_lat, s_lon = sigma * rng.uniform(0.8, 1.2), sigma * rng.uniform(0.8, 1.2)
        lines.append(
            f"{int(us)},{int(sats[k])},{lat[k]:.9f},{lon[k]:.9f},{-pos[k, 2]:.6f},{s_lat:.6f},{s_lon:.6f},"
            f"{1.5 * sigma * rng.uniform(0.8, 1.2):.6f},{pos[k, 0]:.6f},{pos[k, 1]:.6f},{pos[k, 2]:.6f},"
            f"{config.utm_zone}"
        )
    path.write_text("\n".join(lines) + "\n")


def _write_vo(path: Path, config: SimConfig, stamps: np.ndarray, poses: np.ndarray,
              rng: np.random.Generator) -> None:  # fmt: skip
    """Write ``vo/vo.csv``: relative vehicle poses between consecutive camera frames (with noise)."""
    lines = ["source_timestamp,destination_timestamp,x,y,z,roll,pitch,yaw"]
    for k in range(1, len(stamps)):
        rel = np.linalg.inv(poses[k - 1]) @ poses[k]
        x, y, z, roll, pitch, yaw = xyzrpy_from_se3(rel)
        scale = 1.0 + config.vo_noise * rng.standard_normal()
        x, y, z = x * scale, y * scale, z * scale
        roll, pitch, yaw = (a + 0.05 * config.vo_noise * rng.standard_normal() for a in (roll, pitch, yaw))
        lines.append(
            f"{int(stamps[k])},{int(stamps[k - 1])},{x:.6f},{y:.6f},{z:.6f},{roll:.9f},{pitch:.9f},{yaw:.9f}"
        )
    path.write_text("\n".join(lines) + "\n")


def _write_sdk(out_dir: Path, config: SimConfig) -> None:
    sdk = out_dir / "sdk"
    (sdk / "models").mkdir(parents=True, exist_ok=True)
    (sdk / "extrinsics").mkdir(parents=True, exist_ok=True)
    (sdk / "tags").mkdir(parents=True, exist_ok=True)
    (sdk / "models" / "stereo_narrow_left.txt").write_text(camera_model(config).to_text())
    for name, text in EXTRINSICS_TEXT.items():
        (sdk / "extrinsics" / f"{name}.txt").write_text(text)


def _scan_lms(folder: Path, config: SimConfig, town: Town, cars: list, cond: Condition, traj: Trajectory,
              lms_us: np.ndarray, lms_t: np.ndarray, index: int) -> None:  # fmt: skip
    """Cast the ``lms_front`` scans, route section by section in models holding only the nearby geoms.

    The section models hold the same geoms (names, sizes, poses) as the rendered model, so the
    scans are exactly what the full model would give; casting against a few hundred geoms instead of
    thousands is about ten times faster.
    """
    t_vehicle_lms = extrinsics("lms_front")
    lms_poses = traj.poses(seconds_to_ns(lms_t)) @ t_vehicle_lms
    scan_rng = np.random.default_rng([config.seed, 7, index])
    cam = camera_model(config)
    reach = config.lms_max_range_m + 1.0
    per_section = max(int(np.ceil(_LMS_SECTION_M / config.speed_mps * config.lms_hz)), 1)
    progress = tqdm(
        total=len(lms_us), desc=f"{folder.name} lms_front", unit="scan", leave=False, disable=None
    )
    for first in range(0, len(lms_us), per_section):
        poses = lms_poses[first : first + per_section]
        lo, hi = poses[:, :2, 3].min(axis=0) - reach, poses[:, :2, 3].max(axis=0) + reach
        spec = town_spec(town, cars, cond, width=config.width, height=config.height,
                         camera=(cam.fx, cam.fy, cam.cx, cam.cy), g_camera_image=cam.g_camera_image,
                         region=(lo[0], hi[0], lo[1], hi[1]))  # fmt: skip
        model = spec.compile()
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)
        scanner = LidarScanner(
            model, data, geom_reflectance(model, REFLECTANCE), max_range=config.lms_max_range_m
        )
        for k, pose in enumerate(poses, start=first):
            points = scanner.scan(pose, scan_rng)
            (folder / "lms_front" / f"{lms_us[k]}.bin").write_bytes(points.astype("<f8").tobytes())
            progress.update()
    progress.close()


def _simulate_traversal(out_dir: Path, config: SimConfig, town: Town, index: int) -> Path:
    cond = condition(config.conditions[index])
    name, t0_us = traversal_name(config, index)
    folder = out_dir / name
    log.info("traversal %d/%d: %s (%s)", index + 1, len(config.conditions), name, cond.name)
    rng = np.random.default_rng([config.seed, 4, index])
    traj = drive(town.route, rng, speed=config.speed_mps, lateral_jitter=config.lateral_jitter_m,
                 speed_jitter=config.speed_jitter)  # fmt: skip
    cam = camera_model(config)
    cars = parked_cars(town, config.seed, index, occupancy=config.parked_occupancy)
    spec = town_spec(town, cars, cond,
                     width=config.width, height=config.height, camera=(cam.fx, cam.fy, cam.cx, cam.cy),
                     g_camera_image=cam.g_camera_image)  # fmt: skip
    model = spec.compile()
    for sub in ("stereo/centre", "gps", "vo", "lms_front") + (("sim_depth",) if config.save_depth else ()):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (out_dir / "sdk" / "tags" / f"{name}.yaml").write_text("".join(f"- {tag}\n" for tag in cond.tags))

    def stamps_at(rate: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
        stamps = t0_us + np.round(_times(traj.end_ns / 1e9, rate, margin) * 1e6).astype(np.int64)
        return stamps, (stamps - t0_us) / 1e6

    ins_us, ins_t = stamps_at(config.ins_hz, 0.0)
    gps_us, gps_t = stamps_at(config.gps_hz, 0.0)
    cam_us, cam_t = stamps_at(config.camera_hz, 0.5)
    lms_us, lms_t = stamps_at(config.lms_hz, 0.25)
    ned = _write_ins(folder / "gps" / "ins.csv", config, ins_us, ins_t, traj, rng)
    gps_ned = np.stack([np.interp(gps_t, ins_t, ned[:, i]) for i in range(3)], axis=1)
    _write_gps(folder / "gps" / "gps.csv", config, gps_us, gps_ned, rng)
    cam_poses = traj.poses(seconds_to_ns(cam_t))
    _write_vo(folder / "vo" / "vo.csv", config, cam_us, ned_from_world(config) @ cam_poses, rng)
    _write_timestamps(folder / "stereo.timestamps", cam_us)
    _write_timestamps(folder / "lms_front.timestamps", lms_us)

    started = time.perf_counter()
    with SceneRenderer(model, config.width, config.height, cond, town.street_lights) as renderer:
        for k in tqdm(range(len(cam_us)), desc=f"{name} camera", unit="frame", leave=False, disable=None):
            frame_rng = np.random.default_rng([config.seed, 6, index, k]) if config.post_process else None
            rgb, depth = renderer.render(cam_poses[k], depth=config.save_depth, rng=frame_rng)
            ok, png = cv2.imencode(".png", mosaic(rgb, "gbrg"))
            if not ok:  # pragma: no cover - OpenCV failure
                raise RuntimeError("PNG encoding failed")
            (folder / "stereo" / "centre" / f"{cam_us[k]}.png").write_bytes(png.tobytes())
            if depth is not None:
                np.save(folder / "sim_depth" / f"{cam_us[k]}.npy", depth.astype(np.float32))
    rendered = time.perf_counter()
    _scan_lms(folder, config, town, cars, cond, traj, lms_us, lms_t, index)
    log.info("%s: %d frames rendered in %.1f s, %d scans cast in %.1f s", name, len(cam_us), rendered - started,
             len(lms_us), time.perf_counter() - rendered)  # fmt: skip
    return folder


def simulate(out_dir: Path, config: SimConfig) -> list[Path]:
    """Write one RobotCar traversal per condition of ``config`` under ``out_dir``; return their folders.

    Raises:
        OutputExistsError: a traversal folder exists already (nothing is overwritten).
    """
    out_dir = Path(out_dir)
    names = [traversal_name(config, k)[0] for k in range(len(config.conditions))]
    if len(set(names)) != len(names):
        raise ConfigError(f"traversal names collide: {names}; raise SimConfig.days_between")
    for name in names:
        if (out_dir / name).exists():
            raise OutputExistsError(f"{out_dir / name} exists already; choose another OUT_DIR or remove it")
    start = time.perf_counter()
    log.info("simulating %d traversal(s) into %s with %s", len(names), out_dir, config)
    route = plan_route(np.random.default_rng([config.seed, 0]), config.route_length_m, config.block_m)
    town = build_town(route, config.seed)
    log.info("town: %.0f m route, %d buildings, %d props", route.length, len(town.buildings), len(town.props))
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_sdk(out_dir, config)
    folders = [_simulate_traversal(out_dir, config, town, k) for k in range(len(config.conditions))]
    log.info("simulated %d traversal(s) in %.1f s", len(folders), time.perf_counter() - start)
    return folders
