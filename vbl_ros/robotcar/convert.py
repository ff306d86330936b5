"""Convert one RobotCar traversal folder into a rosbag2 bag (``vbl convert robotcar``).

The bag follows ``docs/CONTRACTS.md``: camera images (original PNG bytes by default), camera info,
LIDAR depth and reflectance maps, INS odometry in a local ENU ``map`` frame anchored at a recorded
UTM origin, GPS fixes, front LIDAR point clouds and static transforms. Stamps and bag times are the
RobotCar microseconds * 1000.

Memory stays bounded whatever the traversal's length: the sensors are streamed in time order
(``heapq.merge`` over per-sensor generators) and only a sliding window of LIDAR scans is kept for
the depth maps. The bag is written to ``<out>.partial/<name>`` and renamed when complete, so an
interrupted conversion never leaves a bag that looks complete.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vbl_ros.errors import ConfigError, MissingDataError, OutputExistsError, RobotCarFormatError
from vbl_ros.geometry.frames import NED_TO_ENU, base_link_from_vehicle, map_from_world
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.geometry.utm import UtmOrigin
from vbl_ros.robotcar.calibration import CameraModel, read_camera_model, sensor_in_vehicle
from vbl_ros.robotcar.depth import DepthProjector, LidarWindow, check_model_fits
from vbl_ros.robotcar.images import CameraSpec, camera_spec, read_image
from vbl_ros.robotcar.ins import GpsData, InsData, read_gps, read_ins
from vbl_ros.robotcar.lidar import read_scan
from vbl_ros.robotcar.messages import MessageFactory
from vbl_ros.robotcar.poses import ins_world_poses
from vbl_ros.robotcar.timestamps import Timestamps, read_timestamps, us_to_ns

__all__ = ["ConvertConfig", "ConvertReport", "convert_robotcar", "convert_robotcar_report", "IMAGE_ENCODINGS"]

logger = logging.getLogger(__name__)

IMAGE_ENCODINGS = ("compressed", "bayer", "rgb8")
_ENCODING_ALIASES = {"bayer_gbrg8": "bayer", "bayer_rggb8": "bayer", "raw": "bayer", "png": "compressed"}
_STORAGES = ("mcap", "sqlite3")
LIDAR = "lms_front"


@dataclass(frozen=True)
class ConvertConfig:
    """Options of a RobotCar conversion.

    Attributes:
        cameras: camera folders to convert (``stereo/centre``, ``stereo/left``, ``stereo/right``,
            ``mono_left``, ``mono_right``, ``mono_rear``).
        image_encoding: ``compressed`` (original PNG bytes, lossless, smallest), ``bayer`` (raw
            ``bayer_gbrg8``/``bayer_rggb8`` Image; ``bayer_gbrg8`` is accepted) or ``rgb8`` (demosaiced).
        side_modality: write LIDAR depth and reflectance maps for the cameras in ``depth_cameras``.
        depth_cameras: cameras that get depth maps (must be converted; pinhole cameras only).
        depth_window_before_s, depth_window_after_s: LIDAR scans in ``[t - before, t + after]``
            make an image's maps (Piasco et al.: 10 s / 50 s for stereo centre). ``mono_rear`` swaps them.
        max_depth_m: LIDAR points farther than this are dropped.
        lidar_points: write ``/lms_front/points``.
        gps: write ``/gps/fix`` from ``gps/gps.csv``.
        storage: ``mcap`` (default) or ``sqlite3``.
        compress: zstd chunk compression (mcap only; the sparse depth maps shrink a lot).
        bag_version: rosbag2 metadata version, 8 or 9.
        require_good_ins: use only ``INS_SOLUTION_GOOD`` rows for poses and odometry.
        progress: show a progress bar.
    """

    cameras: tuple[str, ...] = ("stereo/centre",)
    image_encoding: str = "compressed"
    side_modality: bool = True
    depth_cameras: tuple[str, ...] = ("stereo/centre",)
    depth_window_before_s: float = 10.0
    depth_window_after_s: float = 50.0
    max_depth_m: float = 100.0
    lidar_points: bool = True
    gps: bool = True
    storage: str = "mcap"
    compress: bool = True
    bag_version: int = 9
    require_good_ins: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "depth_cameras", tuple(self.depth_cameras))
        encoding = _ENCODING_ALIASES.get(self.image_encoding, self.image_encoding)
        object.__setattr__(self, "image_encoding", encoding)
        if not self.cameras:
            raise ConfigError(
                "ConvertConfig.cameras is empty; convert at least one camera, e.g. stereo/centre"
            )
        for name in self.cameras:
            camera_spec(name)
        if len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"ConvertConfig.cameras lists a camera twice: {self.cameras}")
        if encoding not in IMAGE_ENCODINGS:
            raise ConfigError(
                f"image_encoding {self.image_encoding!r} is not one of {IMAGE_ENCODINGS} (or bayer_gbrg8)"
            )
        if self.side_modality:
            extra = sorted(set(self.depth_cameras) - set(self.cameras))
            if extra:
                raise ConfigError(f"depth_cameras {extra} are not converted; add them to cameras")
        if self.depth_window_before_s < 0 or self.depth_window_after_s < 0:
            raise ConfigError("depth_window_before_s and depth_window_after_s must not be negative")
        if self.max_depth_m <= 0:
            raise ConfigError(f"max_depth_m must be positive, got {self.max_depth_m}")
        if self.storage not in _STORAGES:
            raise ConfigError(f"storage {self.storage!r} is not one of {_STORAGES}")
        if self.bag_version not in (8, 9):
            raise ConfigError(f"bag_version must be 8 or 9, got {self.bag_version}")

    @property
    def depth_camera_names(self) -> tuple[str, ...]:
        return self.depth_cameras if self.side_modality else ()


@dataclass(frozen=True)
class ConvertReport:
    """What a conversion wrote and what it skipped."""

    out_bag: Path
    utm_origin: UtmOrigin
    message_counts: dict[str, int]
    missing_files: dict[str, int]  # per sensor folder: files listed in timestamps but absent
    images_without_pose: int  # images outside the INS range: their depth maps are all 0
    scans_without_pose: int  # LIDAR scans outside the INS range: left out of depth maps
    ins_rows_skipped: int  # INS rows not INS_SOLUTION_GOOD (with require_good_ins)
    start_us: int
    end_us: int

    def summary(self) -> str:
        """One line for the log or the command line."""
        missing = ", ".join(f"{k}: {v}" for k, v in sorted(self.missing_files.items()) if v) or "none"
        total = sum(self.message_counts.values())
        return (
            f"{self.out_bag}: {total} messages over {(self.end_us - self.start_us) / 1e6:.1f} s; "
            f"missing files skipped: {missing}; images without INS pose: {self.images_without_pose}; "
            f"INS rows skipped: {self.ins_rows_skipped}"
        )


@dataclass(frozen=True)
class _Camera:
    spec: CameraSpec
    timestamps: Timestamps
    model: CameraModel
    vehicle_from_optical: np.ndarray
    width: int
    height: int
    depth: bool


@dataclass
class _Inputs:
    traversal: Path
    ins: InsData
    ins_rows_skipped: int
    origin: UtmOrigin
    world_ins: np.ndarray  # (N, 4, 4) T_world_ins
    poses: Trajectory  # T_world_ins, stamps in ns
    vehicle_from_ins: np.ndarray
    vehicle_from_lidar: np.ndarray
    cameras: list[_Camera]
    gps: GpsData | None
    lidar: Timestamps | None
    missing: Counter[str] = field(default_factory=Counter)


def _check_paths(traversal: Path, out: Path, staging: Path) -> None:
    if not traversal.is_dir():
        raise MissingDataError(
            f"{traversal}: traversal folder not found; pass a folder such as 2014-12-09-13-21-02/"
        )
    if not any(traversal.iterdir()):
        raise MissingDataError(
            f"{traversal}: the folder is empty; pass a RobotCar traversal folder holding stereo.timestamps, "
            "stereo/centre/ and gps/ins.csv (extract the downloaded chunks into it)"
        )
    if out.exists():
        raise OutputExistsError(f"{out}: the output exists already; choose another path or delete it")
    if staging.exists():
        raise OutputExistsError(
            f"{staging}: left by an interrupted conversion; delete it and run the conversion again"
        )


def _first_image_size(traversal: Path, spec: CameraSpec, timestamps: Timestamps) -> tuple[int, int]:
    folder = traversal / spec.name
    for t_us in timestamps.times_us:
        path = folder / f"{int(t_us)}.png"
        if path.is_file():
            image = read_image(path)
            return image.width, image.height
    raise MissingDataError(
        f"{folder}: none of the {len(timestamps)} images listed in {timestamps.path.name} exists; "
        "download and extract the camera's chunks into the traversal folder"
    )


def _read_inputs(traversal: Path, extrinsics_dir: Path, models_dir: Path, config: ConvertConfig) -> _Inputs:
    """Read and check everything small before writing anything."""
    ins_all = read_ins(traversal / "gps" / "ins.csv")
    ins = ins_all.select(ins_all.good) if config.require_good_ins else ins_all
    skipped = len(ins_all) - len(ins)
    if len(ins) == 0:
        raise RobotCarFormatError(
            ins_all.path, "no row has ins_status INS_SOLUTION_GOOD; this traversal has no usable INS poses"
        )
    _, unique = np.unique(ins.times_us, return_index=True)
    if unique.size != len(ins):
        logger.warning("%s: %d rows repeat a timestamp; keeping the first", ins.path, len(ins) - unique.size)
        mask = np.zeros(len(ins), dtype=bool)
        mask[unique] = True
        ins = ins.select(mask)
    if len(ins) < 2:
        raise RobotCarFormatError(ins.path, "fewer than two usable INS rows; cannot interpolate poses")
    origin = UtmOrigin(
        easting=float(ins.easting[0]),
        northing=float(ins.northing[0]),
        up=-float(ins.down[0]),
        zone=ins.utm_zone[0],
    )
    zones = sorted(set(ins.utm_zone))
    if len(zones) > 1:
        raise RobotCarFormatError(ins.path, f"rows span several UTM zones {zones}; split the traversal")
    world_ins = ins_world_poses(ins, (origin.northing, origin.easting, -origin.up))
    poses = Trajectory.from_poses(
        np.asarray(ins.times_us, np.int64) * 1000,
        world_ins,
        source=str(ins.path),
        hint="only convert data recorded while the INS was running",
    )

    missing: Counter[str] = Counter()
    gps = None
    if config.gps:
        gps_path = traversal / "gps" / "gps.csv"
        if gps_path.is_file():
            gps = read_gps(gps_path)
        else:
            logger.warning("%s not found: the bag will have no /gps/fix", gps_path)
            missing["gps"] += 1

    depth_names = config.depth_camera_names
    lidar = None
    lidar_path = traversal / f"{LIDAR}.timestamps"
    if depth_names or config.lidar_points:
        if lidar_path.is_file():
            lidar = read_timestamps(lidar_path)
        elif depth_names:
            raise MissingDataError(
                f"{lidar_path}: not found, and depth maps need the front LIDAR; download the lms_front "
                "chunks or convert without depth maps (side_modality=False, --no-side-modality)"
            )
        else:
            logger.warning("%s not found: the bag will have no /%s/points", lidar_path, LIDAR)
            missing[LIDAR] += 1

    cameras = []
    for name in config.cameras:
        spec = camera_spec(name)
        timestamps = read_timestamps(traversal / spec.timestamps)
        model = read_camera_model(models_dir, spec.model)
        width, height = _first_image_size(traversal, spec, timestamps)
        check_model_fits(model, width, height, source=str(Path(models_dir) / f"{spec.model}.txt"))
        vehicle_from_camera = sensor_in_vehicle(extrinsics_dir, spec.extrinsics)
        cameras.append(
            _Camera(
                spec=spec,
                timestamps=timestamps,
                model=model,
                vehicle_from_optical=vehicle_from_camera @ model.g_camera_image,
                width=width,
                height=height,
                depth=name in depth_names,
            )
        )
    return _Inputs(
        traversal=traversal,
        ins=ins,
        ins_rows_skipped=skipped,
        origin=origin,
        world_ins=world_ins,
        poses=poses,
        vehicle_from_ins=sensor_in_vehicle(extrinsics_dir, "ins"),
        vehicle_from_lidar=sensor_in_vehicle(extrinsics_dir, LIDAR),
        cameras=cameras,
        gps=gps,
        lidar=lidar if config.lidar_points or depth_names else None,
        missing=missing,
    )


def static_transforms(inputs: _Inputs) -> list[tuple[str, str, np.ndarray]]:
    """``(parent, child, T)`` from ``base_link`` (REP-103, at the vehicle origin) to each sensor frame."""
    base_from_vehicle = np.linalg.inv(base_link_from_vehicle(np.eye(4)))
    out = [
        ("base_link", "ins", base_from_vehicle @ inputs.vehicle_from_ins),
        ("base_link", LIDAR, base_from_vehicle @ inputs.vehicle_from_lidar),
    ]
    out += [
        ("base_link", c.spec.frame_id, base_from_vehicle @ c.vehicle_from_optical) for c in inputs.cameras
    ]
    return out


def odometry_pose(world_ins: np.ndarray, vehicle_from_ins: np.ndarray) -> np.ndarray:
    """``T_map_base_link`` from ``T_world_ins`` (local NED) and the INS extrinsics ``T_vehicle_ins``."""
    return base_link_from_vehicle(map_from_world(world_ins @ np.linalg.inv(vehicle_from_ins)))


def _tagged(
    times_us: Iterable[int], order: int, kind: str, payload: Any
) -> Iterator[tuple[int, int, str, Any]]:
    """``(time, order, kind, payload)`` events for one sensor stream."""
    return ((int(t), order, kind, payload) for t in times_us)


def _events(inputs: _Inputs, config: ConvertConfig) -> tuple[Iterator[tuple[int, int, str, Any]], int]:
    """All sensor events merged in time order, and their number (for the progress bar)."""
    streams: list[Iterator[tuple[int, int, str, Any]]] = []
    total = len(inputs.ins)
    streams.append((int(t), 0, "ins", i) for i, t in enumerate(inputs.ins.times_us))
    if inputs.gps is not None:
        gps = inputs.gps
        streams.append((int(t), 1, "gps", i) for i, t in enumerate(gps.times_us))
        total += len(gps)
    for index, camera in enumerate(inputs.cameras):
        # A helper binds this camera's index now; a bare generator expression would read `index`
        # when consumed, after the loop, and send every camera's images to the last camera.
        streams.append(_tagged(camera.timestamps.times_us, 2, "image", index))
        total += len(camera.timestamps)
    if config.lidar_points and inputs.lidar is not None:
        streams.append((int(t), 3, "scan", None) for t in inputs.lidar.times_us)
        total += len(inputs.lidar)
    return heapq.merge(*streams, key=lambda event: (event[0], event[1])), total


class _BagSink:
    """A rosbags writer with one connection per topic and a message count per topic."""

    def __init__(self, writer: Any, factory: MessageFactory) -> None:
        self.writer = writer
        self.factory = factory
        self.connections: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()

    def add(self, topic: str, msgtype: str, *, latched: bool = False) -> None:
        from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

        qos = []
        if latched:
            zero = QosTime(sec=0, nsec=0)
            qos = [
                Qos(
                    history=QosHistory.KEEP_LAST,
                    depth=1,
                    reliability=QosReliability.RELIABLE,
                    durability=QosDurability.TRANSIENT_LOCAL,
                    deadline=zero,
                    lifespan=zero,
                    liveliness=QosLiveliness.AUTOMATIC,
                    liveliness_lease_duration=zero,
                    avoid_ros_namespace_conventions=False,
                )
            ]
        self.connections[topic] = self.writer.add_connection(
            topic, msgtype, typestore=self.factory.typestore, offered_qos_profiles=qos
        )

    def write(self, topic: str, t_us: int, message: Any) -> None:
        self.writer.write(self.connections[topic], us_to_ns(t_us), self.factory.serialize(message))
        self.counts[topic] += 1


def _image_topic(camera: _Camera, config: ConvertConfig) -> tuple[str, str]:
    if config.image_encoding == "compressed":
        return f"{camera.spec.topic}/image_raw/compressed", "sensor_msgs/msg/CompressedImage"
    return f"{camera.spec.topic}/image_raw", "sensor_msgs/msg/Image"


def _open_topics(sink: _BagSink, inputs: _Inputs, config: ConvertConfig) -> None:
    sink.add("/map/utm_origin", "geometry_msgs/msg/PointStamped", latched=True)
    sink.add("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
    sink.add("/ins/odometry", "nav_msgs/msg/Odometry")
    if inputs.gps is not None:
        sink.add("/gps/fix", "sensor_msgs/msg/NavSatFix")
    if config.lidar_points and inputs.lidar is not None:
        sink.add(f"/{LIDAR}/points", "sensor_msgs/msg/PointCloud2")
    for camera in inputs.cameras:
        sink.add(*_image_topic(camera, config))
        sink.add(f"{camera.spec.topic}/camera_info", "sensor_msgs/msg/CameraInfo")
        if camera.depth:
            sink.add(f"{camera.spec.topic}/depth", "sensor_msgs/msg/Image")
            sink.add(f"{camera.spec.topic}/reflectance", "sensor_msgs/msg/Image")


def _projectors(inputs: _Inputs, config: ConvertConfig) -> dict[int, DepthProjector]:
    out: dict[int, DepthProjector] = {}
    if inputs.lidar is None:
        return out
    ins_from_vehicle = np.linalg.inv(inputs.vehicle_from_ins)
    for index, camera in enumerate(inputs.cameras):
        if not camera.depth:
            continue
        before, after = config.depth_window_before_s, config.depth_window_after_s
        if camera.spec.name == "mono_rear":
            before, after = after, before
        window = LidarWindow(
            inputs.traversal / LIDAR,
            inputs.lidar,
            inputs.poses,
            ins_from_vehicle @ inputs.vehicle_from_lidar,
            before_us=round(before * 1e6),
            after_us=round(after * 1e6),
        )
        out[index] = DepthProjector(
            window,
            inputs.poses,
            ins_from_vehicle @ camera.vehicle_from_optical,
            camera.model,
            camera.width,
            camera.height,
            max_depth=config.max_depth_m,
        )
    return out


def _write_bag(bag: Path, inputs: _Inputs, config: ConvertConfig) -> ConvertReport:
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from vbl_ros.images import demosaic

    store = Stores.ROS2_KILTED if hasattr(Stores, "ROS2_KILTED") else Stores.LATEST
    factory = MessageFactory(get_typestore(store))
    plugin = StoragePlugin.MCAP if config.storage == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(bag, version=config.bag_version, storage_plugin=plugin)
    if config.compress and config.storage == "mcap":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.set_custom_data("vbl.utm_origin", inputs.origin.to_text())
    events, total = _events(inputs, config)
    starts = [int(inputs.ins.times_us[0])] + [int(c.timestamps.times_us[0]) for c in inputs.cameras]
    ends = [int(inputs.ins.times_us[-1])] + [int(c.timestamps.times_us[-1]) for c in inputs.cameras]
    if inputs.gps is not None:
        starts.append(int(inputs.gps.times_us[0]))
        ends.append(int(inputs.gps.times_us[-1]))
    if config.lidar_points and inputs.lidar is not None:
        starts.append(int(inputs.lidar.times_us[0]))
        ends.append(int(inputs.lidar.times_us[-1]))
    start_us, end_us = min(starts), max(ends)
    projectors = _projectors(inputs, config)
    missing = Counter(inputs.missing)
    images_without_pose = 0
    sizes = {i: (c.width, c.height) for i, c in enumerate(inputs.cameras)}

    writer.open()
    try:
        sink = _BagSink(writer, factory)
        _open_topics(sink, inputs, config)
        sink.write("/map/utm_origin", start_us, factory.utm_origin(start_us, inputs.origin))
        sink.write("/tf_static", start_us, factory.tf_message(start_us, static_transforms(inputs)))
        enu_from_ned = NED_TO_ENU
        bar = tqdm(
            events,
            total=total,
            unit="msg",
            desc=inputs.traversal.name,
            disable=None if config.progress else True,
        )
        for t_us, _, kind, payload in bar:
            if kind == "ins":
                pose = odometry_pose(inputs.world_ins[payload], inputs.vehicle_from_ins)
                velocity = pose[:3, :3].T @ (enu_from_ned @ inputs.ins.velocity_ned[payload])
                sink.write("/ins/odometry", t_us, factory.odometry(t_us, pose, velocity))
            elif kind == "gps":
                gps = inputs.gps
                if gps is None:  # cannot happen: the gps stream exists only with gps data
                    continue
                sink.write(
                    "/gps/fix",
                    t_us,
                    factory.navsatfix(
                        t_us,
                        "ins",
                        gps.latitude[payload],
                        gps.longitude[payload],
                        gps.altitude[payload],
                        gps.sigma[payload],
                        int(gps.num_satellites[payload]),
                    ),
                )
            elif kind == "scan":
                try:
                    scan = read_scan(inputs.traversal / LIDAR / f"{t_us}.bin")
                except MissingDataError:
                    missing[LIDAR] += 1
                    continue
                sink.write(f"/{LIDAR}/points", t_us, factory.pointcloud(t_us, LIDAR, scan))
            else:
                camera = inputs.cameras[payload]
                path = inputs.traversal / camera.spec.name / f"{t_us}.png"
                try:
                    image = read_image(path, expected_size=sizes[payload])
                except MissingDataError:
                    missing[camera.spec.name] += 1
                    continue
                frame = camera.spec.frame_id
                topic, _ = _image_topic(camera, config)
                bayer = f"bayer_{camera.spec.bayer_pattern}8"
                if config.image_encoding == "compressed":
                    message = factory.compressed_image(t_us, frame, image.png, bayer)
                elif config.image_encoding == "bayer":
                    message = factory.image(t_us, frame, image.mosaic, bayer)
                else:
                    message = factory.image(
                        t_us, frame, demosaic(image.mosaic, camera.spec.bayer_pattern), "rgb8"
                    )
                sink.write(topic, t_us, message)
                info = factory.camera_info(t_us, frame, camera.model, camera.width, camera.height)
                sink.write(f"{camera.spec.topic}/camera_info", t_us, info)
                projector = projectors.get(payload)
                if projector is not None:
                    maps = projector.render(t_us)
                    if maps is None:
                        images_without_pose += 1
                        zeros = np.zeros((camera.height, camera.width), dtype=np.float32)
                        depth, reflectance = zeros, zeros
                    else:
                        depth, reflectance = maps.depth, maps.reflectance
                    sink.write(f"{camera.spec.topic}/depth", t_us, factory.image(t_us, frame, depth, "32FC1"))
                    sink.write(
                        f"{camera.spec.topic}/reflectance",
                        t_us,
                        factory.image(t_us, frame, reflectance, "32FC1"),
                    )
        bar.close()
    except BaseException:
        writer.close()
        raise
    window_missing = max((p.window.missing for p in projectors.values()), default=0)
    if window_missing > missing[LIDAR]:
        missing[LIDAR] = window_missing
    missing = Counter({k: v for k, v in missing.items() if v})
    scans_without_pose = max((p.window.without_pose for p in projectors.values()), default=0)
    writer.set_custom_data("vbl.missing_files", json.dumps(dict(missing), sort_keys=True))
    writer.close()
    return ConvertReport(
        out_bag=bag,
        utm_origin=inputs.origin,
        message_counts=dict(sink.counts),
        missing_files=dict(missing),
        images_without_pose=images_without_pose,
        scans_without_pose=scans_without_pose,
        ins_rows_skipped=inputs.ins_rows_skipped,
        start_us=start_us,
        end_us=end_us,
    )


def convert_robotcar_report(
    traversal_dir: Path | str,
    out_bag: Path | str,
    *,
    extrinsics_dir: Path | str,
    models_dir: Path | str,
    config: ConvertConfig | None = None,
) -> ConvertReport:
    """Convert a traversal and return the :class:`ConvertReport` (see :func:`convert_robotcar`)."""
    config = config or ConvertConfig()
    traversal = Path(traversal_dir)
    out = Path(out_bag)
    staging = out.with_name(out.name + ".partial")
    _check_paths(traversal, out, staging)
    logger.info("converting %s -> %s with %s", traversal, out, config)
    inputs = _read_inputs(traversal, Path(extrinsics_dir), Path(models_dir), config)
    staging.mkdir(parents=True)
    try:
        report = _write_bag(staging / out.name, inputs, config)
        os.rename(staging / out.name, out)
        staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report = ConvertReport(**{**report.__dict__, "out_bag": out})
    for sensor, count in sorted(report.missing_files.items()):
        if count:
            logger.warning(
                "%s: %d file(s) listed in the timestamps are missing and were skipped", sensor, count
            )
    logger.info("%s", report.summary())
    return report


def convert_robotcar(
    traversal_dir: Path | str,
    out_bag: Path | str,
    *,
    extrinsics_dir: Path | str,
    models_dir: Path | str,
    config: ConvertConfig | None = None,
) -> Path:
    """Convert one RobotCar traversal folder into a rosbag2 bag and return the bag's path.

    Args:
        traversal_dir: e.g. ``2014-12-09-13-21-02/`` with ``stereo.timestamps``, ``stereo/centre/``,
            ``gps/ins.csv``, ``gps/gps.csv``, ``lms_front.timestamps``, ``lms_front/``.
        out_bag: the bag folder to create; it must not exist.
        extrinsics_dir, models_dir: the ``extrinsics/`` and ``models/`` folders of an SDK checkout.
        config: conversion options (defaults: stereo centre, PNG bytes, depth maps, mcap).

    Raises:
        MissingDataError: a required file (ins.csv, a timestamps file, calibration) is absent or the
            traversal folder is empty.
        RobotCarFormatError: a malformed row or file (the message names file and line).
        ImageDecodeError: a truncated or corrupt PNG, or an image of another size than the first.
        OutputExistsError: ``out_bag`` (or a stale ``<out_bag>.partial``) exists.
        ConfigError: invalid options, or a camera model that does not fit the images.
    """
    return convert_robotcar_report(
        traversal_dir, out_bag, extrinsics_dir=extrinsics_dir, models_dir=models_dir, config=config
    ).out_bag
