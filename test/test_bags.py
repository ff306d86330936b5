"""Bag reading helpers on a real bag written in tmp_path (docs/CONTRACTS.md layout)."""

from __future__ import annotations

import numpy as np
import pytest
from bag_fixtures import ORIGIN, T0_NS, write_line_bag

from vbl_ros.bags import read_camera_frames, read_gps, read_odometry, read_utm_origin
from vbl_ros.errors import MissingDataError, PoseRangeError


@pytest.fixture(scope="module")
def line_bag(tmp_path_factory):
    return write_line_bag(tmp_path_factory.mktemp("bags") / "line", length_m=30.0)


def test_odometry_interpolates_and_measures_the_track(line_bag) -> None:
    trajectory = read_odometry(line_bag.path)
    assert len(trajectory) == 121  # 6 s at 20 Hz
    positions, orientations = trajectory.interpolate(np.array([T0_NS + 1_025_000_000]))
    assert positions[0] == pytest.approx([5.125, 0, 0])
    assert orientations[0] == pytest.approx([0, 0, 0, 1])
    assert trajectory.arc_length(T0_NS + 2 * 10**9)[0] == pytest.approx(10.0)
    with pytest.raises(PoseRangeError):
        trajectory.interpolate(T0_NS - 1)


def test_camera_frames_stream_decoded_rgb(line_bag) -> None:
    frames = list(read_camera_frames(line_bag.path))
    assert len(frames) == 25 and frames[0].stamp_ns == T0_NS
    assert frames[4].image_rgb.shape == (48, 64, 3) and frames[4].image_rgb.dtype == np.uint8
    # Bayer round trip: close to the texture crop at x = 5 m
    assert np.abs(frames[4].image_rgb.astype(int) - line_bag.frame_at(5.0)).mean() < 12
    kept = list(read_camera_frames(line_bag.path, keep=lambda s: (s - T0_NS) % (2 * 10**9) == 0))
    assert [f.stamp_ns - T0_NS for f in kept] == [0, 2 * 10**9, 4 * 10**9, 6 * 10**9]
    with pytest.raises(MissingDataError, match="image topics"):
        next(read_camera_frames(line_bag.path, "/nope"))


def test_utm_origin_and_gps(line_bag, tmp_path) -> None:
    origin = read_utm_origin(line_bag.path)
    assert (origin.easting, origin.northing, origin.up, origin.zone) == ORIGIN
    gps = read_gps(line_bag.path)
    assert gps is not None and 51.7 < gps.latitude[0] < 51.8
    bare = write_line_bag(tmp_path / "bare", length_m=5.0, with_origin=False, with_gps=False)
    assert read_utm_origin(bare.path) is None and read_gps(bare.path) is None
    with pytest.raises(MissingDataError):
        read_odometry(tmp_path / "missing")
