"""Training checkpoints: everything ``--resume`` needs to continue exactly, written atomically.

A checkpoint is a ``torch.save`` dict: the training network's weights (decoders included), the
optimiser, the scheduler and the gradient scaler, the RNG states (Python, NumPy, torch, CUDA, and
the mining generator), the position in the run (epoch, step within it, global step), the mining
descriptor cache with the queries seen since its refresh, the side-modality scale, the best
validation recall and the validation history. It is written to a temporary file, synced and
renamed, so a crash never leaves a truncated ``last.pt`` or ``best.pt``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vbl_ros.errors import ModelError
from vbl_ros.files import write_file_atomic

__all__ = ["FORMAT", "load_checkpoint", "restore_rng", "rng_state", "save_checkpoint"]

FORMAT = "vbl-train-checkpoint"
VERSION = 1


def rng_state() -> dict[str, Any]:
    """The global RNG states (Python, NumPy's legacy global, torch CPU and CUDA)."""
    version, internal, gauss = random.getstate()
    legacy = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [legacy[0], torch.from_numpy(legacy[1].astype(np.int64)), *legacy[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format header) to ``path`` atomically; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **payload}, f))
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on the CPU).

    Raises:
        ModelError: missing, unreadable, or not a vbl training checkpoint of this version.
    """
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types on a corrupt file
        raise ModelError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("version") != VERSION:
        raise ModelError(f"{path}: not a vbl training checkpoint (version {VERSION})")
    return payload
