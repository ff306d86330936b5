"""Conversions between ROS 2 messages and the core's plain types; no node, no DDS.

Inbound: camera messages -> RGB arrays (through :mod:`vbl_ros.images`; shrunk first when the
consumer needs less than the camera's size, see :func:`image_to_rgb`), odometry -> position and
orientation tuples, stamps -> integer nanoseconds. Outbound: a localization result -> a
``PoseWithCovarianceStamped`` prior, a ``PointCloud2`` table of loop-closure candidates, an RViz
``MarkerArray`` and a ``DiagnosticArray``.

The loop-candidate table (see ``docs/ros_interface.md``) has one row per candidate, in rank order:

==================  =========  ====================================================
field               type       meaning
==================  =========  ====================================================
x, y, z             FLOAT64    keyframe position (NaN when the keyframe has no pose)
qx, qy, qz, qw      FLOAT64    keyframe orientation (NaN when the keyframe has no pose)
score               FLOAT32    descriptor similarity, higher is more similar
rank                UINT32     1 = best candidate
stamp_sec           INT32      keyframe capture stamp (its identity), seconds part
stamp_nanosec       UINT32     keyframe capture stamp, nanoseconds part
==================  =========  ====================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from vbl_ros.errors import BadFrameError
from vbl_ros.images import decode_compressed_image, decode_raw_image

__all__ = [
    "LOOP_CANDIDATE_DTYPE",
    "LoopCandidateRow",
    "compressed_to_rgb",
    "diagnostics_to_msg",
    "image_to_rgb",
    "loop_candidates_from_msg",
    "loop_candidates_to_msg",
    "map_matches_to_msg",
    "markers_to_msg",
    "ns_to_stamp",
    "odometry_to_pose",
    "pose_prior_to_msg",
    "shrink_factor",
    "stamp_to_ns",
]

_NS_PER_S = 1_000_000_000

#: Row layout of the ``loop_candidates`` PointCloud2 (little endian, 72 bytes a row).
LOOP_CANDIDATE_DTYPE = np.dtype(
    [
        ("x", "<f8"),
        ("y", "<f8"),
        ("z", "<f8"),
        ("qx", "<f8"),
        ("qy", "<f8"),
        ("qz", "<f8"),
        ("qw", "<f8"),
        ("score", "<f4"),
        ("rank", "<u4"),
        ("stamp_sec", "<i4"),
        ("stamp_nanosec", "<u4"),
    ]
)
_POINT_FIELD_TYPES = {
    np.dtype("<f8"): PointField.FLOAT64,
    np.dtype("<f4"): PointField.FLOAT32,
    np.dtype("<u4"): PointField.UINT32,
    np.dtype("<i4"): PointField.INT32,
}


@dataclass(frozen=True)
class LoopCandidateRow:
    """One row of the ``loop_candidates`` table, as read back by :func:`loop_candidates_from_msg`."""

    rank: int
    score: float
    keyframe_stamp_ns: int
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float] | None


# --- stamps -------------------------------------------------------------------------------------


def stamp_to_ns(stamp: Time) -> int:
    """A ``builtin_interfaces/Time`` as integer nanoseconds."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(stamp_ns: int) -> Time:
    """Integer nanoseconds as a ``builtin_interfaces/Time`` (exact, no float rounding)."""
    sec, nanosec = divmod(int(stamp_ns), _NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


# --- inbound ------------------------------------------------------------------------------------


# 8-bit encodings shrunk before their colour conversion: encoding -> channels
_SHRINK_FIRST = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3}
# JPEG start-of-frame markers (baseline, extended, progressive, lossless): height and width follow
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


def shrink_factor(width: int, height: int, min_size: tuple[int, int] | None) -> int:
    """The largest whole factor by which a ``width`` x ``height`` image can shrink and stay at least
    ``min_size`` (width, height); 1 when ``min_size`` is ``None`` or the image is not larger."""
    if min_size is None:
        return 1
    return max(1, min(width // max(1, min_size[0]), height // max(1, min_size[1])))


def _shrink(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` reduced ``factor`` times by area averaging (cv2 ``INTER_AREA``), channels kept."""
    if factor <= 1:
        return image
    small = cv2.resize(
        image, (image.shape[1] // factor, image.shape[0] // factor), interpolation=cv2.INTER_AREA
    )
    return small.reshape(*small.shape[:2], *image.shape[2:])


def _bin_bayer(raw: np.ndarray, pattern: str) -> np.ndarray:
    """Half-size RGB of an 8-bit Bayer mosaic: each 2x2 cell gives one pixel, its red, the mean of its
    two greens and its blue (``pattern`` as in ROS, first row first: ``gbrg``, ``rggb``, ...).

    Equivalent to demosaicing and then averaging 2x2 blocks (mean difference about one grey level),
    at a quarter of the pixels touched.
    """
    h, w = raw.shape[0] // 2 * 2, raw.shape[1] // 2 * 2
    planes: dict[str, list[np.ndarray]] = {"r": [], "g": [], "b": []}
    for index, colour in enumerate(pattern):
        row, col = divmod(index, 2)
        planes[colour].append(raw[row:h:2, col:w:2])
    green = ((planes["g"][0].astype(np.uint16) + planes["g"][1] + 1) >> 1).astype(np.uint8)
    return np.dstack((planes["r"][0], green, planes["b"][0]))


def _bayer8_pattern(encoding: str) -> str | None:
    """``gbrg`` for ``bayer_gbrg8`` (any 8-bit Bayer encoding), else ``None``."""
    lowered = encoding.lower()
    if lowered.startswith("bayer_") and lowered.endswith("8") and len(lowered) == len("bayer_gbrg8"):
        pattern = lowered[len("bayer_") : len("bayer_") + 4]
        if sorted(pattern) == ["b", "g", "g", "r"]:
            return pattern
    return None


def _shrunk_mosaic(raw: np.ndarray, pattern: str, factor: int) -> np.ndarray:
    """RGB of an 8-bit Bayer mosaic ``factor`` (>= 2) times smaller: binned 2x2, then area-averaged."""
    rgb = _bin_bayer(raw, pattern)
    return _shrink(rgb, factor // 2)


def image_to_rgb(msg: Image, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` (any encoding :mod:`vbl_ros.images` knows) to RGB uint8.

    ``min_size`` (width, height): the smallest size the consumer needs (the network's input size);
    a larger frame is shrunk by the largest whole factor that keeps it at least that size, *before*
    any colour conversion (cv2 ``INTER_AREA``; 8-bit Bayer mosaics are binned 2x2 into RGB instead
    of demosaiced at full size). A 1920x1080 ``rgb8`` frame then costs ~2 ms instead of ~7 ms (and
    ``bgr8`` ~15 ms) before the network's own resize. Other encodings decode at full size.

    Raises :class:`~vbl_ros.errors.BadFrameError` for an unknown encoding or a wrong data size.
    """
    if msg.is_bigendian and msg.encoding.endswith("16"):
        raise BadFrameError(f"big-endian {msg.encoding} images are not supported")
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    factor = shrink_factor(width, height, min_size)
    consistent = width > 0 and height > 0 and len(msg.data) == step * height
    channels = _SHRINK_FIRST.get(msg.encoding)
    pattern = _bayer8_pattern(msg.encoding)
    if factor > 1 and consistent and channels is not None and step >= width * channels:
        rows = np.frombuffer(memoryview(msg.data), np.uint8).reshape(height, step)
        small = _shrink(rows[:, : width * channels].reshape(height, width, channels), factor)
        h, w = small.shape[:2]
        return decode_raw_image(msg.encoding, w, h, w * channels, small)
    if factor > 1 and consistent and pattern is not None and step >= width:
        rows = np.frombuffer(memoryview(msg.data), np.uint8).reshape(height, step)
        return _shrunk_mosaic(rows[:, :width], pattern, factor)
    return decode_raw_image(msg.encoding, width, height, step, msg.data)


def _jpeg_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment; ``None`` when ``data`` is not a JPEG."""
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    i = 2
    while i + 9 < data.size:
        if data[i] != 0xFF:
            return None
        marker = int(data[i + 1])
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = (int(data[i + 2]) << 8) | int(data[i + 3])
        if marker in _JPEG_SOF:
            height = (int(data[i + 5]) << 8) | int(data[i + 6])
            width = (int(data[i + 7]) << 8) | int(data[i + 8])
            return width, height
        i += 2 + length
    return None


def compressed_to_rgb(msg: CompressedImage, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (PNG/JPEG, Bayer PNG) to RGB uint8.

    ``min_size`` as in :func:`image_to_rgb`: a JPEG at least twice that size is decoded at 1/2, 1/4
    or 1/8 of its size directly (libjpeg's DCT scaling: ~1 ms instead of ~15 ms for 1920x1080); a
    PNG is decoded whole, then shrunk before its colour conversion (8-bit Bayer PNGs binned 2x2).
    Without ``min_size`` the frame is decoded at full size.

    Raises :class:`~vbl_ros.errors.BadFrameError` for corrupt data.
    """
    buffer = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    encoding = msg.format.split(";")[0].strip().lower()
    pattern = _bayer8_pattern(encoding)
    jpeg_size = _jpeg_size(buffer) if pattern is None else None
    factor = shrink_factor(*jpeg_size, min_size) if jpeg_size is not None else 1
    reduced = next((flag for reduce, flag in _JPEG_REDUCED if reduce <= factor), None)
    decoded = None
    if reduced is not None:
        decoded = cv2.imdecode(buffer, reduced)  # BGR at 1/2, 1/4 or 1/8 of the size
    elif buffer.size:
        decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is not None and decoded.dtype == np.uint8:
        h, w = decoded.shape[:2]
        factor = shrink_factor(w, h, min_size)
        if pattern is not None and decoded.ndim == 2:
            if factor > 1:
                return _shrunk_mosaic(decoded, pattern, factor)
            return decode_raw_image(f"bayer_{pattern}8", w, h, w, decoded)
        channels = 1 if decoded.ndim == 2 else decoded.shape[2]
        colour = {1: "mono8", 3: "bgr8", 4: "bgra8"}.get(channels)
        if pattern is None and colour is not None:
            small = _shrink(decoded, factor)  # OpenCV decodes colour as BGR: shrink, then convert
            return decode_raw_image(colour, small.shape[1], small.shape[0], small.shape[1] * channels, small)
    # everything else (16-bit, a format that contradicts the data, corrupt data) goes the core's way,
    # which names what is wrong
    return decode_compressed_image(msg.format, msg.data)


def odometry_to_pose(
    msg: Odometry,
) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """Position ``(x, y, z)`` and orientation ``(x, y, z, w)`` of an odometry message."""
    p = msg.pose.pose.position
    q = msg.pose.pose.orientation
    return (p.x, p.y, p.z), (q.x, q.y, q.z, q.w)


# --- outbound -----------------------------------------------------------------------------------


def pose_prior_to_msg(result: Any, frame_id: str) -> PoseWithCovarianceStamped | None:
    """The result's pose prior as a ``PoseWithCovarianceStamped`` stamped with the image stamp.

    ``None`` when the localizer gave no prior (rejected frame or no map).
    """
    prior = result.pose_prior
    if prior is None:
        return None
    msg = PoseWithCovarianceStamped()
    msg.header = Header(stamp=ns_to_stamp(result.stamp_ns), frame_id=frame_id)
    pose = msg.pose.pose
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in prior.position)
    q = pose.orientation
    q.x, q.y, q.z, q.w = (float(v) for v in prior.orientation)
    covariance = [float(v) for v in prior.covariance]
    if len(covariance) != 36:
        raise ValueError(f"a pose covariance has 36 entries, got {len(covariance)}")
    msg.pose.covariance = covariance
    return msg


def _keyframe_table(stamp_ns: int, rows_in: Sequence[LoopCandidateRow], frame_id: str) -> PointCloud2:
    """Keyframes (rank, score, capture stamp, pose or None) as a ``PointCloud2`` table."""
    rows = np.zeros(len(rows_in), dtype=LOOP_CANDIDATE_DTYPE)
    for i, row in enumerate(rows_in):
        sec, nanosec = divmod(int(row.keyframe_stamp_ns), _NS_PER_S)
        position = row.position if row.position is not None else (math.nan,) * 3
        orientation = row.orientation if row.orientation is not None else (math.nan,) * 4
        rows[i] = (*position, *orientation, float(row.score), int(row.rank), sec, nanosec)
    msg = PointCloud2()
    msg.header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)
    msg.height = 1
    msg.width = len(rows_in)
    msg.fields = [
        PointField(name=name, offset=offset, datatype=_POINT_FIELD_TYPES[dtype], count=1)
        for name, (dtype, offset) in LOOP_CANDIDATE_DTYPE.fields.items()
    ]
    msg.is_bigendian = False
    msg.point_step = LOOP_CANDIDATE_DTYPE.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = all(r.position is not None for r in rows_in)
    msg.data = rows.tobytes()
    return msg


def loop_candidates_to_msg(result: Any, frame_id: str) -> PointCloud2:
    """The result's loop-closure candidates as a ``PointCloud2`` table (see the module docstring).

    ``header.stamp`` is the query image's stamp; an empty cloud (width 0) means no candidate.
    """
    rows = [
        LoopCandidateRow(c.rank, c.score, c.keyframe_stamp_ns, c.position, c.orientation)
        for c in result.loop_candidates
    ]
    return _keyframe_table(result.stamp_ns, rows, frame_id)


def map_matches_to_msg(result: Any, frame_id: str) -> PointCloud2:
    """The result's top-k map keyframes, in the same table layout as the loop candidates.

    Published for every processed frame, confident or not, so evaluators and SLAM back-ends can
    see what was retrieved (an empty table when the node has no map).
    """
    rows = [
        LoopCandidateRow(m.rank, m.score, m.keyframe.stamp_ns, m.keyframe.position, m.keyframe.orientation)
        for m in result.matches
    ]
    return _keyframe_table(result.stamp_ns, rows, frame_id)


def loop_candidates_from_msg(msg: PointCloud2) -> list[LoopCandidateRow]:
    """Read a ``loop_candidates`` or ``map_matches`` table back (the inverse of the two above)."""
    names = [f.name for f in msg.fields]
    expected = list(LOOP_CANDIDATE_DTYPE.names or ())
    if names != expected or msg.point_step != LOOP_CANDIDATE_DTYPE.itemsize or msg.is_bigendian:
        raise ValueError(f"not a vbl loop-candidate table: fields {names}, point_step {msg.point_step}")
    rows = np.frombuffer(bytes(msg.data), dtype=LOOP_CANDIDATE_DTYPE, count=msg.width * msg.height)
    out = []
    for row in rows:
        position = (float(row["x"]), float(row["y"]), float(row["z"]))
        orientation = (float(row["qx"]), float(row["qy"]), float(row["qz"]), float(row["qw"]))
        has_pose = not any(math.isnan(v) for v in position)
        out.append(
            LoopCandidateRow(
                rank=int(row["rank"]),
                score=float(row["score"]),
                keyframe_stamp_ns=int(row["stamp_sec"]) * _NS_PER_S + int(row["stamp_nanosec"]),
                position=position if has_pose else None,
                orientation=orientation if has_pose else None,
            )
        )
    return out


def _score_colour(score: float, low: float = 0.5, high: float = 1.0) -> ColorRGBA:
    """Red (score <= ``low``) through yellow to green (score >= ``high``); cosine scores of
    retrieved keyframes rarely fall below 0.5."""
    t = min(max((float(score) - low) / (high - low), 0.0), 1.0)
    return ColorRGBA(r=min(1.0, 2.0 * (1.0 - t)), g=min(1.0, 2.0 * t), b=0.0, a=0.9)


def markers_to_msg(
    result: Any, frame_id: str, *, sphere_diameter: float = 2.0, lifetime_s: float = 0.0
) -> MarkerArray:
    """RViz markers: a sphere per matched map keyframe (coloured by score), lines to the prior.

    The first marker is a ``DELETEALL``, so each message replaces the previous one.
    """
    header = Header(stamp=ns_to_stamp(result.stamp_ns), frame_id=frame_id)
    lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1.0) * _NS_PER_S))
    markers = [Marker(header=header, ns="vbl_matches", id=0, action=Marker.DELETEALL)]
    prior = result.pose_prior
    lines = []
    for match in result.matches:
        kf = match.keyframe
        if kf.position is None:
            continue
        sphere = Marker(header=header, ns="vbl_matches", id=len(markers), type=Marker.SPHERE)
        sphere.action = Marker.ADD
        sphere.pose.position = Point(
            x=float(kf.position[0]), y=float(kf.position[1]), z=float(kf.position[2])
        )
        sphere.pose.orientation.w = 1.0
        sphere.scale.x = sphere.scale.y = sphere.scale.z = sphere_diameter
        sphere.color = _score_colour(match.score)
        sphere.lifetime = lifetime
        markers.append(sphere)
        text = Marker(header=header, ns="vbl_match_labels", id=len(markers), type=Marker.TEXT_VIEW_FACING)
        text.action = Marker.ADD
        text.pose.position = Point(
            x=sphere.pose.position.x, y=sphere.pose.position.y, z=sphere.pose.position.z + sphere_diameter
        )
        text.pose.orientation.w = 1.0
        text.scale.z = sphere_diameter * 0.6
        text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=0.9)
        text.text = f"#{match.rank} {match.score:.2f}"
        text.lifetime = lifetime
        markers.append(text)
        lines.append(sphere.pose.position)
    if prior is not None and lines:
        link = Marker(header=header, ns="vbl_prior_links", id=len(markers), type=Marker.LINE_LIST)
        link.action = Marker.ADD
        link.pose.orientation.w = 1.0
        link.scale.x = sphere_diameter * 0.1
        link.color = ColorRGBA(r=0.2, g=0.6, b=1.0, a=0.8)
        link.lifetime = lifetime
        target = Point(x=float(prior.position[0]), y=float(prior.position[1]), z=float(prior.position[2]))
        for point in lines:
            link.points.extend([target, point])
        markers.append(link)
    return MarkerArray(markers=markers)


def diagnostics_to_msg(
    *,
    name: str,
    hardware_id: str,
    level: bytes,
    message: str,
    values: Mapping[str, Any] | Sequence[tuple[str, Any]],
    stamp: Time,
) -> DiagnosticArray:
    """One ``DiagnosticStatus`` in a ``DiagnosticArray``; values are formatted as strings.

    ``level`` is one of ``DiagnosticStatus.OK``, ``WARN``, ``ERROR``, ``STALE`` (a one-byte ``bytes``).
    """
    items = values.items() if isinstance(values, Mapping) else values
    status = DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_format_value(v)) for k, v in items],
    )
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)
