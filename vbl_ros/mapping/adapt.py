"""A model adapted to the map it describes: NetVLAD centres (and PCA whitening) fitted on its keyframes.

``vbl build-map --adapt`` fits the aggregation of a pretrained backbone on the map drive's own
frames, without training and without any query image: NetVLAD's centres are the k-means of the
backbone's local features of the keyframes, and a whitened PCA projection is fitted on their
NetVLAD descriptors when there are enough keyframes (:func:`vbl_ros.model.init.initialize_model`).
The adapted model is written into the map's folder (``MAP/model.pt``, with its own fingerprint)
together with the map, and :func:`resolve_model` makes every reader of a map (the node,
``vbl evaluate``, ``vbl build-map --add``) load that model when none is given.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vbl_ros.errors import ConfigError

if TYPE_CHECKING:  # torch is imported only to fit (a node running an exported model never imports it)
    from vbl_ros.model.net import DescriptorNet, ModelConfig

__all__ = ["MAP_MODEL_FILE", "AdaptConfig", "fit_adapted_model", "resolve_model"]

logger = logging.getLogger(__name__)

#: the name of the adapted model inside the map's folder
MAP_MODEL_FILE = "model.pt"


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    """How ``build_map`` adapts a model to the map's keyframes (YAML: ``adapt: {clusters: 64}``).

    Attributes:
        backbone: the pretrained backbone (:data:`~vbl_ros.model.backbones.BACKBONES`).
        input_height, input_width: the network's input size.
        clusters: NetVLAD's number of clusters ``K`` (descriptor ``K * C`` before the projection).
        pca_dim: dimensions of the PCA-whitened projection; ``0`` = none (NetVLAD's full descriptor).
        pca_frames_per_dim: the projection is fitted only with at least this many sampled keyframes
            per dimension; with fewer, the map keeps NetVLAD's full descriptor and a warning says so.
        max_images: keyframes sampled evenly over the map's drives to fit on.
        seed: seed of the k-means and of the feature subsampling.
    """

    backbone: str = "efficientnet_lite0"
    input_height: int = 224
    input_width: int = 224
    clusters: int = 64
    pca_dim: int = 256
    pca_frames_per_dim: float = 2.0
    max_images: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clusters < 1:
            raise ConfigError(f"adapt.clusters must be >= 1, got {self.clusters}")
        if self.pca_dim < 0:
            raise ConfigError(f"adapt.pca_dim must be >= 0 (0 = no projection), got {self.pca_dim}")
        if not self.pca_frames_per_dim > 0:
            raise ConfigError(f"adapt.pca_frames_per_dim must be > 0, got {self.pca_frames_per_dim}")
        if self.max_images < 1:
            raise ConfigError(f"adapt.max_images must be >= 1, got {self.max_images}")
        if self.input_height < 32 or self.input_width < 32:
            raise ConfigError(f"adapt input size {self.input_height}x{self.input_width}: at least 32x32")

    def pca_fits(self, frames: int) -> bool:
        """Whether the PCA projection is fitted on ``frames`` sampled keyframes."""
        return self.pca_dim > 0 and frames >= self.pca_frames_per_dim * self.pca_dim

    def model_config(self, frames: int) -> ModelConfig:
        """The adapted architecture for ``frames`` sampled keyframes (with PCA when it fits).

        Raises:
            ConfigError: an unknown backbone.
        """
        from vbl_ros.model.net import ModelConfig

        pca = self.pca_fits(frames)
        return ModelConfig(
            backbone=self.backbone,
            input_height=self.input_height,
            input_width=self.input_width,
            aggregation="netvlad",
            netvlad_clusters=self.clusters,
            projection="pca" if pca else "none",
            projection_dim=self.pca_dim if pca else 0,
        )


def fit_adapted_model(images: np.ndarray, config: AdaptConfig, *, device: str = "auto") -> DescriptorNet:
    """The adapted model of ``config`` fitted on ``images`` ``(N, H, W, 3)`` uint8 (the map's keyframes).

    Without enough images for the PCA projection (:meth:`AdaptConfig.pca_fits`), the projection is
    left out and the descriptor is NetVLAD's ``K * C`` dimensions.

    Raises:
        ModelError: too few local features for NetVLAD's clusters.
    """
    from vbl_ros.model.init import initialize_model

    if config.pca_dim and not config.pca_fits(len(images)):
        logger.warning(
            "%d keyframes to adapt on: a PCA projection to %d needs at least %d (%.3g per dimension); "
            "the adapted model keeps NetVLAD's full %d-cluster descriptor",
            len(images),
            config.pca_dim,
            int(np.ceil(config.pca_frames_per_dim * config.pca_dim)),
            config.pca_frames_per_dim,
            config.clusters,
        )
    model = config.model_config(len(images))
    return initialize_model(model, images=images, max_images=len(images), seed=config.seed, device=device)


def resolve_model(model: Path | str | None, map_dir: Path | str | None) -> Path | str | None:
    """The model to describe images with for the map ``map_dir``: ``model`` when given, else the
    model the map carries (``vbl build-map --adapt``), else ``None`` (the embedded default model).

    A model given explicitly is still checked against the map's fingerprint where the map is loaded.

    Raises:
        MapError: ``map_dir`` is given but is not a map.
    """
    from vbl_ros.mapping.store import map_model_file

    if model is not None or map_dir is None:
        return model
    carried = map_model_file(map_dir)
    if carried is not None:
        logger.info("using the model the map carries: %s", carried)
    return carried
