"""Tiny simulated drives for the training tests: three conditions of one 100 m route, converted with depth maps.

:func:`training_bags` simulates and converts once per test session (about 10 s on 2 cores) into the
session's temporary folder and reuses them from every training test module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vbl_ros.training import TrainConfig

SMALL_MODEL = {"input_height": 64, "input_width": 64}


@dataclass(frozen=True)
class TrainingBags:
    map: Path  # overcast
    a: Path  # sun
    b: Path  # dusk


def training_bags(factory: pytest.TempPathFactory) -> TrainingBags:
    """The session's simulated bags (made on first use)."""
    root = factory.getbasetemp() / "training_bags"
    if not (root / "done").is_file():
        root.mkdir(exist_ok=True)
        _make(root)
        (root / "done").write_text("ok")
    return TrainingBags(root / "map", root / "a", root / "b")


def _make(root: Path) -> None:
    from vbl_ros.robotcar.convert import ConvertConfig, convert_robotcar
    from vbl_ros.sim.simulate import SimConfig, simulate

    config = dataclasses.replace(
        SimConfig.preset("tiny"), conditions=("overcast", "sun", "dusk"), route_length_m=100.0, lms_hz=10.0
    )
    traversals = simulate(root / "sim", config)
    sdk = root / "sim" / "sdk"
    for name, traversal in zip(("map", "a", "b"), traversals, strict=True):
        convert_robotcar(
            traversal,
            root / name,
            extrinsics_dir=sdk / "extrinsics",
            models_dir=sdk / "models",
            config=ConvertConfig(lidar_points=False),
        )


def small_config(bags: TrainingBags, cache_dir: Path, **overrides: Any) -> TrainConfig:
    """A run that takes seconds: 64 x 64 inputs, frames every 6 m, batches of 4 queries, 1 negative each."""
    values: dict[str, Any] = {
        "train_bags": (str(bags.a), str(bags.b)),
        "val_bag": str(bags.b),
        "map_bag": str(bags.map),
        "frame_spacing_m": 6.0,
        "cache_dir": str(cache_dir),
        "num_negatives": 1,
        "negative_pool": 8,
        "cache_refresh_queries": 8,
        "batch_size": 4,
        "epochs": 1,
        "lr": 1e-4,
        "decoder_lr": 1e-3,
        "log_every_steps": 1,
        "checkpoint_every_steps": 0,
        "device": "cpu",
        **overrides,
    }
    from vbl_ros.config import from_dict

    values["model"] = {**SMALL_MODEL, **values.get("model", {})}
    return from_dict(TrainConfig, values)
