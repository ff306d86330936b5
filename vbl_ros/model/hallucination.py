"""``HallucinationNet``: image encoder + a decoder that hallucinates depth + a depth encoder, one descriptor.

Piasco et al., "Learning scene geometry for visual localization in challenging conditions" (ICRA
2019): the image encoder ``E_I`` gives ``f_I(x)`` and, through the outputs of its stages, feeds a
U-Net decoder ``G`` that predicts a depth (or reflectance) map from the RGB image alone; a second
encoder ``E_D`` of the same architecture describes that map; the descriptor is the L2-normalised
concatenation ``[f_I(x), f_D(G(x))]``. The LIDAR is needed only to train ``G``: at inference the
network takes RGB alone, like any :class:`~vbl_ros.model.net.DescriptorNet`, and runs in the
extractor, the map builder and the node unchanged. With ``side.modality == "none"`` the same
architecture is the ``rgb-baseline`` of ``vbl train`` (trained without a modality).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
import torch.nn.functional as F

from vbl_ros.model.heads import SideDecoder, skip_plan, stage_features
from vbl_ros.model.net import DescriptorNet, ModelConfig
from vbl_ros.model.transforms import Normalize

__all__ = ["BranchOutputs", "HallucinationNet"]


class BranchOutputs(NamedTuple):
    """Everything one forward pass of a :class:`HallucinationNet` computes, for training.

    Attributes:
        descriptor: ``(B, D_I + D_D)`` the fused unit-L2 descriptor (the inference output).
        image: ``(B, D_I)`` unit-L2 ``f_I(x)``.
        side: ``(B, D_D)`` unit-L2 ``f_D(G(x))``.
        side_map: ``(B, 1, H, W)`` ``G(x)`` in ``[0, 1]``.
    """

    descriptor: torch.Tensor
    image: torch.Tensor
    side: torch.Tensor
    side_map: torch.Tensor


class HallucinationNet(DescriptorNet):
    """``E_I`` (this class's own backbone, aggregation, projection) + ``G`` (:attr:`decoder`) + ``E_D``
    (:attr:`side_encoder`, a :class:`DescriptorNet` of the same architecture, fed ``G``'s map repeated
    to three channels and normalised like an image).

    ``forward(x)`` returns ``(B, D)`` unit-L2 descriptors, ``D = 2 * D_I``; with
    ``return_features=True`` also ``E_I``'s feature map. :meth:`branches` returns every part.

    Args:
        config: a :class:`ModelConfig` whose ``side`` is set.
        pretrained: load ImageNet weights into both encoders (``G`` starts random).
    """

    builds_side_branch = True

    def __init__(self, config: ModelConfig, *, pretrained: bool = True) -> None:
        if config.side is None:
            raise ValueError("HallucinationNet needs a ModelConfig with a side branch")
        super().__init__(config, pretrained=pretrained)
        self.skip_stages, skip_channels = skip_plan(self.backbone, config.input_height, config.input_width)
        self.decoder = SideDecoder(self.backbone.out_channels, skip_channels, config.side.decoder_width)
        self.side_encoder = DescriptorNet(dataclasses.replace(config, side=None), pretrained=pretrained)
        self.side_normalize = Normalize(config.mean, config.std)
        self._dim = self._dim + self.side_encoder.dim

    def branches(self, x: torch.Tensor, *, detach_side_map: bool = False) -> BranchOutputs:
        """Every output of one pass (for training).

        Args:
            x: ``(B, 3, H, W)`` normalised input.
            detach_side_map: feed ``E_D`` a detached ``G(x)``, so that losses on ``f_D`` do not train
                ``G`` (the published recipe trains ``G`` on its own loss).
        """
        return self._from_stages(x, stage_features(self.backbone, x), detach_side_map)

    def _from_stages(
        self, x: torch.Tensor, stages: list[torch.Tensor], detach_side_map: bool
    ) -> BranchOutputs:
        features = stages[-1]
        image = self.norm(self.projection(self.aggregation(features)))
        side_map = self.decoder(features, [stages[i] for i in self.skip_stages], tuple(x.shape[-2:]))
        map_in = side_map.detach() if detach_side_map else side_map
        side = self.side_encoder(self.side_normalize(map_in.expand(-1, 3, -1, -1) * 255.0))
        descriptor = F.normalize(torch.cat([image, side], dim=1), p=2.0, dim=1)
        return BranchOutputs(descriptor, image, side, side_map)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Fused descriptors ``(B, D)``, or ``(descriptors, E_I's feature map (B, C, h, w))``."""
        stages = stage_features(self.backbone, x)
        descriptor = self._from_stages(x, stages, False).descriptor
        return (descriptor, stages[-1]) if return_features else descriptor

    def freeze_backbone_stages(self, n: int) -> None:
        """Freeze the first ``n`` stages of both encoders (``E_I`` and ``E_D``)."""
        super().freeze_backbone_stages(n)
        self.side_encoder.freeze_backbone_stages(n)
