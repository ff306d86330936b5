"""Synthetic inputs shared by the tests and the benchmarks (no ROS, no rendering)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["synthetic_scene"]


def synthetic_scene(
    seed: int, height: int = 120, width: int = 160, *, shapes: int = 12, max_radius: int = 40
) -> np.ndarray:
    """A distinct RGB uint8 image of random rectangles, discs and lines (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), rng.integers(0, 255, 3), np.uint8)
    for _ in range(shapes):
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        kind = int(rng.integers(3))
        if kind == 0:
            cv2.rectangle(image, p1, p2, colour, -1)
        elif kind == 1:
            cv2.circle(image, p1, int(rng.integers(5, max_radius)), colour, -1)
        else:
            cv2.line(image, p1, p2, colour, int(rng.integers(1, 6)))
    return image
