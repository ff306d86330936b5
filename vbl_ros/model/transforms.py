"""How an RGB uint8 image becomes the network's input (checks, resize, normalisation): the one place that knows.

Used by the extractor, by the model initialisation (NetVLAD / PCA fitting), and next by the training
datasets and the export. Two halves:

- NumPy (torch-free, in :mod:`vbl_ros.images` so exported runtimes share it; re-exported here):
  :func:`check_image` (``(H, W, 3)`` uint8 RGB, or ``(H, W)`` grey repeated to RGB; anything
  else is a :class:`~vbl_ros.errors.BadFrameError`) and :func:`resize` (OpenCV ``INTER_AREA`` when
  shrinking, ``INTER_LINEAR`` when growing); :meth:`InputTransform.resize_batch` gives the
  ``(N, h, w, 3)`` uint8 NHWC batch the extractor uploads.
- Torch: :class:`Normalize`, ``(N, 3, h, w)`` uint8 (or float holding the same 0..255 values) ->
  ``(x / 255 - mean) / std``, computed as ``x * scale - offset`` with ``scale = 1 / (255 std)`` and
  ``offset = mean / std`` (one multiply and one subtract per pixel), a module that can sit inside an
  exported graph; :meth:`InputTransform.to_tensor` for training datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from vbl_ros.errors import BadFrameError, ConfigError
from vbl_ros.images import check_image, resize, resize_batch

if TYPE_CHECKING:
    from vbl_ros.model.net import ModelConfig

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InputTransform",
    "Normalize",
    "check_image",
    "resize",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _scale_offset(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1, 3, 1, 1)`` float32 ``scale = 1 / (255 std)`` and ``offset = mean / std``."""
    mean_t = torch.tensor(tuple(mean), dtype=torch.float32)
    std_t = torch.tensor(tuple(std), dtype=torch.float32)
    return (1.0 / (255.0 * std_t)).view(1, 3, 1, 1), (mean_t / std_t).view(1, 3, 1, 1)


class Normalize(nn.Module):
    """``(N, 3, h, w)`` pixel values in 0..255 -> the network input ``(x / 255 - mean) / std``.

    The input is uint8, or a float tensor holding the same 0..255 values (as runtimes without uint8
    inputs feed it). The output has the module's dtype: float32, or what ``.to(dtype)`` made it
    (the extractor's CUDA path uses float16). ``scale`` and ``offset`` are non-persistent buffers:
    they follow ``.to()`` and become constants of an exported graph, but are not in a state dict.

    Args:
        mean, std: per-channel RGB mean and standard deviation of the [0, 1] image.
    """

    scale: torch.Tensor
    offset: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        scale, offset = _scale_offset(mean, std)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("offset", offset, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.scale.dtype) * self.scale - self.offset


@dataclass(frozen=True)
class InputTransform:
    """Image -> network input of one model: its input size and normalisation.

    Build it with :meth:`from_config`; it is hashable, so it can key a cache of transformed frames.

    Attributes:
        height, width: the network input size images are resized to.
        mean, std: per-channel RGB normalisation of the [0, 1] image.
    """

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ConfigError(f"input size {self.height}x{self.width}: both sides must be >= 1")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need 3 values each, std > 0")

    @classmethod
    def from_config(cls, config: ModelConfig) -> InputTransform:
        """The transform of a :class:`~vbl_ros.model.net.ModelConfig`."""
        mean = tuple(float(v) for v in config.mean)
        std = tuple(float(v) for v in config.std)
        return cls(config.input_height, config.input_width, mean, std)  # type: ignore[arg-type]

    def resize(self, image: np.ndarray, index: int = 0) -> np.ndarray:
        """One image checked (:func:`check_image`) and resized: ``(height, width, 3)`` uint8."""
        return resize(check_image(image, index), self.height, self.width)

    def resize_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Images of any size checked and resized: ``(N, height, width, 3)`` uint8 (NHWC)."""
        return resize_batch(images, self.height, self.width)

    def normalize(self) -> Normalize:
        """The torch-side normalisation as a module (for the extractor and an exported graph)."""
        return Normalize(self.mean, self.std)

    def to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """Resized uint8 images -> normalised float32 network input, for training datasets.

        Args:
            images: ``(height, width, 3)`` or ``(N, height, width, 3)`` uint8 RGB, already resized
                (:meth:`resize`, or a cache of resized frames).

        Returns:
            ``(3, height, width)`` or ``(N, 3, height, width)`` float32, contiguous.

        Raises:
            BadFrameError: not uint8, or not at the input size.
        """
        array = np.asarray(images)
        single = array.ndim == 3
        expected = (self.height, self.width, 3)
        if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-3:] != expected:
            raise BadFrameError(
                f"to_tensor needs uint8 images of shape {expected} or (N, *{expected}), got "
                f"{array.dtype} {array.shape}; resize them first (InputTransform.resize)"
            )
        x = torch.from_numpy(np.ascontiguousarray(array[None] if single else array)).permute(0, 3, 1, 2)
        out = self.normalize()(x).contiguous()
        return out[0] if single else out
