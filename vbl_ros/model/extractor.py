"""``DescriptorExtractor``: RGB images -> unit-L2 float32 descriptors in eager PyTorch (the ``torch`` runtime).

Images are checked, resized and normalised by :mod:`vbl_ros.model.transforms`, as everywhere else.
CUDA: half precision (or fp32 when asked), channels-last, uint8 upload then normalisation on the GPU.
CPU: float32, channels-last (the NHWC uint8 batch is already channels-last once permuted), under
``torch.inference_mode``; the network is prepared once and warmed up at construction.

The other runtimes (ONNX Runtime, OpenVINO, TensorRT, TorchScript) run an exported network behind
the same interface (``__call__``, ``dim``, ``fingerprint``, ``runtime``):
:func:`vbl_ros.export.build_extractor` builds the extractor of any model file in any runtime.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import numpy as np
import torch

from vbl_ros.errors import ConfigError
from vbl_ros.model.io import model_fingerprint
from vbl_ros.model.net import DescriptorNet
from vbl_ros.model.transforms import InputTransform

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
    grey too) and returns ``(N, D)`` float32 unit-L2 descriptors. :attr:`transform` resizes them
    (``transform.resize_batch``) and :meth:`to_input` normalises the batch on the device.

    Args:
        net: the network (copied; the caller's module is left untouched).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: images per forward pass.
        num_threads: ``torch.set_num_threads`` for the CPU path (``None`` = leave torch's setting).
        precision: ``"fp32"`` or ``"fp16"`` (CUDA only); ``None`` = fp16 on CUDA, fp32 on the CPU.
        warmup: run one dummy batch at construction so the first real call is not slow.
    """

    runtime = "torch"

    def __init__(
        self,
        net: DescriptorNet,
        device: str = "auto",
        *,
        batch_size: int = 16,
        num_threads: int | None = None,
        precision: str | None = None,
        warmup: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if precision not in (None, "fp32", "fp16"):
            raise ConfigError(
                f"precision {precision!r} with runtime torch: use fp32, or fp16 on CUDA; bf16 runs in openvino"
            )
        self.fingerprint: str = model_fingerprint(net)
        self.config = net.config
        self.dim: int = net.dim
        self.batch_size = batch_size
        self.device: torch.device = resolve_device(device)
        if num_threads is not None and self.device.type == "cpu":
            torch.set_num_threads(num_threads)
        self.transform = InputTransform.from_config(net.config)
        if precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("precision fp16 with runtime torch needs CUDA; use fp32 on the CPU")
        self._half = self.device.type == "cuda" and precision != "fp32"
        self.precision: str = "fp16" if self._half else "fp32"
        dtype = torch.float16 if self._half else torch.float32
        model = copy.deepcopy(net).eval().requires_grad_(False)
        self.net = model.to(self.device, dtype=dtype, memory_format=torch.channels_last)
        self._normalize = self.transform.normalize().to(self.device, dtype)
        if warmup:
            self([np.zeros((self.transform.height, self.transform.width, 3), np.uint8)] * min(2, batch_size))
        logger.info(
            "descriptor extractor: %s/%s + %s, %d-d, input %dx%d, %s%s",
            net.config.backbone,
            net.backbone.layer,
            net.config.aggregation,
            self.dim,
            self.transform.width,
            self.transform.height,
            self.device,
            " fp16" if self._half else "",
        )

    @property
    def input_size(self) -> tuple[int, int]:
        """The network's input ``(width, height)``: frames need not be decoded larger."""
        return self.transform.width, self.transform.height

    def to_input(self, batch: np.ndarray) -> torch.Tensor:
        """The network input of a resized batch (``transform.resize_batch``): ``(N, 3, h, w)`` on the device.

        Normalised by :class:`~vbl_ros.model.transforms.Normalize` after the uint8 upload;
        channels-last memory, in the extractor's dtype (float16 on CUDA, float32 on the CPU).
        """
        x = (
            torch.from_numpy(batch).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        )  # NCHW view, NHWC memory
        return self._normalize(x).contiguous(memory_format=torch.channels_last)

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
            out[start : start + len(chunk)] = self._forward(self.transform.resize_batch(chunk))
        if self._half:  # renormalise after fp16 rounding
            out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
        return out
