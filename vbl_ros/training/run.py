"""The run folder of ``vbl train``: refusing to clobber, the resolved config, the log, and the scalars.

``RUN_DIR/`` holds ``config.yaml`` (the resolved :class:`~vbl_ros.training.config.TrainConfig`),
``train.log``, ``metrics.csv`` (every scalar: step, name, value), ``tensorboard/`` (the same scalars
and predicted-vs-LIDAR images, when the ``tensorboard`` package is installed), ``checkpoints/``
(``last.pt``, ``best.pt``) and, once training has finished, ``model.pt`` and ``result.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vbl_ros.config import from_dict, to_dict
from vbl_ros.errors import ConfigError, MissingDataError, OutputExistsError
from vbl_ros.files import write_text_atomic
from vbl_ros.training.config import TrainConfig

__all__ = ["RunLog", "check_run_dir", "load_run_config", "prepare_run_dir", "write_json_atomic"]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
LAST = "checkpoints/last.pt"


def check_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a run folder that cannot be used as asked (before anything is written).

    Raises:
        OutputExistsError: ``out`` exists and neither ``resume`` nor ``overwrite`` is given, or
            ``overwrite`` is asked of a non-empty folder that is not a training run.
        MissingDataError: ``resume`` without a run (no ``checkpoints/last.pt``) at ``out``.
        ConfigError: both ``resume`` and ``overwrite``.
    """
    if resume and overwrite:
        raise ConfigError("choose one of --resume (continue the run) and --overwrite (start it again)")
    if resume:
        if not (out / LAST).is_file():
            raise MissingDataError(
                f"{out}: no {LAST} to resume from; start the run without --resume (or check the folder)"
            )
        return
    if not out.exists():
        return
    if not overwrite:
        raise OutputExistsError(
            f"{out}: exists; continue it with --resume, start it again with --overwrite, or choose another --out"
        )
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG_FILE).is_file():
        raise OutputExistsError(
            f"{out}: not a vbl training run (no {CONFIG_FILE}) and not empty; --overwrite only replaces "
            "a run folder: choose another --out"
        )


def prepare_run_dir(out: Path, config: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    """Create (or clear, with ``overwrite``) the run folder and write the resolved config (rank 0)."""
    if not resume:
        if overwrite and out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        (out / "checkpoints").mkdir(parents=True)
        write_text_atomic(out / CONFIG_FILE, yaml.safe_dump(to_dict(config), sort_keys=False))


def load_run_config(out: Path) -> TrainConfig:
    """The resolved config of the run at ``out``."""
    path = out / CONFIG_FILE
    if not path.is_file():
        raise MissingDataError(f"{path}: not found; is {out} a 'vbl train' run folder?")
    return from_dict(TrainConfig, yaml.safe_load(path.read_text()) or {}, source=str(path))


def write_json_atomic(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=1, sort_keys=True) + "\n")


class RunLog:
    """The run's log file, ``metrics.csv`` and TensorBoard (rank 0 only; other ranks get a silent one).

    Args:
        out: the run folder.
        enabled: whether this process writes (rank 0).
    """

    def __init__(self, out: Path, *, enabled: bool) -> None:
        self.enabled = enabled
        self._handler: logging.Handler | None = None
        self._tb: Any = None
        self._csv: Any = None
        if not enabled:
            return
        self._handler = logging.FileHandler(out / "train.log")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._handler.setLevel(logging.INFO)
        root = logging.getLogger("vbl_ros")
        root.addHandler(self._handler)
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        new = not (out / "metrics.csv").exists()
        self._file = open(out / "metrics.csv", "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["step", "name", "value"])
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            logger.info("tensorboard is not installed: scalars go to metrics.csv only")

    def scalar(self, name: str, value: float, step: int) -> None:
        if not self.enabled:
            return
        self._csv.writerow([step, name, f"{value:.6g}"])
        if self._tb is not None:
            self._tb.add_scalar(name, value, step)

    def image(self, name: str, image: np.ndarray, step: int) -> None:
        """A ``(H, W)`` image in ``[0, 1]`` (TensorBoard only)."""
        if self.enabled and self._tb is not None:
            self._tb.add_image(name, np.clip(image, 0.0, 1.0)[None], step)

    def flush(self) -> None:
        if self.enabled:
            self._file.flush()
            if self._tb is not None:
                self._tb.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._handler is not None:
            logging.getLogger("vbl_ros").removeHandler(self._handler)
            self._handler.close()
