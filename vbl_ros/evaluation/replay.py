"""Offline replay: every camera frame of a bag through the core localizer, without ROS, as fast as it goes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from vbl_ros.bags import read_camera_frames
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.localizer import LocalizationResult, Localizer

__all__ = ["localize_bag"]

logger = logging.getLogger(__name__)


def localize_bag(
    localizer: Localizer,
    bag: Path | str,
    *,
    camera_topic: str | None = None,
    keep: Callable[[int], bool] | None = None,
    odometry: Trajectory | None = None,
) -> list[LocalizationResult]:
    """The localizer's result for each camera frame of ``bag`` (in bag order).

    Args:
        localizer: the core localizer (model + map), as the node would run it.
        bag: the query bag.
        camera_topic: its image topic (``None``: the contract's centre camera).
        keep: called with each frame's stamp before decoding; frames it refuses are skipped.
        odometry: the drive's odometry (e.g. :func:`vbl_ros.bags.read_odometry` of ``bag``): each
            frame is given the pose interpolated at its stamp (the node takes the odometry message
            nearest the frame's stamp instead: the two differ by at most half an odometry period of
            motion), for session keyframes by distance and the filtered prior's motion step. Frames
            outside it get none. ``None``: no odometry, as the node with ``use_odometry: false``.

    Frames that cannot be decoded are skipped with a warning (as :func:`read_camera_frames` does).
    """
    results = []
    frames = read_camera_frames(bag, camera_topic, keep=keep)
    for frame in tqdm(frames, desc=f"replay {Path(bag).name}", unit="frame", disable=None):
        position = orientation = None
        if odometry is not None and bool(odometry.contains(frame.stamp_ns)):
            position, orientation = odometry.interpolate(frame.stamp_ns)
            position, orientation = position.reshape(3), orientation.reshape(4)
        results.append(localizer.process(frame.image_rgb, frame.stamp_ns, position, orientation))
    logger.info("replayed %d frames of %s offline", len(results), bag)
    return results
