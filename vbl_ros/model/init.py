"""Make a model without training: pretrained backbone + NetVLAD centres and PCA fitted on a bag or images.

:func:`initialize_model` builds a :class:`~vbl_ros.model.net.DescriptorNet` from a
:class:`~vbl_ros.model.net.ModelConfig`:

- the backbone keeps its ImageNet weights (EfficientNet-Lite0's ship with a package);
- GeM needs nothing else;
- NetVLAD's centres are the k-means of backbone local features of sampled frames;
- a ``"pca"`` projection is fitted (whitened) on the aggregated descriptors of the same frames;
- a ``"linear"`` projection is left at its random init: it is meant to be trained.

The frames come from a bag's camera topic (sampled evenly, streaming: two passes over the bag,
stamps only, then the chosen frames) or from images: a folder of png/jpg files or any iterable of
RGB arrays (sampled evenly by :func:`~vbl_ros.model.image_folder.sample_evenly`). Each is resized
and normalised by :mod:`vbl_ros.model.transforms`, exactly as at inference.
:func:`init_model` does the same and writes the model file (``vbl init-model``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from vbl_ros.errors import ConfigError, ModelError, OutputExistsError
from vbl_ros.model.extractor import DescriptorExtractor
from vbl_ros.model.image_folder import evenly_spaced, read_image_folder, sample_evenly
from vbl_ros.model.io import model_fingerprint, save_model
from vbl_ros.model.layers import NetVLAD, Projection
from vbl_ros.model.net import DescriptorNet, ModelConfig
from vbl_ros.model.transforms import InputTransform

__all__ = ["init_model", "initialize_model", "min_frames", "needs_data"]

logger = logging.getLogger(__name__)

#: k-means uses at most this many local features per cluster (FAISS's own sampling cap)
KMEANS_FEATURES_PER_CLUSTER = 256
#: FAISS warns below this many features per cluster
KMEANS_MIN_FEATURES_PER_CLUSTER = 39


def needs_data(config: ModelConfig) -> bool:
    """Whether the model must be fitted on camera frames (NetVLAD centres, PCA)."""
    return config.aggregation == "netvlad" or config.projection == "pca"


def min_frames(config: ModelConfig, features_per_frame: int) -> int:
    """Frames needed to initialise ``config``: ``K`` local features for NetVLAD, ``dim + 1`` for PCA.

    Args:
        config: the architecture.
        features_per_frame: local features per frame (``h * w`` of the backbone's output).
    """
    needed = 0
    if config.aggregation == "netvlad":
        needed = math.ceil(config.netvlad_clusters / max(features_per_frame, 1))
    if config.projection == "pca":
        needed = max(needed, config.projection_dim + 1)
    return needed


def _count_frames(bag: Path, camera_topic: str | None) -> int:
    from vbl_ros.bags import read_camera_frames

    count = 0

    def tally(_stamp: int) -> bool:
        nonlocal count
        count += 1
        return False  # nothing is decoded

    for _ in read_camera_frames(bag, camera_topic, keep=tally):
        pass
    return count


def _bag_inputs(
    bag: Path, camera_topic: str | None, max_images: int, needed: int, why: str, transform: InputTransform
) -> np.ndarray:
    """Up to ``max_images`` frames evenly spread over the bag's camera topic, resized: ``(N, h, w, 3)``.

    Raises:
        ModelError: the topic has, or decodes, fewer than ``needed`` frames.
    """
    from tqdm import tqdm

    from vbl_ros.bags import read_camera_frames

    logger.info("counting the frames of %s", bag)
    n_frames = _count_frames(bag, camera_topic)
    if n_frames < needed:
        raise ModelError(f"{bag}: {n_frames} camera frames, at least {needed} are needed ({why})")
    wanted = set(evenly_spaced(n_frames, max_images).tolist())
    index = -1

    def keep(_stamp: int) -> bool:
        nonlocal index
        index += 1
        return index in wanted

    inputs = []
    frames = read_camera_frames(bag, camera_topic, keep=keep)
    for frame in tqdm(frames, total=len(wanted), unit="frame", desc=f"sample {bag.name}", disable=None):
        inputs.append(transform.resize(frame.image_rgb))  # resized now: little memory
    if len(inputs) < needed:  # frames that failed to decode were skipped
        raise ModelError(f"{bag}: only {len(inputs)} frames decoded, at least {needed} are needed ({why})")
    return np.stack(inputs)


def _image_inputs(
    images: Iterable[np.ndarray],
    source: str,
    max_images: int,
    needed: int,
    why: str,
    transform: InputTransform,
) -> np.ndarray:
    """Up to ``max_images`` of ``images`` evenly spread, resized: ``(N, h, w, 3)`` uint8.

    Raises:
        ModelError: fewer than ``needed`` images.
        BadFrameError: an image is not a uint8 RGB (or grey) array.
    """
    from tqdm import tqdm

    with tqdm(unit="image", desc=f"sample {source}", disable=None) as progress:

        def resize(index: int, image: np.ndarray) -> np.ndarray:
            progress.update(1)
            return transform.resize(image, index)  # resized now: little memory

        inputs = sample_evenly(images, max_images, resize)
    if len(inputs) < needed:
        raise ModelError(f"{source}: {len(inputs)} images, at least {needed} are needed ({why})")
    return np.stack(inputs)


@torch.inference_mode()
def _local_features(extractor: DescriptorExtractor, inputs: np.ndarray) -> torch.Tensor:
    """Backbone feature maps ``(N, C, h, w)`` float32 on the CPU of resized ``inputs``."""
    from tqdm import tqdm

    out = []
    for start in tqdm(
        range(0, len(inputs), extractor.batch_size), unit="batch", desc="backbone features", disable=None
    ):
        x = extractor.to_input(inputs[start : start + extractor.batch_size])
        out.append(extractor.net.local_features(x).float().cpu())
    return torch.cat(out)


@torch.inference_mode()
def _aggregate(net: DescriptorNet, features: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Aggregated (pre-projection) descriptors ``(N, D)`` of feature maps, on the CPU."""
    aggregation = net.aggregation.float().cpu()
    return torch.cat(
        [aggregation(features[i : i + batch_size]) for i in range(0, len(features), batch_size)]
    ).numpy()


def initialize_model(
    config: ModelConfig,
    *,
    bag: Path | str | None = None,
    images: Path | str | Iterable[np.ndarray] | None = None,
    camera_topic: str | None = None,
    max_images: int = 300,
    seed: int = 0,
    device: str = "auto",
) -> DescriptorNet:
    """A :class:`DescriptorNet` for ``config`` with a pretrained backbone, initialised without training.

    Args:
        config: the architecture.
        bag: frames to fit NetVLAD's centres and a PCA projection on (ignored when not needed).
        images: instead of a bag: a folder of png/jpg images (sorted by name,
            :func:`~vbl_ros.model.image_folder.read_image_folder`), or any iterable of ``(H, W, 3)``
            uint8 RGB arrays (or ``(H, W)`` grey), e.g. a list or an ``(N, H, W, 3)`` array.
        camera_topic: image topic of ``bag``; ``None`` = the contract's centre camera.
        max_images: frames sampled evenly over the bag's topic or the images (all when fewer).
        seed: seed of the random initialisation, the feature subsampling and k-means.
        device: where the backbone runs: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        the network, in eval mode on the CPU.

    Raises:
        ConfigError: NetVLAD or PCA with neither a bag nor images; both given; ``camera_topic``
            with images; ``max_images`` below the frames needed.
        ModelError: fewer frames or images than needed.
        MissingDataError: the bag or its camera topic is absent; the folder has no readable image.
        BadFrameError: an image of ``images`` is not a uint8 RGB or grey array.
    """
    logger.info("initialize_model %s", config)
    if bag is not None and images is not None:
        raise ConfigError("give the frames from a bag (--bag) or from images (--images), not both")
    if images is not None and camera_topic is not None:
        raise ConfigError(f"camera topic {camera_topic!r}: it selects a bag's images; drop it with --images")
    source = bag if bag is not None else images if isinstance(images, (str, Path)) else None
    if not needs_data(config):
        if source is not None:
            logger.info("%s + %s needs no data; %s is not read", config.backbone, config.aggregation, source)
        bag = images = None
    elif bag is None and images is None:
        what = "NetVLAD's k-means centres" if config.aggregation == "netvlad" else "the PCA projection"
        raise ConfigError(
            f"{what} must be fitted on camera frames: give a bag (--bag BAG) or an image folder "
            "(--images FOLDER), e.g. of the mapping run"
        )
    elif isinstance(images, (str, Path)):
        images = read_image_folder(images, max_images=max_images)  # listed now: fails early

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DescriptorNet(config, pretrained=True).eval()
    if config.projection == "linear":
        logger.warning(
            "projection 'linear' (%d -> %d) has a random init and must be trained before use; "
            "'pca' fits a projection without training",
            net.projection.in_dim,
            net.projection.out_dim,
        )
    if bag is None and images is None:
        return net

    extractor = DescriptorExtractor(net, device, warmup=False)
    with torch.inference_mode():
        probe = net.local_features(torch.zeros(1, 3, config.input_height, config.input_width))
    needed = min_frames(config, probe.shape[2] * probe.shape[3])
    why = _why(config)
    if max_images < needed:
        raise ConfigError(f"max_images {max_images}: at least {needed} frames are needed ({why})")
    if bag is not None:
        inputs = _bag_inputs(Path(bag), camera_topic, max_images, needed, why, extractor.transform)
    else:
        assert images is not None
        name = str(source) if source is not None else "images"
        inputs = _image_inputs(images, name, max_images, needed, why, extractor.transform)
    features = _local_features(extractor, inputs)
    logger.info("%d frames -> backbone features %s", len(inputs), tuple(features.shape))

    if config.aggregation == "netvlad":
        assert isinstance(net.aggregation, NetVLAD)
        local = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]).numpy()
        cap = KMEANS_FEATURES_PER_CLUSTER * config.netvlad_clusters
        if len(local) > cap:
            rows = np.sort(np.random.default_rng(seed).choice(len(local), size=cap, replace=False))
            local = local[rows]
        if len(local) < KMEANS_MIN_FEATURES_PER_CLUSTER * config.netvlad_clusters:
            logger.warning(
                "k-means of %d clusters on only %d local features; more frames (--max-images) give "
                "better centres",
                config.netvlad_clusters,
                len(local),
            )
        net.aggregation.init_from_features(local, seed=seed)

    if config.projection == "pca":
        assert isinstance(net.projection, Projection)
        descriptors = _aggregate(net, features)
        net.projection.fit_pca(descriptors, whiten=True)
        logger.info(
            "PCA-whitened projection %d -> %d fitted on %d descriptors",
            descriptors.shape[1],
            config.projection_dim,
            len(descriptors),
        )
    return net.eval()


def _why(config: ModelConfig) -> str:
    reasons = []
    if config.aggregation == "netvlad":
        reasons.append(f"NetVLAD k-means needs {config.netvlad_clusters} local features")
    if config.projection == "pca":
        reasons.append(f"PCA to {config.projection_dim} dims needs more frames than dimensions")
    return "; ".join(reasons)


def init_model(
    out: Path | str,
    config: ModelConfig,
    *,
    bag: Path | str | None = None,
    images: Path | str | Iterable[np.ndarray] | None = None,
    camera_topic: str | None = None,
    max_images: int = 300,
    seed: int = 0,
    device: str = "auto",
    overwrite: bool = False,
) -> Path:
    """:func:`initialize_model` and write the model file ``out`` (``vbl init-model``); return ``out``.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false (checked before any work).
        and what :func:`initialize_model` raises.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; choose another path or pass --overwrite")
    net = initialize_model(
        config,
        bag=bag,
        images=images,
        camera_topic=camera_topic,
        max_images=max_images,
        seed=seed,
        device=device,
    )
    save_model(net, out)
    logger.info("model %s: %d-d descriptors, fingerprint %s", out, net.dim, model_fingerprint(net))
    return out
