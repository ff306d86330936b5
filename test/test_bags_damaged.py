"""Damaged bags: an mcap or sqlite3 file cut short is read up to the cut with a warning; what cannot
be read (an sqlite3 file cut inside its first pages, an mcap cut inside its only chunk, a folder or
file that is not a bag) is a :class:`~vbl_ros.errors.BagError` that names the file and says what to
do."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bag_fixtures import cut_copy, write_line_bag, write_mcap_copy

from vbl_ros.bags import check_bags, read_camera_frames, read_odometry, read_utm_origin
from vbl_ros.errors import BagError, MissingDataError
from vbl_ros.mapping import KeyframeMap


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_line_bag(tmp_path_factory.mktemp("bags") / "line", length_m=40.0).path


def _assert_a_prefix(track, frames, full_track, full_frames) -> None:
    """A prefix in time of the drive: the first poses and frames, exactly as in the whole bag."""
    assert 0 < len(track) < len(full_track) and 0 < len(frames) < len(full_frames)
    np.testing.assert_array_equal(track.stamps_ns, full_track.stamps_ns[: len(track)])
    np.testing.assert_array_equal(track.positions, full_track.positions[: len(track)])
    for frame, full in zip(frames, full_frames, strict=False):
        assert frame.stamp_ns == full.stamp_ns and np.array_equal(frame.image_rgb, full.image_rgb)


def test_an_mcap_cut_short_is_read_up_to_the_cut(line: Path, tmp_path: Path, caplog) -> None:
    whole = write_mcap_copy(line, tmp_path / "whole", chunk_size=16 * 1024)
    cut = cut_copy(whole, tmp_path / "cut")
    full_track, full_frames = read_odometry(whole), list(read_camera_frames(whole))
    with caplog.at_level(logging.WARNING, logger="vbl_ros.bags"):
        track, frames = read_odometry(cut), list(read_camera_frames(cut))
        assert read_utm_origin(cut) == read_utm_origin(whole)
    _assert_a_prefix(track, frames, full_track, full_frames)
    warnings = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per file, not per read
    assert "whole.mcap" in warnings[0] and "messages" in warnings[0] and "bytes" in warnings[0]


@pytest.mark.parametrize(
    ("fraction", "whole_pages"),
    [(0.5, False), (0.9, False), (0.5, True)],
    ids=["50 %", "90 %", "50 % at a page boundary"],
)
def test_an_sqlite3_bag_cut_short_is_read_up_to_the_cut(
    line: Path, tmp_path: Path, caplog, fraction: float, whole_pages: bool
) -> None:
    cut = cut_copy(line, tmp_path / "cut", fraction)
    if whole_pages:  # a disk that filled up: the file ends between two pages
        os.truncate(cut / "line.db3", (cut / "line.db3").stat().st_size // 4096 * 4096)
    size = (cut / "line.db3").stat().st_size
    full_track, full_frames = read_odometry(line), list(read_camera_frames(line))
    with caplog.at_level(logging.WARNING, logger="vbl_ros.bags"):
        track, frames = read_odometry(cut), list(read_camera_frames(cut))
        assert read_utm_origin(cut) == read_utm_origin(line)
    _assert_a_prefix(track, frames, full_track, full_frames)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "skipping frame" in m]  # no half-written row read as data
    warnings = [m for m in messages if "cut short" in m]
    assert len(warnings) == 1, warnings  # once per file, not per read
    assert "line.db3" in warnings[0] and "intact messages of the 236 that metadata.yaml lists" in warnings[0]
    assert "s of recording" in warnings[0] and f"{size} bytes" in warnings[0]
    assert (cut / "line.db3").stat().st_size == size and sorted(p.name for p in cut.iterdir()) == [
        "line.db3",
        "metadata.yaml",
    ]  # read-only: nothing written into the user's bag


def test_an_sqlite3_bag_without_metadata_is_read_from_its_file(line: Path, tmp_path: Path, caplog) -> None:
    """A recording stopped before ``metadata.yaml`` was written: the ``.db3`` file is the bag."""
    cut = cut_copy(line, tmp_path / "cut", 0.5)
    (cut / "metadata.yaml").unlink()
    full_track = read_odometry(line)
    with caplog.at_level(logging.WARNING, logger="vbl_ros.bags"):
        track = read_odometry(cut)
    assert 0 < len(track) < len(full_track) and track.origin == full_track.origin
    np.testing.assert_array_equal(track.stamps_ns, full_track.stamps_ns[: len(track)])
    assert any("no metadata.yaml" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda line, tmp: cut_copy(line, tmp / "db3_cut", 0.02),
            "sqlite3 storage file is damaged or cut short",
        ),
        (
            lambda line, tmp: cut_copy(line, tmp / "db3_cut", 0.1),
            "sqlite3 storage file is damaged or cut short",
        ),
        (
            lambda line, tmp: cut_copy(write_mcap_copy(line, tmp / "one_chunk"), tmp / "mcap_cut"),
            "mcap storage file is damaged or cut short",
        ),
        (lambda line, tmp: _folder(tmp / "notes"), "not a rosbag2 bag folder"),
        (lambda line, tmp: _file(tmp / "notes.txt"), "cannot read the bag"),
    ],
    ids=[
        "sqlite3 cut in its first pages",
        "sqlite3 cut before its first message",
        "mcap cut in its only chunk",
        "folder not a bag",
        "file not a bag",
    ],
)
def test_what_cannot_be_read_is_a_bag_error(line: Path, tmp_path: Path, make, expected: str) -> None:
    bag = make(line, tmp_path)
    with pytest.raises(BagError, match=expected) as err:
        read_odometry(bag)
    assert str(bag) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BagError):
        check_bags([line, bag])  # the early check of the commands refuses it the same way


def test_a_missing_bag_is_missing(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="bag not found"):
        check_bags([tmp_path / "nowhere"])


def _folder(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("not a bag\n")
    return path


def _file(path: Path) -> Path:
    path.write_text("not a bag\n")
    return path


def test_build_map_reads_a_cut_mcap_up_to_the_cut(line: Path, tmp_path: Path) -> None:
    """Every command gets it through bags.py: ``vbl build-map`` on an interrupted recording builds a
    map of the part before the cut and says so."""
    cut = cut_copy(write_mcap_copy(line, tmp_path / "whole", chunk_size=16 * 1024), tmp_path / "cut")
    vbl = Path(sys.executable).with_name("vbl")
    result = subprocess.run(
        [str(vbl), "build-map", str(cut), "--out", str(tmp_path / "map")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cut short" in result.stderr and "Traceback" not in result.stderr
    assert len(KeyframeMap.load(tmp_path / "map")) >= 2


@pytest.mark.parametrize(
    ("fraction", "code"), [(0.5, 0), (0.02, 2)], ids=["cut at half", "cut in first pages"]
)
def test_build_map_reads_a_cut_sqlite3_bag_up_to_the_cut(
    line: Path, tmp_path: Path, fraction: float, code: int
) -> None:
    """``vbl build-map`` on an interrupted sqlite3 recording: a map of the part before the cut and a
    warning that says so; a file cut inside its first pages is a ``BagError``, exit code 2."""
    cut = cut_copy(line, tmp_path / "cut", fraction)
    vbl = Path(sys.executable).with_name("vbl")
    result = subprocess.run(
        [str(vbl), "build-map", str(cut), "--out", str(tmp_path / "map")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    if code == 0:
        assert "cut short" in result.stderr and "intact messages" in result.stderr
        assert len(KeyframeMap.load(tmp_path / "map")) >= 2
    else:
        assert "BagError" in result.stderr and "sqlite3 storage file is damaged or cut short" in result.stderr
        assert not (tmp_path / "map").exists()
