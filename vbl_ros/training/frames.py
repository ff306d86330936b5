"""Frame caches: a drive's frames every few metres, decoded and resized once into memory-mapped files.

Decoding PNGs every epoch would dominate on a CPU and starve a GPU, so each bag's sampled frames
(every ``spacing_m`` metres along its INS track) are decoded once, resized by the model's
:class:`~vbl_ros.model.transforms.InputTransform`, and written row by row into ``.npy`` files that
training then memory-maps: memory does not grow with the number of frames. Side-modality maps
(LIDAR depth / reflectance, ``32FC1``, 0 = no return) are resized with the same transform's size,
averaging valid returns only, and stored as float16.

A cache is a folder ``<cache_dir>/<bag name>-<key>/`` keyed by the bag (path and
``metadata.yaml``), the camera topic, the spacing, the transform and the modalities; it is built
aside and renamed into place when complete, so an interrupted build is never reused.
:class:`FrameSet` puts the frames of several drives in one geographic frame (the reference drive's,
through the drives' UTM origins).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vbl_ros.errors import MissingDataError
from vbl_ros.geometry.rotations import quaternion_to_rotation
from vbl_ros.geometry.utm import UtmOrigin
from vbl_ros.model.transforms import InputTransform

__all__ = ["MODALITY_TOPICS", "DriveFrames", "FrameSet", "cache_drive", "check_modalities", "frame_set"]

logger = logging.getLogger(__name__)

#: the topics ``vbl convert robotcar`` writes the side modalities on (docs/CONTRACTS.md)
MODALITY_TOPICS = {"depth": "/stereo/centre/depth", "reflectance": "/stereo/centre/reflectance"}
CACHE_VERSION = 1


@dataclass(frozen=True)
class DriveFrames:
    """One drive's sampled frames, memory-mapped.

    Attributes:
        bag: the bag.
        stamps_ns: ``(N,)`` image stamps.
        positions: ``(N, 3)`` in the bag's own ``map`` frame (see ``origin``).
        headings: ``(N,)`` yaw of the vehicle's forward axis (radians, ENU: 0 = east).
        origin: the UTM origin of the bag's frame (``None``: not geo-referenced).
        images: ``(N, h, w, 3)`` uint8 RGB at the transform's size (memory-mapped, read-only).
        side: modality name -> ``(N, h, w)`` float16 maps (0 = no return), memory-mapped.
    """

    bag: Path
    stamps_ns: np.ndarray
    positions: np.ndarray
    headings: np.ndarray
    origin: UtmOrigin | None
    images: np.ndarray
    side: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.stamps_ns)


def check_modalities(bag: Path | str, modalities: Sequence[str]) -> None:
    """Refuse a bag that lacks a requested side-modality topic, saying how to make one that has it."""
    from vbl_ros.bags import open_reader

    if not modalities:
        return
    with open_reader(bag) as reader:
        topics = {c.topic for c in reader.connections}
    for modality in modalities:
        if MODALITY_TOPICS[modality] not in topics:
            raise MissingDataError(
                f"{bag}: no {MODALITY_TOPICS[modality]} topic, so no {modality} maps to learn from; "
                "convert the traversal with its LIDAR maps ('vbl convert robotcar TRAVERSAL OUT_BAG "
                "--extrinsics SDK/extrinsics --models SDK/models', without --no-side-modality), or "
                "train RGB-only (variant: rgb)"
            )


def _cache_key(
    bag: Path,
    camera_topic: str | None,
    spacing_m: float,
    transform: InputTransform,
    modalities: Sequence[str],
) -> str:
    meta = bag / "metadata.yaml"
    content = {
        "version": CACHE_VERSION,
        "bag": str(bag.resolve()),
        "metadata": hashlib.sha256(meta.read_bytes()).hexdigest() if meta.is_file() else None,
        # the storage files too: a recording cut short keeps its metadata.yaml (written at the end)
        "storage": sorted(
            (p.name, st.st_size, st.st_mtime_ns)
            for p in (bag.iterdir() if bag.is_dir() else [bag])
            if p.suffix in (".mcap", ".db3")
            for st in (p.stat(),)
        ),
        "camera_topic": camera_topic,
        "spacing_m": spacing_m,
        "transform": [transform.height, transform.width, list(transform.mean), list(transform.std)],
        "modalities": sorted(modalities),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _headings(orientations: np.ndarray) -> np.ndarray:
    forward = quaternion_to_rotation(np.asarray(orientations, dtype=np.float64))[..., :, 0]
    return np.arctan2(forward[..., 1], forward[..., 0])


def _select_stamps(stamps: np.ndarray, arc: np.ndarray, spacing_m: float) -> np.ndarray:
    """The first stamp at or past each multiple of ``spacing_m`` travelled (stamps sorted)."""
    keep = []
    next_distance = 0.0
    for stamp, travelled in zip(stamps, arc, strict=True):
        if travelled + 1e-9 >= next_distance:
            keep.append(stamp)
            next_distance = (np.floor(travelled / spacing_m) + 1) * spacing_m
    return np.asarray(keep, dtype=np.int64)


def resize_side_map(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """A ``(H, W)`` map with 0 = no return, resized by averaging the valid returns of each output pixel
    (``INTER_AREA`` of values and of the valid mask; 0 where no return falls)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if values.shape == (height, width):
        return values
    valid = (values > 0).astype(np.float32)
    shrinking = values.shape[0] > height or values.shape[1] > width
    mode = cv2.INTER_AREA if shrinking else cv2.INTER_NEAREST
    total = cv2.resize(values * valid, (width, height), interpolation=mode)
    weight = cv2.resize(valid, (width, height), interpolation=mode)
    return np.where(weight > 1e-6, total / np.maximum(weight, 1e-6), 0.0).astype(np.float32)


def _read_side_maps(bag: Path, topic: str, rows: dict[int, int], out: np.ndarray) -> int:
    """Write the ``32FC1`` maps whose stamps are in ``rows`` into ``out[row]``; return how many."""
    from vbl_ros.bags import open_reader

    found = 0
    height, width = out.shape[1:]
    with open_reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            row = rows.get(stamp)
            if row is None:
                continue
            if msg.encoding != "32FC1":
                raise MissingDataError(f"{bag}: {topic} has encoding {msg.encoding!r}, expected 32FC1")
            data = np.frombuffer(memoryview(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
            dtype = ">f4" if msg.is_bigendian else "<f4"
            values = data[:, : msg.width * 4].copy().view(dtype).reshape(msg.height, msg.width)
            out[row] = resize_side_map(values, height, width).astype(np.float16)
            found += 1
    return found


def _build(
    bag: Path,
    folder: Path,
    transform: InputTransform,
    *,
    spacing_m: float,
    camera_topic: str | None,
    modalities: Sequence[str],
) -> None:
    """Decode the sampled frames of ``bag`` into ``folder`` (which must not exist)."""
    from numpy.lib.format import open_memmap
    from tqdm import tqdm

    from vbl_ros.bags import read_camera_frames, read_odometry

    trajectory = read_odometry(bag)
    stamps: list[int] = []

    def note_stamp(stamp: int) -> bool:
        stamps.append(stamp)
        return False  # first pass: the stamps only, nothing decoded

    for _ in read_camera_frames(bag, camera_topic, keep=note_stamp):
        pass
    all_stamps = np.unique(np.asarray(stamps, dtype=np.int64))
    on_track = all_stamps[trajectory.contains(all_stamps)]
    if len(on_track) == 0:
        raise MissingDataError(
            f"{bag}: no camera frame lies within the INS track ({len(all_stamps)} frames); "
            "check that the bag's camera and /ins/odometry cover the same time"
        )
    wanted = _select_stamps(on_track, trajectory.arc_length(on_track), spacing_m)
    n = len(wanted)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        images = open_memmap(tmp / "images.npy", "w+", np.uint8, (n, transform.height, transform.width, 3))
        wanted_set = set(wanted.tolist())
        written: list[int] = []
        bar = tqdm(total=n, unit="frame", desc=f"frame cache {bag.name}", disable=None)
        try:
            for frame in read_camera_frames(bag, camera_topic, keep=lambda s: s in wanted_set):
                if frame.stamp_ns in written[-1:]:
                    continue
                images[len(written)] = transform.resize(frame.image_rgb)
                written.append(frame.stamp_ns)
                bar.update(1)
        finally:
            bar.close()
        images.flush()
        del images
        kept = np.asarray(written, dtype=np.int64)
        if len(kept) < n:
            logger.warning("%s: %d of %d sampled frames could not be decoded", bag, n - len(kept), n)
        rows = {int(s): i for i, s in enumerate(kept)}
        for modality in modalities:
            side = open_memmap(
                tmp / f"{modality}.npy", "w+", np.float16, (n, transform.height, transform.width)
            )
            side[:] = 0
            found = _read_side_maps(bag, MODALITY_TOPICS[modality], rows, side)
            side.flush()
            del side
            if found < len(kept):
                logger.warning(
                    "%s: %d of %d frames have no %s map (left empty)",
                    bag,
                    len(kept) - found,
                    len(kept),
                    modality,
                )
        positions, orientations = trajectory.interpolate(kept)
        origin = trajectory.origin
        np.savez(tmp / "frames.npz", stamps_ns=kept, positions=positions, headings=_headings(orientations))
        manifest: dict[str, Any] = {
            "version": CACHE_VERSION,
            "bag": str(bag.resolve()),
            "count": len(kept),
            "modalities": list(modalities),
            "transform": [transform.height, transform.width],
            "utm_origin": None
            if origin is None
            else [origin.easting, origin.northing, origin.up, origin.zone],
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.replace(tmp, folder)
        except OSError:  # built meanwhile by another process: keep that one
            if not (folder / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(folder: Path) -> DriveFrames:
    manifest = json.loads((folder / "manifest.json").read_text())
    n = int(manifest["count"])
    meta = np.load(folder / "frames.npz")
    origin = manifest["utm_origin"]
    return DriveFrames(
        bag=Path(manifest["bag"]),
        stamps_ns=meta["stamps_ns"],
        positions=meta["positions"],
        headings=meta["headings"],
        origin=None if origin is None else UtmOrigin(*origin),
        images=np.load(folder / "images.npy", mmap_mode="r")[:n],
        side={m: np.load(folder / f"{m}.npy", mmap_mode="r")[:n] for m in manifest["modalities"]},
    )


def cache_drive(
    bag: Path | str,
    transform: InputTransform,
    cache_dir: Path | str,
    *,
    spacing_m: float,
    camera_topic: str | None = None,
    modalities: Sequence[str] = (),
) -> DriveFrames:
    """The cached frames of ``bag``, built first (with a progress bar) if no cache matches.

    Raises:
        MissingDataError: the bag, its camera, its odometry or a requested modality topic is missing,
            or no frame lies on its INS track.
    """
    from vbl_ros.bags import check_bags

    bag = Path(bag)
    check_bags([bag])  # a named error for a path that is not a readable bag
    check_modalities(bag, modalities)
    key = _cache_key(bag, camera_topic, spacing_m, transform, modalities)
    folder = Path(cache_dir) / f"{bag.resolve().name}-{key}"
    if not (folder / "manifest.json").is_file():
        logger.info("building the frame cache of %s in %s", bag, folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        _build(bag, folder, transform, spacing_m=spacing_m, camera_topic=camera_topic, modalities=modalities)
    frames = _load(folder)
    logger.info("%s: %d frames every %g m (cache %s)", bag, len(frames), spacing_m, folder)
    return frames


@dataclass(frozen=True)
class FrameSet:
    """The frames of several drives in one geographic frame, indexed ``0 .. N-1`` drive after drive.

    Attributes:
        drives: the drives.
        drive: ``(N,)`` drive index of each frame; ``row``: its row in that drive.
        positions: ``(N, 3)`` in the common frame (``origin``'s).
        headings: ``(N,)`` radians.
    """

    drives: tuple[DriveFrames, ...]
    drive: np.ndarray
    row: np.ndarray
    positions: np.ndarray
    headings: np.ndarray
    origin: UtmOrigin | None

    def __len__(self) -> int:
        return len(self.drive)

    def images(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 images of the frames ``indices``."""
        return np.stack([self.drives[self.drive[i]].images[self.row[i]] for i in indices])

    def side(self, modality: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(n, h, w)`` float32 maps of ``modality`` (0 = no return)."""
        return np.stack([self.drives[self.drive[i]].side[modality][self.row[i]] for i in indices]).astype(
            np.float32
        )


def frame_set(drives: Sequence[DriveFrames], reference: DriveFrames) -> FrameSet:
    """The drives' frames in the ``reference`` drive's frame (a translation per drive, same UTM zone).

    The reference drive keeps its positions; every other drive is brought in through the UTM origins.

    Raises:
        FrameMismatchError: a drive without UTM origin among others, or another UTM zone.
    """
    from vbl_ros.geometry.utm import change_frame

    origin = reference.origin
    positions = []
    for d in drives:
        same = d.bag == reference.bag
        positions.append(
            d.positions if same else change_frame(d.positions, d.origin, origin, what=str(d.bag))
        )
    return FrameSet(
        drives=tuple(drives),
        drive=np.concatenate([np.full(len(d), i, np.int64) for i, d in enumerate(drives)]),
        row=np.concatenate([np.arange(len(d), dtype=np.int64) for d in drives]),
        positions=np.concatenate(positions).reshape(-1, 3),
        headings=np.concatenate([d.headings for d in drives]),
        origin=origin,
    )
