"""Side-modality decoders: a one-channel map (depth or reflectance) predicted from a backbone's features.

Two uses (issue 9, training with a LIDAR side modality that exists only at training time):

- ``auxiliary``: :class:`SideDecoder` without skips, on the encoder's last feature map (the
  descriptor's input); used during training only and dropped from the model file.
- ``hallucination`` (Piasco et al., ICRA 2019): a U-Net :class:`SideDecoder` ``G`` on the outputs of
  the image encoder's stages (:func:`stage_features`); part of the inference network
  (:class:`~vbl_ros.model.hallucination.HallucinationNet`, configured by :class:`SideBranchConfig`).

Decoders use GroupNorm, not BatchNorm: their output does not depend on how a batch is split across
processes, and small batches of correlated frames do not skew them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vbl_ros.errors import ConfigError
from vbl_ros.model.backbones import Backbone

__all__ = ["SIDE_MODALITIES", "SideBranchConfig", "SideDecoder", "skip_plan", "stage_features"]

#: what a hallucination branch's decoder was trained to predict ("none": no modality, the rgb-baseline)
SIDE_MODALITIES = ("depth", "reflectance", "none")


@dataclass(frozen=True)
class SideBranchConfig:
    """The second branch of a hallucination model: ``G`` (U-Net decoder) and ``E_D`` (encoder of ``G``'s map).

    Attributes:
        modality: what ``G`` was trained to predict: ``"depth"``, ``"reflectance"``, or ``"none"``
            (``rgb-baseline``: the same architecture trained without a modality).
        decoder_width: channels of every decoder block (a multiple of 8).
    """

    modality: str = "depth"
    decoder_width: int = 32

    def __post_init__(self) -> None:
        if self.modality not in SIDE_MODALITIES:
            raise ConfigError(f"side.modality {self.modality!r}: choose one of {SIDE_MODALITIES}")
        if self.decoder_width < 8 or self.decoder_width % 8:
            raise ConfigError(
                f"side.decoder_width must be a positive multiple of 8, got {self.decoder_width}"
            )


def stage_features(backbone: Backbone, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every backbone stage, input to output: ``[(B, C_i, h_i, w_i)]``.

    The stages partition the backbone's body in order, so the last item equals ``backbone(x)``.
    """
    outputs = []
    for i in range(backbone.num_stages):
        for module in backbone.stage_modules(i):
            x = module(x)
        outputs.append(x)
    return outputs


@torch.no_grad()
def skip_plan(backbone: Backbone, height: int, width: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Which stage outputs a U-Net decoder takes as skips, deepest first, and their channels.

    For each spatial size below the last stage's, the last stage that has that size (EfficientNet-Lite0
    at 224 x 224: strides 16, 8, 4, 2). Found by one probe forward in eval mode at ``height x width``.
    """
    was_training = backbone.training
    backbone.eval()
    try:
        outputs = stage_features(backbone, torch.zeros(1, 3, height, width))
    finally:
        backbone.train(was_training)
    last_of_size: dict[tuple[int, int], int] = {}
    for i, out in enumerate(outputs[:-1]):
        last_of_size[tuple(out.shape[-2:])] = i
    last_of_size.pop(tuple(outputs[-1].shape[-2:]), None)
    stages = tuple(sorted(last_of_size.values(), reverse=True))
    return stages, tuple(int(outputs[i].shape[1]) for i in stages)


class _Block(nn.Module):
    """conv 3x3 + GroupNorm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(8, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class SideDecoder(nn.Module):
    """Decode a one-channel map in ``[0, 1]`` at the input size from backbone features.

    ``forward(deep, skips, size)``: ``deep`` ``(B, C, h, w)`` is the last feature map; each skip
    (deepest first, channels ``skip_channels``) is joined after upsampling to its size (U-Net); then
    ``extra_blocks`` times upsampling x2 + a block; a 3x3 convolution to one channel, bilinear
    upsampling to ``size`` and a sigmoid. Returns ``(B, 1, *size)``.

    Args:
        deep_channels: channels of the last feature map.
        skip_channels: channels of the skips, deepest first (``()``: decode from the last map alone).
        width: channels of every block (a multiple of 8).
        extra_blocks: upsampling blocks after the skips.
    """

    def __init__(
        self, deep_channels: int, skip_channels: Sequence[int] = (), width: int = 32, extra_blocks: int = 0
    ) -> None:
        super().__init__()
        if width < 8 or width % 8:
            raise ConfigError(f"decoder width must be a positive multiple of 8, got {width}")
        self.entry = nn.Conv2d(deep_channels, width, 1)
        self.skip_blocks = nn.ModuleList(_Block(width + c, width) for c in skip_channels)
        self.extra_blocks = nn.ModuleList(_Block(width, width) for _ in range(extra_blocks))
        self.head = nn.Conv2d(width, 1, 3, padding=1)

    def forward(
        self, deep: torch.Tensor, skips: Sequence[torch.Tensor], size: tuple[int, int]
    ) -> torch.Tensor:
        if len(skips) != len(self.skip_blocks):
            raise ValueError(f"decoder expects {len(self.skip_blocks)} skips, got {len(skips)}")
        x = self.entry(deep)
        for block, skip in zip(self.skip_blocks, skips, strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip.to(x.dtype)], dim=1))
        for block in self.extra_blocks:
            x = block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        x = F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(x)
