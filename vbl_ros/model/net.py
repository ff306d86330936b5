"""``DescriptorNet`` = backbone + aggregation (+ projection) + L2 norm, and its :class:`ModelConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import nn

from vbl_ros.errors import ConfigError
from vbl_ros.model.backbones import BACKBONES, build_backbone
from vbl_ros.model.heads import SideBranchConfig
from vbl_ros.model.layers import GeM, L2Norm, NetVLAD, Projection
from vbl_ros.model.transforms import IMAGENET_MEAN, IMAGENET_STD, InputTransform

__all__ = ["AGGREGATIONS", "PROJECTIONS", "DescriptorNet", "ModelConfig"]

AGGREGATIONS = ("gem", "netvlad")
PROJECTIONS = ("none", "linear", "pca")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`DescriptorNet` (stored in every model file).

    Attributes:
        backbone: a name of :data:`~vbl_ros.model.backbones.BACKBONES`.
        backbone_layer: truncation point; ``None`` = the backbone's default (320-channel last block
            for EfficientNet-Lite0).
        backbone_weights: local ImageNet weights file for torchvision backbones (the default backbone's
            weights ship with a package).
        aggregation: ``"gem"`` (default) or ``"netvlad"``.
        gem_p: GeM's initial exponent.
        netvlad_clusters: NetVLAD's number of clusters ``K`` (output ``K * C`` before projection).
        projection: ``"none"``, ``"linear"`` (learned) or ``"pca"`` (PCA-whitened, fitted on data).
        projection_dim: output dimension of the projection (required unless projection is none).
        input_height, input_width: the network input size images are resized to.
        mean, std: input normalisation (RGB in [0, 1]); resize and normalisation are
            :class:`~vbl_ros.model.transforms.InputTransform` (``InputTransform.from_config``).
        side: ``None`` (a :class:`DescriptorNet`), or the second branch of a hallucination model
            (:class:`~vbl_ros.model.hallucination.HallucinationNet`: the image encoder above, a
            decoder ``G`` and an encoder ``E_D`` of the same architecture; made by ``vbl train``).
            Build either with :func:`vbl_ros.model.io.build_net`.
    """

    backbone: str = "efficientnet_lite0"
    backbone_layer: str | None = None
    backbone_weights: str | None = None
    aggregation: str = "gem"
    gem_p: float = 3.0
    netvlad_clusters: int = 64
    projection: str = "none"
    projection_dim: int = 0
    input_height: int = 224
    input_width: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    side: SideBranchConfig | None = None

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone {self.backbone!r}: choose one of {sorted(BACKBONES)}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation {self.aggregation!r}: choose one of {AGGREGATIONS}")
        if self.projection not in PROJECTIONS:
            raise ConfigError(f"projection {self.projection!r}: choose one of {PROJECTIONS}")
        if self.projection != "none" and self.projection_dim <= 0:
            raise ConfigError(f"projection {self.projection!r} needs projection_dim > 0")
        if self.input_height < 32 or self.input_width < 32:
            raise ConfigError(f"input size {self.input_height}x{self.input_width}: at least 32x32")
        if self.netvlad_clusters < 1:
            raise ConfigError("netvlad_clusters must be >= 1")
        InputTransform.from_config(self)  # mean and std: 3 values each, std > 0


class DescriptorNet(nn.Module):
    """Global image descriptor network.

    ``forward(x)`` maps the normalised input ``x: (B, 3, H, W)`` float (see
    :class:`~vbl_ros.model.transforms.InputTransform`) to ``(B, D)`` unit-L2 descriptors, where
    ``D = C`` (GeM), ``K * C`` (NetVLAD) or ``projection_dim``; with ``return_features=True`` it
    also returns the backbone's feature map ``(B, C, h, w)`` the descriptor was pooled from
    (``C = backbone.out_channels``; ``h, w = ceil(H / 32), ceil(W / 32)`` for the default
    EfficientNet-Lite0, 7 x 7 at 224 x 224), e.g. for a side-modality decoder.

    The backbone's first stages can be frozen for training (:meth:`freeze_backbone_stages`).
    A config with a ``side`` branch is refused here: :func:`vbl_ros.model.io.build_net` builds it.

    Args:
        config: the architecture.
        pretrained: load the backbone's ImageNet weights (``False`` when a model file's weights follow).
    """

    #: whether the class builds ``config.side`` (subclasses that do set it)
    builds_side_branch = False

    def __init__(self, config: ModelConfig | None = None, *, pretrained: bool = True) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        if config.side is not None and not self.builds_side_branch:
            raise ConfigError(
                "this model config has a side branch (a hallucination model): build it with "
                "vbl_ros.model.io.build_net or load its file with vbl_ros.model.load_model"
            )
        self.backbone = build_backbone(
            config.backbone,
            layer=config.backbone_layer,
            pretrained=pretrained,
            weights=config.backbone_weights,
        )
        channels = self.backbone.out_channels
        if config.aggregation == "gem":
            self.aggregation: nn.Module = GeM(p=config.gem_p)
            dim = channels
        else:
            self.aggregation = NetVLAD(num_clusters=config.netvlad_clusters, dim=channels)
            dim = config.netvlad_clusters * channels
        self.projection: nn.Module = (
            Projection(dim, config.projection_dim) if config.projection != "none" else nn.Identity()
        )
        self.norm = L2Norm()
        self._dim = config.projection_dim if config.projection != "none" else dim

    @property
    def dim(self) -> int:
        """Descriptor dimension ``D``."""
        return self._dim

    @overload
    def forward(self, x: torch.Tensor, return_features: Literal[False] = ...) -> torch.Tensor: ...

    @overload
    def forward(
        self, x: torch.Tensor, return_features: Literal[True]
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Descriptors ``(B, D)``, or ``(descriptors (B, D), feature map (B, C, h, w))``.

        Args:
            x: ``(B, 3, H, W)`` normalised input.
            return_features: also return the backbone's feature map (one backbone pass for both);
                not keyword-only, so that the net stays scriptable (TorchScript refuses those).
        """
        features = self.backbone(x)
        descriptors = self.norm(self.projection(self.aggregation(features)))
        if return_features:
            return descriptors, features
        return descriptors

    def local_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone feature map ``(B, C, h, w)`` alone (NetVLAD's k-means init, PCA fitting)."""
        return self.backbone(x)

    def freeze_backbone_stages(self, n: int) -> None:
        """Freeze the backbone's first ``n`` stages and make the others trainable.

        Frozen stages get ``requires_grad = False`` and stay in eval mode (BatchNorm uses and keeps
        its running statistics) even after ``train()``; ``n = 0`` unfreezes everything. Nothing is
        added to the state dict: the fingerprint does not change. Stages:
        :attr:`~vbl_ros.model.backbones.Backbone.stages`.

        Raises:
            ConfigError: ``n`` outside ``0 .. backbone.num_stages``.
        """
        self.backbone.freeze_stages(n)
