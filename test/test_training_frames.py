"""Frame caches from real (simulated, converted) bags: sampling, decoding once, side maps, one frame for all drives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

from bag_fixtures import write_line_bag
from training_fixtures import training_bags

from vbl_ros.bags import read_camera_frames, read_odometry
from vbl_ros.errors import MissingDataError
from vbl_ros.model.transforms import IMAGENET_MEAN, IMAGENET_STD, InputTransform
from vbl_ros.training.frames import cache_drive, frame_set, resize_side_map

TRANSFORM = InputTransform(48, 64, IMAGENET_MEAN, IMAGENET_STD)


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory):
    return training_bags(tmp_path_factory)


def test_frames_every_spacing_decoded_once_into_memory_maps(bags, tmp_path: Path) -> None:
    frames = cache_drive(bags.a, TRANSFORM, tmp_path, spacing_m=4.0, modalities=("depth",))
    trajectory = read_odometry(bags.a)
    travelled = trajectory.arc_length(frames.stamps_ns)
    # the first frame past each multiple of 4 m (as build-map's keyframes): one per 4 m cell, none
    # skipped (the drive's frames are 3 m apart)
    assert len(frames) >= 20 and np.all(np.diff(np.floor(travelled / 4.0)) == 1)
    assert isinstance(frames.images, np.memmap) and frames.images.shape[1:] == (48, 64, 3)
    assert frames.side["depth"].dtype == np.float16

    # a frame of the cache is the transform's resize of the decoded bag frame at that stamp
    stamp = int(frames.stamps_ns[5])
    decoded = next(f for f in read_camera_frames(bags.a, keep=lambda s: s == stamp))
    assert np.array_equal(frames.images[5], TRANSFORM.resize(decoded.image_rgb))
    position, _ = trajectory.interpolate(stamp)
    assert np.allclose(frames.positions[5], position[0])

    # reused, not rebuilt; another transform (or modality set) is another cache
    folder = next(tmp_path.iterdir())
    before = (folder / "images.npy").stat().st_mtime_ns
    again = cache_drive(bags.a, TRANSFORM, tmp_path, spacing_m=4.0, modalities=("depth",))
    assert (folder / "images.npy").stat().st_mtime_ns == before and np.array_equal(
        again.stamps_ns, frames.stamps_ns
    )
    cache_drive(bags.a, InputTransform(32, 32, IMAGENET_MEAN, IMAGENET_STD), tmp_path, spacing_m=4.0)
    assert len(list(tmp_path.iterdir())) == 2


def test_depth_maps_hold_lidar_returns_at_the_input_size(bags, tmp_path: Path) -> None:
    frames = cache_drive(bags.b, TRANSFORM, tmp_path, spacing_m=4.0, modalities=("depth", "reflectance"))
    depth = frames.side["depth"].astype(np.float32)
    assert depth.shape == (len(frames), 48, 64)
    returns = depth[depth > 0]
    assert (
        0.2 < (depth > 0).mean() < 0.9 and 1.0 < np.median(returns) < 80.0
    )  # metres, most pixels below the horizon
    assert (frames.side["reflectance"] > 0).any()


def test_side_maps_are_resized_by_averaging_valid_returns_only() -> None:
    values = np.array([[2.0, 0.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]], np.float32)
    assert resize_side_map(values, 1, 2).tolist() == [[3.0, 0.0]]  # not (2 + 4) / 4


def test_a_bag_without_the_modality_says_how_to_convert_one(tmp_path: Path) -> None:
    line = write_line_bag(tmp_path / "line")
    with pytest.raises(MissingDataError, match="vbl convert robotcar"):
        cache_drive(line.path, TRANSFORM, tmp_path / "cache", spacing_m=2.0, modalities=("depth",))
    assert not (tmp_path / "cache").exists()
    assert len(cache_drive(line.path, TRANSFORM, tmp_path / "cache", spacing_m=2.0)) >= 25  # RGB-only is fine


def test_every_drive_in_the_reference_drive_frame(bags, tmp_path: Path) -> None:
    ref = cache_drive(bags.map, TRANSFORM, tmp_path, spacing_m=4.0)
    other = cache_drive(bags.a, TRANSFORM, tmp_path, spacing_m=4.0)
    assert ref.origin != other.origin  # each bag's frame starts where its drive started
    both = frame_set([other, ref], ref)
    offset = np.array(other.origin.to_utm(np.zeros((1, 3)))[0] - ref.origin.to_utm(np.zeros((1, 3)))[0])
    assert np.allclose(both.positions[: len(other)], other.positions + offset)
    assert np.array_equal(both.positions[len(other) :], ref.positions)
    # the same place on both drives: the nearest map frame of every drive-a frame is a few metres away
    gaps = np.linalg.norm(both.positions[: len(other), None, :2] - ref.positions[None, :, :2], axis=2).min(1)
    assert np.median(gaps) < 3.0


def test_a_bag_cut_short_later_at_the_same_path_gets_its_own_cache(bags, tmp_path: Path) -> None:
    """A recording cut short keeps its metadata.yaml; the cache must not serve the whole drive's frames."""
    import os
    import shutil

    bag = shutil.copytree(bags.a, tmp_path / "drive")
    whole = cache_drive(bag, TRANSFORM, tmp_path / "cache", spacing_m=4.0)
    storage = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    os.truncate(storage, int(storage.stat().st_size * 0.6))
    cut = cache_drive(bag, TRANSFORM, tmp_path / "cache", spacing_m=4.0)
    assert 0 < len(cut) < len(whole)
    assert np.array_equal(cut.stamps_ns, whole.stamps_ns[: len(cut)])
    assert len(list((tmp_path / "cache").iterdir())) == 2
