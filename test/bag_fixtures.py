"""Small real bags in the docs/CONTRACTS.md layout, written with rosbags for the tests.

:func:`write_line_bag` drives along the x axis (east) at constant speed: INS odometry at 20 Hz,
GPS at 5 Hz, the UTM origin once, and a compressed Bayer camera whose frames are crops of one
long random "street" texture taken at the vehicle's position (so nearby frames look alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from vbl_ros.geometry.utm import utm_to_latlon
from vbl_ros.images import mosaic

STORE = Stores.ROS2_KILTED if hasattr(Stores, "ROS2_KILTED") else Stores.LATEST
CAMERA_TOPIC = "/stereo/centre/image_raw/compressed"
ORIGIN = (619_000.0, 5_736_000.0, 100.0, "30U")  # near Oxford
T0_NS = 1_400_000_000 * 1_000_000_000
PIXELS_PER_M = 4


@dataclass(frozen=True)
class LineBag:
    path: Path
    length_m: float
    speed_mps: float
    camera_hz: float
    texture: np.ndarray  # (H, W, 3) uint8 street texture; frame at x starts at column x * PIXELS_PER_M

    def frame_at(self, x_m: float, width: int = 64) -> np.ndarray:
        """The camera frame (RGB) seen at ``x_m`` metres."""
        col = round(x_m * PIXELS_PER_M)
        return np.ascontiguousarray(self.texture[:, col : col + width])


def street_texture(length_m: float, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cols = int(length_m * PIXELS_PER_M) + width + 1
    noise = rng.integers(0, 256, size=(height // 4 + 1, cols // 4 + 1, 3), dtype=np.uint8)
    texture = cv2.resize(noise, (cols, height), interpolation=cv2.INTER_CUBIC)
    return texture


def write_line_bag(
    path: Path,
    *,
    length_m: float = 60.0,
    speed_mps: float = 5.0,
    camera_hz: float = 4.0,
    with_origin: bool = True,
    with_gps: bool = True,
    seed: int = 0,
) -> LineBag:
    """Write the bag (sqlite3, version 9) and return what it holds."""
    store = get_typestore(STORE)
    T = store.types
    texture = street_texture(length_m, seed=seed)
    bag = LineBag(path, length_m, speed_mps, camera_hz, texture)
    duration_s = length_m / speed_mps

    def header(t_ns: int, frame: str):
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=frame
        )

    writer = Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3)
    if with_origin:
        writer.set_custom_data("vbl.utm_origin", " ".join(map(str, ORIGIN)))
    with writer:
        events: list[tuple[int, str, object]] = []
        conns = {}
        if with_origin:
            conns["/map/utm_origin"] = writer.add_connection(
                "/map/utm_origin", "geometry_msgs/msg/PointStamped", typestore=store
            )
            point = T["geometry_msgs/msg/Point"](x=ORIGIN[0], y=ORIGIN[1], z=ORIGIN[2])
            events.append(
                (
                    T0_NS,
                    "/map/utm_origin",
                    T["geometry_msgs/msg/PointStamped"](
                        header=header(T0_NS, f"utm_{ORIGIN[3]}"), point=point
                    ),
                )
            )
        conns["/ins/odometry"] = writer.add_connection(
            "/ins/odometry", "nav_msgs/msg/Odometry", typestore=store
        )
        for t_ns in np.arange(0, duration_s + 1e-9, 0.05) * 1e9:
            t = T0_NS + int(np.rint(t_ns))
            x = speed_mps * (t - T0_NS) / 1e9
            pose = T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=x, y=0.0, z=0.0),
                orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            )
            twist = T["geometry_msgs/msg/Twist"](
                linear=T["geometry_msgs/msg/Vector3"](x=speed_mps, y=0.0, z=0.0),
                angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
            )
            msg = T["nav_msgs/msg/Odometry"](
                header=header(t, "map"),
                child_frame_id="base_link",
                pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
                twist=T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)),
            )
            events.append((t, "/ins/odometry", msg))
        if with_gps:
            conns["/gps/fix"] = writer.add_connection(
                "/gps/fix", "sensor_msgs/msg/NavSatFix", typestore=store
            )
            for t_ns in np.arange(0, duration_s + 1e-9, 0.2) * 1e9:
                t = T0_NS + int(np.rint(t_ns))
                x = speed_mps * (t - T0_NS) / 1e9
                lat, lon = utm_to_latlon(ORIGIN[0] + x, ORIGIN[1], ORIGIN[3])
                status = T["sensor_msgs/msg/NavSatStatus"](status=0, service=1)
                events.append(
                    (
                        t,
                        "/gps/fix",
                        T["sensor_msgs/msg/NavSatFix"](
                            header=header(t, "gps"),
                            status=status,
                            latitude=float(lat),
                            longitude=float(lon),
                            altitude=ORIGIN[2],
                            position_covariance=np.zeros(9),
                            position_covariance_type=0,
                        ),
                    )
                )
        conns[CAMERA_TOPIC] = writer.add_connection(
            CAMERA_TOPIC, "sensor_msgs/msg/CompressedImage", typestore=store
        )
        for t_ns in np.arange(0, duration_s + 1e-9, 1.0 / camera_hz) * 1e9:
            t = T0_NS + int(np.rint(t_ns))
            x = speed_mps * (t - T0_NS) / 1e9
            ok, png = cv2.imencode(".png", mosaic(bag.frame_at(x), "gbrg"))
            assert ok
            events.append(
                (
                    t,
                    CAMERA_TOPIC,
                    T["sensor_msgs/msg/CompressedImage"](
                        header=header(t, "stereo_centre_optical"),
                        format="bayer_gbrg8; png compressed bayer_gbrg8",
                        data=np.frombuffer(png.tobytes(), dtype=np.uint8),
                    ),
                )
            )
        events.sort(key=lambda e: e[0])
        for t, topic, msg in events:
            writer.write(conns[topic], t, store.serialize_cdr(msg, msg.__msgtype__))
    return bag


def write_mcap_copy(src: Path, dst: Path, *, chunk_size: int | None = None) -> Path:
    """The sqlite3 bag ``src`` rewritten as an mcap bag at ``dst``: by rosbags (one chunk per MiB), or
    with ``chunk_size`` by the ``mcap`` library (many small chunks, as ``ros2 bag record`` writes)."""
    import yaml
    from rosbags.rosbag2 import Reader, StoragePlugin

    if chunk_size is None:
        with Reader(src) as reader, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            conns = {
                c.id: writer.add_connection(
                    c.topic,
                    c.msgtype,
                    msgdef=c.msgdef.data,
                    rihs01=c.digest,
                    serialization_format=c.ext.serialization_format,
                    offered_qos_profiles=c.ext.offered_qos_profiles,
                )
                for c in reader.connections
            }
            for conn, stamp, raw in reader.messages():
                writer.write(conns[conn.id], stamp, raw)
        return dst
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapWriter

    dst.mkdir()
    name = f"{dst.name}.mcap"
    with Reader(src) as reader, open(dst / name, "wb") as f:
        writer = McapWriter(f, chunk_size=chunk_size, compression=CompressionType.ZSTD)
        writer.start(profile="ros2", library="vbl tests")
        channels = {}
        for c in reader.connections:
            schema = writer.register_schema(c.msgtype, "ros2msg", c.msgdef.data.encode())
            channels[c.id] = writer.register_channel(c.topic, "cdr", schema, {"offered_qos_profiles": ""})
        for conn, stamp, raw in reader.messages():
            writer.add_message(channels[conn.id], log_time=stamp, data=raw, publish_time=stamp)
        writer.finish()
    metadata = yaml.safe_load((src / "metadata.yaml").read_text())
    info = metadata["rosbag2_bagfile_information"]
    info["storage_identifier"] = "mcap"
    info["relative_file_paths"] = [name]
    for file in info.get("files") or []:
        file["path"] = name
    (dst / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    return dst


def cut_copy(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    """A copy of the bag ``src`` whose storage file is cut at ``fraction`` of its size (an interrupted
    recording or copy)."""
    import os
    import shutil

    shutil.copytree(src, dst)
    storage = next(p for p in dst.iterdir() if p.suffix in (".db3", ".mcap"))
    os.truncate(storage, int(storage.stat().st_size * fraction))
    return dst
