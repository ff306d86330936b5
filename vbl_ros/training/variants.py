"""The four trained models: what a training step runs, which losses it sums, and what the model file keeps.

=================  ===============================================  =====================================
variant            trained network (forward outputs)                losses
=================  ===============================================  =====================================
``rgb``            DescriptorNet: descriptor                        T(descriptor)
``auxiliary``      DescriptorNet + decoder on its feature map       T(descriptor) + alpha L1(side map)
``hallucination``  E_I + G + E_D (:class:`HallucinationNet`)        T(fused) + T(f_I) + T(f_D) + alpha L1(G)
``rgb-baseline``   the same architecture, G without a target        T(fused) + T(f_I) + T(f_D)
=================  ===============================================  =====================================

``T`` is the triplet loss, ``L1`` the mean absolute error over pixels with a LIDAR return. The model
file keeps the inference network only: the auxiliary decoder is dropped; a hallucination model keeps
E_I, G and E_D. ``rgb-baseline`` has exactly the parameters and inference cost of ``hallucination``
(its second branch is an RGB branch: the image through G and E_D, trained by the triplet losses
alone), so a difference between the two comes from the modality, not from capacity.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from vbl_ros.errors import ConfigError
from vbl_ros.model.hallucination import HallucinationNet
from vbl_ros.model.heads import SideBranchConfig, SideDecoder
from vbl_ros.model.io import build_net, load_model
from vbl_ros.model.net import DescriptorNet, ModelConfig
from vbl_ros.training.config import TrainConfig

__all__ = ["AUXILIARY_EXTRA_BLOCKS", "TrainingNet", "build_training_net", "freeze_batchnorm"]

logger = logging.getLogger(__name__)

AUXILIARY_EXTRA_BLOCKS = 3  # the auxiliary decoder's upsampling blocks (x8) before the final resize


class TrainingNet(nn.Module):
    """The network one training step runs: ``forward(x)`` -> a dict of outputs.

    Keys: ``descriptor`` (always; the inference output), ``image`` and ``side`` (the two branches of
    a hallucination architecture), ``side_map`` (``(B, 1, H, W)`` predicted modality in ``[0, 1]``).

    Args:
        net: the inference network (what the model file keeps).
        variant: one of :data:`~vbl_ros.training.config.VARIANTS`.
        decoder: the auxiliary decoder (``auxiliary`` only).
        detach_side_map: hallucination: feed E_D a detached G(x) (G trained by its own loss).
    """

    def __init__(
        self,
        net: DescriptorNet,
        variant: str,
        decoder: SideDecoder | None = None,
        *,
        detach_side_map: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.variant = variant
        self.decoder = decoder
        self.detach_side_map = detach_side_map

    @property
    def descriptor_keys(self) -> tuple[str, ...]:
        """The outputs the triplet loss applies to."""
        return ("descriptor", "image", "side") if isinstance(self.net, HallucinationNet) else ("descriptor",)

    @property
    def learns_side_map(self) -> bool:
        """Whether the L1 loss applies (a decoder with a modality target)."""
        return self.variant in ("auxiliary", "hallucination")

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The randomly initialised decoder's parameters (their own learning rate)."""
        module = self.decoder if self.decoder is not None else getattr(self.net, "decoder", None)
        return [p for p in module.parameters() if p.requires_grad] if module is not None else []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(self.net, HallucinationNet):
            out = self.net.branches(x, detach_side_map=self.detach_side_map)
            return {
                "descriptor": out.descriptor,
                "image": out.image,
                "side": out.side,
                "side_map": out.side_map,
            }
        if self.decoder is not None:
            descriptor, features = self.net(x, return_features=True)
            return {"descriptor": descriptor, "side_map": self.decoder(features, [], tuple(x.shape[-2:]))}
        return {"descriptor": self.net(x)}


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode: ImageNet statistics, used and kept.

    Batches of a few correlated tuples are too small for batch statistics, and frozen statistics
    make a step independent of how its batch is split across processes.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _encoder_config(config: TrainConfig) -> tuple[ModelConfig, DescriptorNet | None]:
    """The image encoder's config, and the network of ``init_model`` when one is given."""
    if config.init_model is None:
        return config.model, None
    start = load_model(config.init_model)
    return dataclasses.replace(start.config, side=None), start


def build_training_net(config: TrainConfig) -> TrainingNet:
    """The variant's training network, pretrained encoders (or ``init_model``), random decoders,
    the first backbone stages frozen (all but ``trainable_stages``)."""
    encoder, start = _encoder_config(config)
    decoder = None
    if config.variant in ("rgb", "auxiliary"):
        if start is not None and isinstance(start, HallucinationNet):
            raise ConfigError(
                f"init_model {config.init_model} is a hallucination model; variant {config.variant!r} trains a single encoder"
            )
        net = start if start is not None else build_net(encoder, pretrained=True)
        if config.variant == "auxiliary":
            decoder = SideDecoder(net.backbone.out_channels, (), config.decoder_width, AUXILIARY_EXTRA_BLOCKS)
    else:
        modality = config.modality if config.variant == "hallucination" else "none"
        side = SideBranchConfig(modality=modality, decoder_width=config.decoder_width)
        if start is not None and isinstance(start, HallucinationNet) and start.config.side == side:
            net = start
        else:
            net = build_net(dataclasses.replace(encoder, side=side), pretrained=True)
            if start is not None:  # E_I from the model file; G random, E_D ImageNet
                missing = net.load_state_dict(start.state_dict(), strict=False)
                logger.info(
                    "E_I from %s (%d other tensors keep their initialisation)",
                    config.init_model,
                    len(missing.missing_keys),
                )
    stages = net.backbone.num_stages
    net.freeze_backbone_stages(max(0, stages - config.trainable_stages))
    logger.info(
        "variant %s: %s, %d parameters (%d trainable), last %d of %d backbone stages trained",
        config.variant,
        type(net).__name__,
        sum(p.numel() for p in net.parameters())
        + (sum(p.numel() for p in decoder.parameters()) if decoder else 0),
        sum(p.numel() for p in net.parameters() if p.requires_grad)
        + (sum(p.numel() for p in decoder.parameters()) if decoder else 0),
        min(stages, config.trainable_stages),
        stages,
    )
    return TrainingNet(
        net, config.variant, decoder, detach_side_map=config.hallucination_training == "separate"
    )
