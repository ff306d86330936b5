"""``DescriptorExtractor``: RGB images -> unit-L2 float32 descriptors, on CUDA or a lean CPU path.

CUDA: half precision, channels-last, uint8 upload then normalisation on the GPU.
CPU: float32, channels-last (the NHWC uint8 batch is already channels-last once permuted), under
``torch.inference_mode``; the network is prepared once and warmed up at construction.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from vbl_ros.errors import BadFrameError, ConfigError
from vbl_ros.model.io import model_fingerprint
from vbl_ros.model.net import DescriptorNet

__all__ = ["DescriptorExtractor", "resolve_device"]

logger = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cpu"``; ``"cuda"`` (refused when absent)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
        return torch.device(device)
    raise ConfigError(f"device {device!r}: use 'auto', 'cpu' or 'cuda'")


class DescriptorExtractor:
    """Compute descriptors of RGB images with a :class:`DescriptorNet`.

    ``__call__(images)`` takes a sequence of ``(H, W, 3)`` uint8 RGB arrays (any size; ``(H, W)``
    grey too) and returns ``(N, D)`` float32 unit-L2 descriptors.

    Args:
        net: the network (copied; the caller's module is left untouched).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: images per forward pass.
        num_threads: ``torch.set_num_threads`` for the CPU path (``None`` = leave torch's setting).
        warmup: run one dummy batch at construction so the first real call is not slow.
    """

    def __init__(
        self,
        net: DescriptorNet,
        device: str = "auto",
        *,
        batch_size: int = 16,
        num_threads: int | None = None,
        warmup: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.fingerprint: str = model_fingerprint(net)
        self.config = net.config
        self.dim: int = net.dim
        self.batch_size = batch_size
        self.device: torch.device = resolve_device(device)
        if num_threads is not None and self.device.type == "cpu":
            torch.set_num_threads(num_threads)
        self.size = (net.config.input_width, net.config.input_height)  # cv2 order
        self._half = self.device.type == "cuda"
        dtype = torch.float16 if self._half else torch.float32
        model = copy.deepcopy(net).eval().requires_grad_(False)
        self.net = model.to(self.device, dtype=dtype, memory_format=torch.channels_last)
        mean = torch.tensor(net.config.mean, dtype=torch.float32)
        std = torch.tensor(net.config.std, dtype=torch.float32)
        # x_norm = uint8 * scale - offset, one fused multiply-add per pixel
        self._scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1).to(self.device, dtype)
        self._offset = (mean / std).view(1, 3, 1, 1).to(self.device, dtype)
        if warmup:
            self(
                [np.zeros((net.config.input_height, net.config.input_width, 3), np.uint8)]
                * min(2, batch_size)
            )
        logger.info(
            "descriptor extractor: %s/%s + %s, %d-d, input %dx%d, %s%s",
            net.config.backbone,
            net.backbone.layer,
            net.config.aggregation,
            self.dim,
            self.size[0],
            self.size[1],
            self.device,
            " fp16" if self._half else "",
        )

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Resize to the input size: ``(N, h, w, 3)`` uint8 (NHWC)."""
        w, h = self.size
        batch = np.empty((len(images), h, w, 3), np.uint8)
        for i, image in enumerate(images):
            image = np.asarray(image)
            if image.dtype != np.uint8:
                raise BadFrameError(f"image {i}: expected uint8 RGB, got {image.dtype}")
            if image.ndim == 2:
                image = np.repeat(image[:, :, None], 3, axis=2)
            if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
                raise BadFrameError(f"image {i}: expected shape (H, W, 3), got {image.shape}")
            if image.shape[:2] == (h, w):
                batch[i] = image
            else:
                shrinking = image.shape[0] > h or image.shape[1] > w
                batch[i] = cv2.resize(
                    image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
                )
        return batch

    def to_input(self, batch: np.ndarray) -> torch.Tensor:
        """The network input of a :meth:`preprocess` batch: ``(N, 3, h, w)`` normalised, on the device.

        Channels-last memory, in the extractor's dtype (float16 on CUDA, float32 on the CPU).
        """
        x = (
            torch.from_numpy(batch).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        )  # NCHW view, NHWC memory
        x = x.to(self._scale.dtype).mul_(self._scale).sub_(self._offset)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        out = self.net(self.to_input(batch))
        return out.float().cpu().numpy()

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Descriptors ``(N, D)`` float32, unit L2, of ``N`` RGB uint8 images."""
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = np.empty((len(images), self.dim), np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            out[start : start + len(chunk)] = self._forward(self.preprocess(chunk))
        if self._half:  # renormalise after fp16 rounding
            out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
        return out

    def time_one(self, image: np.ndarray, repeats: int = 20) -> float:
        """Median milliseconds of one single-image call (for diagnostics and benchmarks)."""
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self([image])
            times.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(times))
