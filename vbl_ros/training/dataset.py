"""Network inputs and side-modality targets of cached frames, and descriptors of many frames in batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vbl_ros.model.transforms import InputTransform
from vbl_ros.training.frames import FrameSet

__all__ = ["FrameDataset", "describe", "side_scale"]


@dataclass(frozen=True)
class FrameDataset:
    """A :class:`~vbl_ros.training.frames.FrameSet` as tensors.

    Attributes:
        frames: the cached frames.
        transform: the model's input transform (the frames are already at its size).
        modality: the side modality of the targets (``None``: RGB only).
        scale: the modality value mapped to 1 (targets are clipped to ``[0, 1]``).
    """

    frames: FrameSet
    transform: InputTransform
    modality: str | None = None
    scale: float = 1.0

    def __len__(self) -> int:
        return len(self.frames)

    def inputs(self, indices: Sequence[int] | np.ndarray, device: torch.device) -> torch.Tensor:
        """``(n, 3, h, w)`` float32 normalised inputs of the frames ``indices``."""
        return self.transform.to_tensor(self.frames.images(indices)).to(device)

    def targets(self, indices: Sequence[int] | np.ndarray, device: torch.device) -> torch.Tensor:
        """``(n, 1, h, w)`` float32 targets in ``[0, 1]`` (0 = no return) of the frames ``indices``."""
        if self.modality is None:
            raise ValueError("this dataset has no side modality")
        maps = self.frames.side(self.modality, indices) / self.scale
        return torch.from_numpy(np.clip(maps, 0.0, 1.0)[:, None]).to(device)


def side_scale(frames: FrameSet, modality: str, *, max_frames: int = 500) -> float:
    """The 99th percentile of the LIDAR returns of ``modality`` over (up to ``max_frames``, evenly
    spaced) frames: the value training maps to 1."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int))
    values = frames.side(modality, picks)
    returns = values[values > 0]
    if len(returns) == 0:
        return 1.0
    return float(np.percentile(returns, 99.0))


@torch.no_grad()
def describe(
    forward: Callable[[torch.Tensor], torch.Tensor],
    dataset: FrameDataset,
    indices: Sequence[int] | np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    autocast: bool = False,
) -> np.ndarray:
    """``(n, D)`` float32 descriptors of the frames ``indices`` (``forward``: inputs -> descriptors)."""
    out: list[np.ndarray] = []
    indices = np.asarray(indices, dtype=np.int64)
    for start in range(0, len(indices), batch_size):
        x = dataset.inputs(indices[start : start + batch_size], device)
        with torch.autocast(device.type, enabled=autocast and device.type == "cuda"):
            out.append(forward(x).float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out)
