"""Reading vbl bags (docs/CONTRACTS.md) without ROS: camera frames, INS trajectory, UTM origin, GPS.

The odometry comes back as a :class:`~vbl_ros.geometry.trajectory.Trajectory` that knows the UTM
origin of its frame, so drives recorded from different starting points can be compared in one frame.

Everything streams through ``rosbags``' :class:`~rosbags.highlevel.AnyReader`; nothing loads the
whole bag. Stamps are header stamps in nanoseconds.

Damaged bags: an mcap file cut short (a recording stopped without closing it) is read up to the
cut, and an sqlite3 (``.db3``) file cut short or damaged is read up to the damage (its intact rows,
read-only, in stamp order), each with a warning saying how much; a
``.db3`` folder without ``metadata.yaml`` is read from its storage file. What cannot be read (an
sqlite3 file cut inside its first pages, an mcap cut inside its only chunk, a path that is not a
bag) raises :class:`~vbl_ros.errors.BagError` naming the file and what to do.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

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
            file cut short after complete chunks, and an sqlite3 file cut short or damaged after its
            first pages, are read up to the damage, with a warning.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader

    bag = Path(bag)
    if not bag.exists():
        raise MissingDataError(f"{bag}: bag not found")
    source = bag
    if bag.is_dir() and not (bag / "metadata.yaml").is_file():
        db3 = sorted(bag.glob("*.db3"))
        if len(db3) != 1:
            raise BagError(
                f"{bag}: not a rosbag2 bag folder (no metadata.yaml); pass the folder that 'vbl convert' "
                "or 'ros2 bag record' wrote"
            )
        source = db3[0]  # a recording stopped before writing metadata.yaml: its sqlite3 file is the bag
        if (str(source), -1) not in _warned_cut:
            _warned_cut.add((str(source), -1))
            logger.warning("%s: no metadata.yaml (an interrupted recording?); reading %s", bag, source.name)
    try:
        reader = AnyReader([source], default_typestore=_typestore())
        for folder in _folder_readers(reader):  # this reader only: nothing global is patched
            plugins = getattr(folder, "STORAGE_PLUGINS", {})
            folder.STORAGE_PLUGINS = {
                **plugins,
                **({"mcap": _cut_mcap_reader()} if "mcap" in plugins else {}),
                **({"sqlite3": _cut_sqlite3_reader()} if "sqlite3" in plugins else {}),
            }
        for one in getattr(reader, "readers", ()):  # a storage file opened directly (no metadata.yaml)
            if type(getattr(one, "storage", None)) is Sqlite3Reader:
                one.storage = _cut_sqlite3_reader()(one.storage.path)
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


def _storages(reader: Any) -> list[tuple[Any, int | None]]:
    """The storage file readers inside an ``AnyReader``, each with the message count its folder's
    ``metadata.yaml`` lists (``None`` for a storage file opened directly)."""
    found: list[tuple[Any, int | None]] = []
    for one in getattr(reader, "readers", ()):
        storage = getattr(one, "storage", None)
        if hasattr(storage, "STORAGE_PLUGINS"):  # a rosbag2 folder: its storage files
            listed = getattr(getattr(storage, "metadata", None), "message_count", None)
            found += [(x, listed if len(storage.storages) == 1 else None) for x in storage.storages]
        elif storage is not None:
            found.append((storage, None))
    return found


def _warn_if_cut(bag: Path, reader: Any) -> None:
    """Warn (once per file and process) that a cut-short or damaged storage file is read only up to
    the cut."""
    for storage, listed in _storages(reader):
        cut = getattr(storage, "cut", None)
        if cut is None or (str(storage.path), cut[1]) in _warned_cut:
            continue
        _warned_cut.add((str(storage.path), cut[1]))
        read, size = cut
        meta = storage.metadata
        seconds = (meta.end_time - meta.start_time) / 1e9
        if Path(storage.path).suffix == ".db3":
            of = f" of the {listed} that metadata.yaml lists" if listed and listed > read else ""
            logger.warning(
                "%s: %s is cut short or damaged (an interrupted recording or copy: %s); reading its %d "
                "intact messages%s (%.1f s of recording, %d bytes); what follows the damage is lost",
                bag,
                Path(storage.path).name,
                storage.damage,
                read,
                of,
                seconds,
                size,
            )
            continue
        logger.warning(
            "%s: %s is cut short (an interrupted recording or copy: no mcap footer); reading the %d "
            "messages (%.1f s of recording) in its first %d of %d bytes; what follows is lost",
            bag,
            Path(storage.path).name,
            meta.message_count,
            seconds,
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


def _cut_sqlite3_reader() -> type:
    """rosbags' sqlite3 storage reader that also reads a file cut short or damaged up to the damage.

    rosbags refuses an sqlite3 file whose pages end before the page count its header gives (a
    recording or copy that did not finish) or whose index is damaged. This reader then reads the
    intact rows itself, read-only: the ``topics`` table, then ``messages`` in rowid order (the
    table's own b-tree, no index needed), stopping at the first damaged page. The file is seen
    through :func:`_whole_pages_vfs`, which hides a partly written last page: sqlite would read its
    missing bytes as zeros and return rows whose data are silently wrong. Memory stays bounded by
    the message count, not the data: the scan keeps each row's rowid, topic and stamp (24 bytes),
    and :meth:`messages` fetches each row's data by rowid, in stamp order.
    """
    import apsw
    from rosbags.interfaces import (
        Connection,
        ConnectionExtRosbag2,
        MessageDefinition,
        MessageDefinitionFormat,
    )
    from rosbags.rosbag2 import ReaderError
    from rosbags.rosbag2.metadata import ReaderMetadata, parse_qos
    from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader

    class CutSqlite3Reader(Sqlite3Reader):
        cut: tuple[int, int] | None = None  # (messages read, file size) when read up to the damage
        damage = ""  # what sqlite3 said about the damage
        _db: Any = None  # an apsw.Connection while reading past rosbags' reader
        _rows: np.ndarray | None = None  # (3, N) int64: rowids, topic ids, stamps of the intact rows

        def open(self) -> None:
            size, page = Path(self.path).stat().st_size, _sqlite_page_size(Path(self.path))
            if size % page:  # sqlite would read the missing part of the last page as zeros
                self.damage = f"it ends inside a page, at byte {size}"
            else:
                try:
                    super().open()
                    return
                except ReaderError as err:
                    if "malformed" not in f"{err}" and "not a database" not in f"{err}":
                        raise
                    self.damage = f"{err.__cause__ or err}"
            # read-only and immutable: nothing is written beside the user's bag (no journal, no lock);
            # writable_schema makes sqlite trust the file's length over its header's page count
            self._db = apsw.Connection(
                f"file:{pathname2url(str(self.path))}?mode=ro&immutable=1",
                flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI,
                vfs=_whole_pages_vfs(),
            )
            try:
                self._db.execute("PRAGMA writable_schema = ON")
                self._read_intact()
            except BaseException:
                self._db.close()
                self._db = None
                raise

        def _read_intact(self) -> None:
            assert self._db is not None
            db = self._db
            try:
                columns = {row[1] for row in db.execute("PRAGMA table_info(topics)")}
                qos = "offered_qos_profiles" if "offered_qos_profiles" in columns else "''"
                digest = "type_description_hash" if "type_description_hash" in columns else "''"
                topics = db.execute(
                    f"SELECT id, name, type, serialization_format, {qos}, {digest} FROM topics ORDER BY id"
                ).fetchall()
            except apsw.Error as err:
                raise ReaderError(f"Cannot open database {self.path}: {err} (its topics table)") from err
            msgdefs = self._msgdefs()
            rowids, topic_ids, stamps = array("q"), array("q"), array("q")
            known = {int(t[0]) for t in topics}
            try:
                for rowid, topic_id, stamp in db.execute(
                    "SELECT rowid, topic_id, timestamp FROM messages ORDER BY rowid"
                ):
                    if (
                        topic_id not in known
                        or not isinstance(stamp, int)
                        or (rowids and rowid <= rowids[-1])
                    ):
                        break  # a zeroed or foreign page read as rows: the damage starts here
                    rowids.append(rowid)
                    topic_ids.append(topic_id)
                    stamps.append(stamp)
            except apsw.Error:
                pass  # the first damaged page: what follows is lost
            while rowids and not self._readable(rowids[-1]):  # the last rows' data may lie past the cut
                rowids.pop()
                topic_ids.pop()
                stamps.pop()
            if not rowids:
                raise ReaderError(
                    f"Cannot open database {self.path}: database disk image is malformed, and no intact "
                    "message lies before the damage"
                )
            ids, counts = np.unique(np.frombuffer(topic_ids, dtype=np.int64), return_counts=True)
            count = dict(zip(ids.tolist(), counts.tolist(), strict=True))
            self.connections = [
                Connection(
                    int(cid),
                    name,
                    msgtype,
                    msgdefs.get(msgtype, MessageDefinition(MessageDefinitionFormat.NONE, "")),
                    digest or "",
                    count.get(int(cid), 0),
                    ConnectionExtRosbag2(serialization_format, parse_qos(qos or [])),
                    self,
                )
                for cid, name, msgtype, serialization_format, qos, digest in topics
            ]
            start, end = min(stamps), max(stamps) + 1
            self.metadata = ReaderMetadata(end - start, start, end, len(rowids), None, None, None, None)
            self._rows = np.stack([np.frombuffer(x, dtype=np.int64) for x in (rowids, topic_ids, stamps)])
            self.cut = (len(rowids), Path(self.path).stat().st_size)

        def _msgdefs(self) -> dict[str, Any]:
            """Message definitions by type (schema 4 and later), as rosbags' reader reads them."""
            assert self._db is not None
            formats = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL}
            try:
                rows = self._db.execute(
                    "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
                ).fetchall()
            except apsw.Error:  # absent (older bags) or damaged: the typestore's are used
                return {}
            return {name: MessageDefinition(formats[enc], text) for name, enc, text in rows if enc in formats}

        def _readable(self, rowid: int) -> bool:
            assert self._db is not None
            try:
                self._db.execute("SELECT data FROM messages WHERE rowid = ?", (rowid,)).fetchone()
            except apsw.Error:
                return False
            return True

        def close(self) -> None:
            if self._db is None:
                super().close()
                return
            self._db.close()
            self._db, self._rows = None, None
            self.connections = []

        def messages(
            self, connections: Any, start: int | None = None, stop: int | None = None
        ) -> Iterator[tuple[Any, int, bytes]]:
            if self._db is None:
                yield from super().messages(connections, start, stop)
                return
            assert self._rows is not None
            rowids, topic_ids, stamps = self._rows
            keep = np.isin(topic_ids, [c.id for c in connections])
            if start is not None:
                keep &= stamps >= start
            if stop is not None:
                keep &= stamps < stop
            picked = np.flatnonzero(keep)
            picked = picked[np.lexsort((rowids[picked], stamps[picked]))]  # as the stamp index orders
            connmap = {c.id: c for c in self.connections}
            for i in picked:  # one row at a time: memory stays at the (3, N) table
                rowid, topic_id, stamp = int(rowids[i]), int(topic_ids[i]), int(stamps[i])
                try:
                    (data,) = self._db.execute(
                        "SELECT data FROM messages WHERE rowid = ?", (rowid,)
                    ).fetchone()
                except apsw.Error as err:
                    logger.warning("%s: stopping at the damage (%s) at %d ns", self.path, err, stamp)
                    return
                yield connmap[topic_id], stamp, data

    return CutSqlite3Reader


_WHOLE_PAGES_VFS = "vbl_whole_pages"


def _whole_pages_vfs() -> str:
    """The name of an sqlite VFS (registered once) that shows a file without its last page when that
    page is only partly written, so that a file cut mid-page is read as cut at the page before."""
    import apsw

    if _WHOLE_PAGES_VFS in apsw.vfs_names():
        return _WHOLE_PAGES_VFS

    class WholePagesFile(apsw.VFSFile):
        def __init__(self, base: str, name: Any, flags: list[int]) -> None:
            super().__init__(base, name, flags)
            self.page_size = _sqlite_page_size(Path(name.filename() if hasattr(name, "filename") else name))

        def xFileSize(self) -> int:
            size = super().xFileSize()
            return size - size % self.page_size

    class WholePagesVFS(apsw.VFS):
        def __init__(self) -> None:
            super().__init__(_WHOLE_PAGES_VFS, "")

        def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
            return WholePagesFile("", name, flags)

    _vfs_keep.append(WholePagesVFS())  # apsw unregisters a VFS when its object is collected
    return _WHOLE_PAGES_VFS


_vfs_keep: list[Any] = []


def _sqlite_page_size(path: Path) -> int:
    """The page size an sqlite file's header gives (4096 when the header cannot be read)."""
    with open(path, "rb") as f:
        header = f.read(100)
    page = int.from_bytes(header[16:18], "big") if len(header) == 100 else 0
    return 65536 if page == 1 else page if page >= 512 else 4096


def _read_errors() -> tuple[type[BaseException], ...]:
    """What rosbags and its storage back ends raise on a file that is not a bag or is damaged."""
    import apsw
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
        apsw.Error,
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
    if "malformed" in text or "not a database" in text or _is_sqlite_error(err):
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


def _is_sqlite_error(err: BaseException) -> bool:
    import apsw

    return isinstance(err, sqlite3.DatabaseError | apsw.Error)


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
    if not (bag / "metadata.yaml").is_file():  # an sqlite3 recording stopped before writing it
        return None
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
