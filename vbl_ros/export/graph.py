"""The graph every export writes: uint8 NHWC images -> normalisation -> ``DescriptorNet`` -> descriptors.

Shared by the ONNX and TorchScript writers, with the metadata of a net.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from vbl_ros.config import to_dict
from vbl_ros.export.metadata import ExportMetadata
from vbl_ros.model.io import model_fingerprint
from vbl_ros.model.net import DescriptorNet
from vbl_ros.model.transforms import InputTransform

__all__ = ["InferenceGraph", "metadata_of"]


class InferenceGraph(nn.Module):
    """``forward(images: (N, H, W, 3) uint8 RGB) -> (N, D)`` float32 unit-L2 descriptors.

    ``H, W`` are the model's input size (images resized by
    :meth:`~vbl_ros.model.transforms.InputTransform.resize_batch`); normalisation is
    :class:`~vbl_ros.model.transforms.Normalize`, inside the graph.

    Args:
        net: the network (deep-copied, in eval mode, no gradients).
    """

    def __init__(self, net: DescriptorNet) -> None:
        super().__init__()
        self.normalize = InputTransform.from_config(net.config).normalize()
        self.net = copy.deepcopy(net).float().eval().requires_grad_(False)
        for module in self.net.modules():  # in-place activations cost torch.export ~30 % more time
            if getattr(module, "inplace", False):
                module.inplace = False
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(images.permute(0, 3, 1, 2)))


def metadata_of(
    net: DescriptorNet, file_format: str, precision: str = "fp32", extra: Mapping[str, str] | None = None
) -> ExportMetadata:
    """The :class:`~vbl_ros.export.metadata.ExportMetadata` of ``net`` exported as ``file_format``."""
    return ExportMetadata(
        fingerprint=model_fingerprint(net),
        config=to_dict(net.config),
        dim=net.dim,
        height=net.config.input_height,
        width=net.config.input_width,
        file_format=file_format,
        precision=precision,
        extra=dict(extra or {}),
    )
