"""Reading vbl bags (docs/CONTRACTS.md) without ROS: camera frames, INS trajectory, UTM origin, GPS.

The odometry comes back as a :class:`~vbl_ros.geometry.trajectory.Trajectory` that knows the UTM
origin of its frame, so drives recorded from different starting points can be compared in one frame.

Everything streams through ``rosbags``' :class:`~rosbags.highlevel.AnyReader`; nothing loads the
whole bag. Stamps are header stamps in nanoseconds.

Damaged bags: an mcap file cut short (a recording stopped without closing it) is read up to the
cut, with a warning saying how much; what cannot be read (a damaged sqlite3 file, an mcap cut inside
its only chunk, a path that is not a bag) raises :class:`~vbl_ros.errors.BagError` naming the file
and what to do.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vbl_ros.errors import BadFrameError, BagError, MissingDataError, RobotCarFormatError
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.geometry.utm import UtmOrigin
from vbl_ros.images import decode_compressed_image, decode_raw_image

__all__ = [
    "CAMERA_TOPICS",
    "GPS_TOPIC",
    "ODOMETRY_TOPIC",
    "UTM_ORIGIN_TOPIC",
    "CameraFrame",
    "GpsTrack",
    "check_bags",
    "open_reader",
    "read_camera_frames",
    "read_gps",
    "read_odometry",
    "read_utm_origin",
    "utm_origin_from_metadata",
]

logger = logging.getLogger(__name__)

#: camera topics tried in order when none is given
CAMERA_TOPICS = ("/stereo/centre/image_raw/compressed", "/stereo/centre/image_raw")
ODOMETRY_TOPIC = "/ins/odometry"
GPS_TOPIC = "/gps/fix"
UTM_ORIGIN_TOPIC = "/map/utm_origin"
_IMAGE_TYPES = ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image")


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED if hasattr(Stores, "ROS2_KILTED") else Stores.LATEST)


@contextmanager
def open_reader(bag: Path | str) -> Iterator[Any]:
    """An opened ``AnyReader`` for ``bag`` (use as a context manager).

    Raises:
        MissingDataError: ``bag`` does not exist.
        BagError: ``bag`` is not a bag, or its storage file is damaged or cut short beyond what
            can be read (raised on opening, or while reading its messages inside the block). An mcap
            file cut short after complete chunks is read up to the cut, with a warning.
    """
    from rosbags.highlevel import AnyReader

    bag = Path(bag)
    if not bag.exists():
        raise MissingDataError(f"{bag}: bag not found")
    if bag.is_dir() and not (bag / "metadata.yaml").is_file():
        raise BagError(
            f"{bag}: not a rosbag2 bag folder (no metadata.yaml); pass the folder that 'vbl convert' or "
            "'ros2 bag record' wrote"
        )
    try:
        reader = AnyReader([bag], default_typestore=_typestore())
        for folder in _folder_readers(reader):  # this reader only: nothing global is patched
            if "mcap" in getattr(folder, "STORAGE_PLUGINS", {}):
                folder.STORAGE_PLUGINS = {**folder.STORAGE_PLUGINS, "mcap": _cut_mcap_reader()}
        reader.open()
    except (*_read_errors(), OSError) as err:
        raise _bag_error(bag, err) from err
    _warn_if_cut(bag, reader)
    try:
        yield reader
    except _read_errors() as err:
        raise _bag_error(bag, err) from err
    finally:
        reader.close()


def check_bags(bags: Sequence[Path | str]) -> None:
    """Open each bag and close it again: a missing, damaged or non-bag path is refused before the
    long work starts (:class:`MissingDataError`, :class:`BagError`)."""
    for bag in bags:
        with open_reader(bag):
            pass


_warned_cut: set[tuple[str, int]] = set()


def _folder_readers(reader: Any) -> list[Any]:
    """The rosbag2 folder readers inside an ``AnyReader`` (rosbags: ``Reader.storage``)."""
    return [
        r.storage
        for r in getattr(reader, "readers", ())
        if hasattr(getattr(r, "storage", None), "STORAGE_PLUGINS")
    ]


def _warn_if_cut(bag: Path, reader: Any) -> None:
    """Warn (once per file and process) that a cut-short mcap file is read only up to the cut."""
    for folder in _folder_readers(reader):
        for storage in getattr(folder, "storages", ()):
            cut = getattr(storage, "cut", None)
            if cut is None or (str(storage.path), cut[1]) in _warned_cut:
                continue
            _warned_cut.add((str(storage.path), cut[1]))
            read, size = cut
            stats = storage.statistics
            logger.warning(
                "%s: %s is cut short (an interrupted recording or copy: no mcap footer); reading the %d "
                "messages (%.1f s of recording) in its first %d of %d bytes; what follows is lost",
                bag,
                Path(storage.path).name,
                stats.message_count,
                (stats.end_time - stats.start_time) / 1e9,
                read,
                size,
            )


def _cut_mcap_reader() -> type:
    """rosbags' mcap storage reader that also reads a file cut short (no footer) up to the cut.

    An mcap file is a sequence of records (opcode, length, body); a recording stopped without
    closing the file lacks the summary and footer, and its last record may be incomplete. This reader
    takes the complete records before the cut as an unindexed mcap file (which the format allows and
    rosbags reads by scanning).
    """
    from rosbags.rosbag2 import ReaderError
    from rosbags.rosbag2.storage_mcap import McapReader

    class CutMcapReader(McapReader):
        cut: tuple[int, int] | None = None  # (bytes read, file size) when the file was cut short

        def _open(self) -> None:
            try:
                super()._open()
                return
            except ReaderError as err:
                if "end magic" not in f"{err}" and "footer" not in f"{err}".lower():
                    raise
            bio = self.bio
            assert bio is not None
            size = bio.seek(0, 2)
            end = position = self.data_start
            while position + 9 <= size:
                bio.seek(position)
                opcode = bio.read(1)[0]
                length = int.from_bytes(bio.read(8), "little")
                if opcode == 0x0F or position + 9 + length > size:  # data end, or the cut record
                    break
                position = end = position + 9 + length
            self.schemas.clear()
            self.channels.clear()
            self.connections.clear()
            self.chunks.clear()
            self.data_end = end
            self.meta_scan()
            statistics = self.statistics
            assert statistics is not None
            if not statistics.message_count:
                raise ReaderError("File end magic is invalid, and no complete message lies before the cut.")
            counts = statistics.channel_message_counts
            self.connections = [x._replace(msgcount=counts.get(x.id, 0)) for x in self.connections]
            self.metadata = self.metadata._replace(
                duration=statistics.end_time - statistics.start_time + 1,
                start_time=statistics.start_time,
                end_time=statistics.end_time + 1,
                message_count=statistics.message_count,
            )
            self.cut = (end, size)

    return CutMcapReader


def _read_errors() -> tuple[type[BaseException], ...]:
    """What rosbags and its storage back ends raise on a file that is not a bag or is damaged."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Rosbag1Error
    from rosbags.rosbag2 import ReaderError as Rosbag2Error
    from rosbags.serde import SerdeError

    return (
        AnyReaderError,
        Rosbag1Error,
        Rosbag2Error,
        SerdeError,
        sqlite3.DatabaseError,
        struct.error,
        EOFError,
    )


def _bag_error(bag: Path, err: BaseException) -> BagError:
    """The named error for ``err``, raised by rosbags on ``bag``, with what to do about it."""
    text = " ".join(f"{err}".split())
    storage = (
        sorted(str(p.name) for p in bag.glob("*") if p.suffix in (".db3", ".mcap")) if bag.is_dir() else []
    )
    where = f"{bag} ({', '.join(storage)})" if storage else f"{bag}"
    name = storage[0].rsplit(".", 1)[0] if len(storage) == 1 else "FILE"
    if "malformed" in text or "not a database" in text or isinstance(err, sqlite3.DatabaseError):
        return BagError(
            f"{where}: the sqlite3 storage file is damaged or cut short ({text}); a recording stopped "
            "without closing it, or a copy that did not finish. Recover its readable rows with "
            f"'sqlite3 {name}.db3 .recover | sqlite3 FIXED.db3', put FIXED.db3 in place of {name}.db3, and "
            "run again; or use another copy of the bag"
        )
    if "magic" in text.lower() or "mcap" in text.lower() or isinstance(err, struct.error | EOFError):
        return BagError(
            f"{where}: the mcap storage file is damaged or cut short ({text}); a recording stopped "
            "without closing it, or a copy that did not finish. Recover the readable part with the mcap "
            f"CLI ('mcap recover {name}.mcap -o FIXED.mcap'), put FIXED.mcap in place of {name}.mcap, and "
            "run again; or use another copy of the bag"
        )
    if "missing" in text:
        return BagError(f"{where}: {text}; the bag folder is incomplete: copy the whole folder")
    return BagError(
        f"{where}: cannot read the bag ({text}); pass a rosbag2 bag folder (sqlite3 or mcap) as written "
        "by 'vbl convert' or 'ros2 bag record'"
    )


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


@dataclass(frozen=True)
class CameraFrame:
    """A decoded camera image: header stamp (ns) and ``(H, W, 3)`` uint8 RGB."""

    stamp_ns: int
    image_rgb: np.ndarray


@dataclass(frozen=True)
class GpsTrack:
    """GPS fixes: stamps ``(N,)`` int64 ns, latitude and longitude ``(N,)`` degrees."""

    stamps_ns: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray

    def interpolate(self, stamps_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latitude, longitude at the stamps (nan outside the track)."""
        s = np.asarray(stamps_ns, dtype=np.float64)
        t = self.stamps_ns.astype(np.float64)
        if len(t) == 0:
            return np.full(s.shape, np.nan), np.full(s.shape, np.nan)
        lat = np.interp(s, t, self.latitude, left=np.nan, right=np.nan)
        lon = np.interp(s, t, self.longitude, left=np.nan, right=np.nan)
        return lat, lon


def _pick_camera_topic(reader: Any, topic: str | None, bag: Path) -> Any:
    images = {c.topic: c for c in reader.connections if c.msgtype in _IMAGE_TYPES}
    if topic is not None:
        if topic not in images:
            raise MissingDataError(f"{bag}: no image topic {topic!r}; image topics are {sorted(images)}")
        return images[topic]
    for candidate in CAMERA_TOPICS:
        if candidate in images:
            return images[candidate]
    if len(images) == 1:
        return next(iter(images.values()))
    raise MissingDataError(
        f"{bag}: cannot choose a camera topic among {sorted(images) or 'none'}; name one (camera_topic)"
    )


def read_camera_frames(
    bag: Path | str, topic: str | None = None, *, keep: Callable[[int], bool] | None = None
) -> Iterator[CameraFrame]:
    """Stream the decoded frames of one camera topic, in bag order.

    Args:
        bag: the bag.
        topic: the image topic (``CompressedImage`` or ``Image``); ``None`` = the contract's centre
            camera (compressed first), or the only image topic.
        keep: called with each frame's stamp before decoding; frames it refuses are not decoded.

    Frames that cannot be decoded are skipped with a warning.
    """
    bag = Path(bag)
    with open_reader(bag) as reader:
        connection = _pick_camera_topic(reader, topic, bag)
        compressed = connection.msgtype == "sensor_msgs/msg/CompressedImage"
        for conn, _, raw in reader.messages(connections=[connection]):
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = _stamp_ns(msg)
            if keep is not None and not keep(stamp):
                continue
            try:
                if compressed:
                    image = decode_compressed_image(msg.format, msg.data)
                else:
                    image = decode_raw_image(msg.encoding, msg.width, msg.height, msg.step, msg.data)
            except BadFrameError as err:
                logger.warning("%s: skipping frame at %d ns on %s: %s", bag, stamp, conn.topic, err)
                continue
            yield CameraFrame(stamp, image)


def read_odometry(bag: Path | str, topic: str = ODOMETRY_TOPIC) -> Trajectory:
    """The INS trajectory (``nav_msgs/Odometry`` poses in the bag's map frame), sorted by stamp.

    The trajectory carries the bag's UTM origin (``None`` when the bag records none), so
    ``read_odometry(bag).in_frame(map_origin)`` gives it in another frame.
    """
    bag = Path(bag)
    stamps, positions, orientations = [], [], []
    with open_reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise MissingDataError(
                f"{bag}: no {topic} topic (nav_msgs/Odometry); vbl needs the drive's poses: convert with "
                "'vbl convert robotcar' or record the robot's odometry on that topic"
            )
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            p, q = msg.pose.pose.position, msg.pose.pose.orientation
            stamps.append(_stamp_ns(msg))
            positions.append((p.x, p.y, p.z))
            orientations.append((q.x, q.y, q.z, q.w))
    if not stamps:
        raise MissingDataError(f"{bag}: {topic} has no messages")
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    s = np.asarray(stamps, dtype=np.int64)[order]
    unique = np.concatenate([[True], np.diff(s) > 0])
    return Trajectory(
        s[unique],
        np.asarray(positions, dtype=np.float64)[order][unique],
        np.asarray(orientations, dtype=np.float64)[order][unique],
        origin=read_utm_origin(bag),
        source=f"{bag} {topic}",
    )


def read_utm_origin(bag: Path | str) -> UtmOrigin | None:
    """The map frame's UTM origin: the ``/map/utm_origin`` message, else the bag's custom data
    ``vbl.utm_origin``, else ``None``."""
    bag = Path(bag)
    with open_reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == UTM_ORIGIN_TOPIC]
        # (an empty connection list would make rosbags read every topic)
        for conn, _, raw in reader.messages(connections=conns) if conns else ():
            msg = reader.deserialize(raw, conn.msgtype)
            frame = msg.header.frame_id
            zone = frame[len("utm_") :] if frame.startswith("utm_") else frame
            return UtmOrigin(float(msg.point.x), float(msg.point.y), float(msg.point.z), zone)
    return utm_origin_from_metadata(bag)


def utm_origin_from_metadata(bag: Path | str) -> UtmOrigin | None:
    """The UTM origin stored in a bag's ``metadata.yaml`` custom data ``vbl.utm_origin``, or None."""
    path = Path(bag) / "metadata.yaml"
    if not path.is_file():
        raise MissingDataError(
            f"{path}: not found; pass a rosbag2 bag folder (e.g. written by 'vbl convert')"
        )
    try:
        info = yaml.safe_load(path.read_text()) or {}
        text = ((info.get("rosbag2_bagfile_information") or {}).get("custom_data") or {}).get(
            "vbl.utm_origin"
        )
        return None if text is None else UtmOrigin.from_text(text)
    except (yaml.YAMLError, AttributeError, ValueError) as err:
        raise RobotCarFormatError(
            path, f"unreadable vbl.utm_origin ({err}); convert the traversal again"
        ) from err


def read_gps(bag: Path | str, topic: str = GPS_TOPIC) -> GpsTrack | None:
    """GPS fixes of ``/gps/fix`` (``None`` when the bag has none)."""
    bag = Path(bag)
    stamps, lat, lon = [], [], []
    with open_reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in reader.messages(connections=conns) if conns else ():
            msg = reader.deserialize(raw, conn.msgtype)
            stamps.append(_stamp_ns(msg))
            lat.append(msg.latitude)
            lon.append(msg.longitude)
    if not stamps:
        return None
    order = np.argsort(stamps, kind="stable")
    return GpsTrack(
        np.asarray(stamps, np.int64)[order], np.asarray(lat, float)[order], np.asarray(lon, float)[order]
    )
