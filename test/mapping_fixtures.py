"""Random unit descriptors and keyframes for the mapping tests."""

from __future__ import annotations

import numpy as np

from vbl_ros.geometry.utm import UtmOrigin
from vbl_ros.mapping import IndexConfig, Keyframe, KeyframeMap

DIM = 32
ORIGIN = UtmOrigin(600000.0, 5700000.0, 10.0, "30U")


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def keyframes(n: int, start: int = 0) -> list[Keyframe]:
    return [
        Keyframe(
            stamp_ns=(start + i) * 10**9,
            position=(float(start + i), 2.0, 0.5),
            orientation=(0.0, 0.0, 0.0, 1.0),
            latitude=51.7,
            longitude=-1.2,
        )
        for i in range(n)
    ]


def random_map(
    n: int = 50, index: IndexConfig | str = "flat", seed: int = 0
) -> tuple[KeyframeMap, np.ndarray]:
    desc = unit(np.random.default_rng(seed).normal(size=(n, DIM)))
    kmap = KeyframeMap.create(DIM, "fp-a", ORIGIN, index)
    kmap.add(desc, keyframes(n))
    return kmap, desc


def route_descriptors(n: int, rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    """Keyframes along routes of 500: consecutive descriptors correlated, as along a drive."""
    x = rng.normal(size=(n, dim))
    for i in range(1, n):
        if i % 500:
            x[i] = 0.8 * x[i - 1] + 0.6 * x[i]
    return unit(x)
