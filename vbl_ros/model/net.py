"""``DescriptorNet`` = backbone + aggregation (+ projection) + L2 norm, and its :class:`ModelConfig`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vbl_ros.errors import ConfigError
from vbl_ros.model.backbones import BACKBONES, build_backbone
from vbl_ros.model.layers import GeM, L2Norm, NetVLAD, Projection

__all__ = ["AGGREGATIONS", "PROJECTIONS", "DescriptorNet", "ModelConfig"]

AGGREGATIONS = ("gem", "netvlad")
PROJECTIONS = ("none", "linear", "pca")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        mean, std: input normalisation (RGB in [0, 1]).
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
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need 3 values each, std > 0")


class DescriptorNet(nn.Module):
    """Global image descriptor network.

    ``forward(x: (B, 3, H, W) float, normalised) -> (B, D)`` unit-L2 descriptors, where
    ``D = C`` (GeM), ``K * C`` (NetVLAD) or ``projection_dim``.

    Args:
        config: the architecture.
        pretrained: load the backbone's ImageNet weights (``False`` when a model file's weights follow).
    """

    def __init__(self, config: ModelConfig | None = None, *, pretrained: bool = True) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.projection(self.aggregation(self.backbone(x))))

    def local_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(B, C, h, w)`` (for NetVLAD's k-means init and PCA fitting)."""
        return self.backbone(x)
