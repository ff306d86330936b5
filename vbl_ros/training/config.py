"""``TrainConfig``: everything a ``vbl train`` run depends on, one frozen dataclass validated one way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vbl_ros.errors import ConfigError
from vbl_ros.model.net import ModelConfig

__all__ = ["MINING", "MODALITIES", "OPTIMIZERS", "VARIANTS", "TrainConfig"]

#: ``rgb``: triplet loss alone; ``auxiliary``: + a decoder on the encoder's feature map predicting the
#: modality (dropped from the model file); ``hallucination``: Piasco et al. 2019 (image encoder,
#: decoder G, depth encoder E_D, fused descriptor); ``rgb-baseline``: the hallucination architecture
#: trained without the modality (same parameter count)
VARIANTS = ("rgb", "auxiliary", "hallucination", "rgb-baseline")
MODALITIES = ("depth", "reflectance")
MINING = ("partial", "random")
OPTIMIZERS = ("adam", "adamw")
HALLUCINATION_TRAINING = ("separate", "joint")


@dataclass(frozen=True)
class TrainConfig:
    """A training run (``config/train.yaml`` documents every key).

    Defaults follow the strongest public recipe for this kind of training (NetVLAD's partial hard
    mining: batches of 4 queries, 10 negatives among a random pool of 1000, a descriptor cache
    refreshed every 1000 queries, margin 0.1, Adam at 1e-5 with weight decay 1e-3, the learning rate
    halved every 5 epochs) and Piasco et al. 2019 for the triplets (10 m, 20 deg, 25 m).

    Attributes:
        train_bags: the training drives (at least two: positives come from other drives).
        val_bag, map_bag: validation queries scored against a map drive (recall@1/5/10 within
            ``val_threshold_m``); both or neither.
        camera_topic: the image topic (``None``: the contract's centre camera).
        frame_spacing_m: distance along each drive between sampled frames.
        cache_dir: where frame caches live (``None``: ``frame_cache/`` beside the run folder).
        pos_radius_m, max_heading_deg: a positive is a frame of another drive within this distance
            and heading difference; neg_radius_m: negatives lie farther than this.
        mining: ``partial`` (hard negatives from a random pool, best positive, by cached descriptors)
            or ``random`` (a random positive and random negatives: the baseline).
        margin: the triplet margin (on unit-L2 descriptors, distances not squared).
        num_negatives: negatives per query (at most; partial mining keeps only violating ones).
        negative_pool: random negatives per query among which partial mining picks the hardest.
        cache_refresh_queries: queries between two refreshes of the mining descriptor cache.
        model: the architecture to train (input size etc.); ignored when ``init_model`` is given.
        init_model: a model file (``vbl init-model``, an earlier run) to start from.
        trainable_stages: how many last backbone stages are trained (the others stay frozen).
        variant: one of :data:`VARIANTS`.
        modality: ``depth`` or ``reflectance`` (the side modality of ``auxiliary`` and ``hallucination``).
        side_weight: ``alpha``, the weight of the side-modality L1 loss.
        side_scale: the modality value mapped to 1 (targets are clipped to [0, 1]); ``None``: the
            99th percentile of the training frames' LIDAR returns.
        decoder_width: channels of the decoders' blocks.
        hallucination_training: ``separate`` (G trained by its L1 loss only, as published) or
            ``joint`` (the triplet losses on f_D train G too).
        optimizer, lr, decoder_lr, weight_decay: the optimiser; ``decoder_lr`` for the randomly
            initialised decoders.
        lr_step_epochs, lr_gamma: the learning rate is multiplied by ``lr_gamma`` every
            ``lr_step_epochs`` epochs.
        epochs: passes over the training queries.
        batch_size: queries per optimiser step (the global batch, split across processes).
        cache_batch_size: images per forward pass when computing descriptors.
        amp: mixed precision (CUDA only).
        seed: the run's seed (same seed, same weights).
        device: ``auto``, ``cpu`` or ``cuda``.
        val_threshold_m: success radius of the validation.
        val_every_epochs: validate every so many epochs (and at the last).
        checkpoint_every_steps: also write the ``last`` checkpoint every so many steps (0: per epoch only).
        log_every_steps: scalars to TensorBoard / CSV every so many steps.
    """

    train_bags: tuple[str, ...] = ()
    val_bag: str | None = None
    map_bag: str | None = None
    camera_topic: str | None = None
    frame_spacing_m: float = 5.0
    cache_dir: str | None = None
    pos_radius_m: float = 10.0
    max_heading_deg: float = 20.0
    neg_radius_m: float = 25.0
    mining: str = "partial"
    margin: float = 0.1
    num_negatives: int = 10
    negative_pool: int = 1000
    cache_refresh_queries: int = 1000
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    init_model: str | None = None
    trainable_stages: int = 2
    variant: str = "rgb"
    modality: str = "depth"
    side_weight: float = 1.0
    side_scale: float | None = None
    decoder_width: int = 32
    hallucination_training: str = "separate"
    optimizer: str = "adam"
    lr: float = 1e-5
    decoder_lr: float = 1e-4
    weight_decay: float = 1e-3
    lr_step_epochs: int = 5
    lr_gamma: float = 0.5
    epochs: int = 5
    batch_size: int = 4
    cache_batch_size: int = 16
    amp: bool = True
    seed: int = 0
    device: str = "auto"
    val_threshold_m: float = 25.0
    val_every_epochs: int = 1
    checkpoint_every_steps: int = 100
    log_every_steps: int = 10

    def __post_init__(self) -> None:
        choices = {
            "variant": VARIANTS,
            "modality": MODALITIES,
            "mining": MINING,
            "optimizer": OPTIMIZERS,
            "hallucination_training": HALLUCINATION_TRAINING,
            "device": ("auto", "cpu", "cuda"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} {getattr(self, key)!r}: choose one of {allowed}")
        positive = (
            "frame_spacing_m", "pos_radius_m", "max_heading_deg", "neg_radius_m", "margin", "lr",
            "decoder_lr", "lr_gamma", "val_threshold_m",
        )  # fmt: skip
        for key in positive:
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")
        at_least_one = (
            "num_negatives", "negative_pool", "cache_refresh_queries", "lr_step_epochs", "epochs",
            "batch_size", "cache_batch_size", "val_every_epochs", "log_every_steps",
        )  # fmt: skip
        for key in at_least_one:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.neg_radius_m <= self.pos_radius_m:
            raise ConfigError(
                f"neg_radius_m ({self.neg_radius_m}) must exceed pos_radius_m ({self.pos_radius_m})"
            )
        if self.negative_pool < self.num_negatives:
            raise ConfigError(
                f"negative_pool ({self.negative_pool}) must be >= num_negatives ({self.num_negatives})"
            )
        for key in ("weight_decay", "side_weight", "trainable_stages", "checkpoint_every_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.side_scale is not None and not self.side_scale > 0:
            raise ConfigError(f"side_scale must be > 0 or null, got {self.side_scale}")
        if (self.val_bag is None) != (self.map_bag is None):
            raise ConfigError("validation needs both val_bag and map_bag (or neither)")
        if self.decoder_width < 8 or self.decoder_width % 8:
            raise ConfigError(f"decoder_width must be a positive multiple of 8, got {self.decoder_width}")
        if self.model.side is not None:
            raise ConfigError("model: give the image encoder's config; variant chooses the side branch")

    @property
    def uses_modality(self) -> bool:
        """Whether the variant learns from the side modality (which the bags must then have)."""
        return self.variant in ("auxiliary", "hallucination")

    @property
    def has_validation(self) -> bool:
        return self.val_bag is not None

    def check_bags(self) -> None:
        """Refuse an empty or too short list of training drives (a named error that says what to do)."""
        if len(self.train_bags) < 2:
            raise ConfigError(
                f"train_bags names {len(self.train_bags)} drive(s): triplets pair frames of different "
                "drives of the same route, so name at least two (in the config or with --train-bags)"
            )
