"""The ``train`` step: fine-tune the descriptor on GPS triplets from bags, validate, checkpoint, write a model file.

Order (as the anchors do it): seed, run folder (resolved config, log), frames (cached), triplets,
model, optimiser, then per step: refresh the mining cache when due, mine the batch's tuples, one
optimiser step; per epoch: the learning-rate schedule, validation with THE evaluation routine
(:func:`vbl_ros.evaluation.evaluate_retrieval`: recall@1/5/10 within 25 m of the validation drive
against the map drive), ``last`` and ``best`` checkpoints. The result is a model file in the usual
format (``RUN_DIR/model.pt``, the best by validation recall@1) that ``vbl build-map``, the node and
the evaluation load unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vbl_ros.config import to_dict
from vbl_ros.errors import ConfigError, MissingDataError, VblError
from vbl_ros.model.extractor import resolve_device
from vbl_ros.model.io import model_fingerprint, save_model
from vbl_ros.model.transforms import InputTransform
from vbl_ros.training.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from vbl_ros.training.config import TrainConfig
from vbl_ros.training.dataset import FrameDataset, describe, side_scale
from vbl_ros.training.distributed import Distributed
from vbl_ros.training.frames import DriveFrames, FrameSet, cache_drive, frame_set
from vbl_ros.training.losses import masked_l1_sum, triplet_losses
from vbl_ros.training.mining import MiningStats, TrainingTuple, TupleBatch, mine
from vbl_ros.training.run import (
    LAST,
    RunLog,
    check_run_dir,
    load_run_config,
    prepare_run_dir,
    write_json_atomic,
)
from vbl_ros.training.triplets import Triplets, find_triplets
from vbl_ros.training.variants import TrainingNet, build_training_net, freeze_batchnorm

__all__ = ["TrainResult", "train"]

logger = logging.getLogger(__name__)

BEST = "checkpoints/best.pt"
BEST_MODEL = "checkpoints/best_model.pt"
MODEL = "model.pt"


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) run wrote.

    Attributes:
        model: ``RUN_DIR/model.pt`` (``None`` when the run stopped before its end: resume it).
        checkpoint: the ``last`` checkpoint.
        validation: the best validation figures (recall@N, ...), empty without validation.
        steps: optimiser steps done in all.
    """

    model: Path | None
    checkpoint: Path
    validation: dict[str, float]
    steps: int


@dataclass
class _State:
    """Where the run is: saved in every checkpoint."""

    epoch: int = 0
    step: int = 0  # batches done in the current epoch
    global_step: int = 0
    since_refresh: int = 0
    cache: np.ndarray | None = None
    side_scale: float = 1.0
    best_recall: float = -math.inf
    best: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class _Data:
    train: FrameDataset
    triplets: Triplets
    val: FrameDataset | None
    map: FrameDataset | None


def _on_main(world: Distributed, work: Any) -> None:
    """Run ``work()`` on rank 0 while the others wait; a failure there is raised on every rank."""
    error: VblError | None = None
    if world.is_main:
        try:
            work()
        except VblError as err:
            error = err
    message = world.broadcast_object(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if message is not None:
        raise VblError(f"rank 0 failed: {message}")


def _load_data(config: TrainConfig, transform: InputTransform, cache_dir: Path, world: Distributed) -> _Data:
    modalities = (config.modality,) if config.uses_modality else ()
    train_bags = [Path(b) for b in config.train_bags]
    extra = [Path(config.val_bag), Path(config.map_bag)] if config.has_validation else []  # type: ignore[arg-type]

    def cache(bag: Path, mods: tuple[str, ...]) -> DriveFrames:
        return cache_drive(
            bag, transform, cache_dir, spacing_m=config.frame_spacing_m, camera_topic=config.camera_topic,
            modalities=mods,
        )  # fmt: skip

    def build_all() -> None:
        for bag in train_bags:
            cache(bag, modalities)
        for bag in extra:
            cache(bag, ())

    _on_main(world, build_all)  # rank 0 decodes; the others then read the caches
    drives = [cache(bag, modalities) for bag in train_bags]
    reference = cache(extra[1], ()) if extra else drives[0]
    train_frames = frame_set(drives, reference)
    triplets = find_triplets(
        train_frames.positions,
        train_frames.headings,
        train_frames.drive,
        pos_radius_m=config.pos_radius_m,
        max_heading_deg=config.max_heading_deg,
        neg_radius_m=config.neg_radius_m,
    )
    if len(triplets) < config.batch_size:
        raise MissingDataError(
            f"only {len(triplets)} of {len(train_frames)} training frames have a positive (a frame of another "
            f"drive within {config.pos_radius_m:g} m and {config.max_heading_deg:g} deg) and a negative, fewer "
            f"than batch_size {config.batch_size}: lower frame_spacing_m or batch_size, or add drives of the same route"
        )
    scale = 1.0
    if config.uses_modality:
        scale = config.side_scale or side_scale(train_frames, config.modality)
    train = FrameDataset(train_frames, transform, config.modality if config.uses_modality else None, scale)
    val = map_ = None
    if extra:
        val_frames: FrameSet = frame_set([cache(extra[0], ())], reference)
        map_frames: FrameSet = frame_set([reference], reference)
        _check_overlap(val_frames, map_frames, config)
        val, map_ = FrameDataset(val_frames, transform), FrameDataset(map_frames, transform)
    return _Data(train, triplets, val, map_)


def _check_overlap(val: FrameSet, map_: FrameSet, config: TrainConfig) -> None:
    from vbl_ros.evaluation.metrics import nearest_distances

    nearest = nearest_distances(map_.positions[:, :2], val.positions[:, :2])
    if not (nearest <= config.pos_radius_m).any():
        raise MissingDataError(
            f"{config.val_bag}: no validation frame lies within {config.pos_radius_m:g} m of the map drive "
            f"{config.map_bag} (nearest {nearest.min():.0f} m): choose a validation drive of the map's route"
        )


def _optimizer(config: TrainConfig, net: TrainingNet) -> torch.optim.Optimizer:
    decoder = {id(p) for p in net.decoder_parameters()}
    groups = [
        {
            "params": [p for p in net.parameters() if p.requires_grad and id(p) not in decoder],
            "lr": config.lr,
        },
        {
            "params": [p for p in net.parameters() if p.requires_grad and id(p) in decoder],
            "lr": config.decoder_lr,
        },
    ]
    groups = [g for g in groups if g["params"]]
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, weight_decay=config.weight_decay)


def _set_training(net: TrainingNet) -> None:
    net.train()
    freeze_batchnorm(net)


def _refresh_cache(
    net: TrainingNet, data: _Data, config: TrainConfig, device: torch.device, world: Distributed
) -> np.ndarray:
    """Every training frame's descriptor by the current weights, computed in shares and gathered."""
    net.eval()
    try:
        shard = world.shard(len(data.train))
        rows = describe(
            net.net, data.train, shard, batch_size=config.cache_batch_size, device=device, autocast=config.amp
        )
    finally:
        _set_training(net)
    return world.gather_rows(rows, len(data.train))


def _validate(net: TrainingNet, data: _Data, config: TrainConfig, device: torch.device) -> dict[str, float]:
    from vbl_ros.evaluation import evaluate_retrieval

    assert data.val is not None and data.map is not None
    net.eval()
    try:
        kw: dict[str, Any] = {"batch_size": config.cache_batch_size, "device": device, "autocast": config.amp}
        queries = describe(net.net, data.val, np.arange(len(data.val)), **kw)
        references = describe(net.net, data.map, np.arange(len(data.map)), **kw)
    finally:
        _set_training(net)
    report = evaluate_retrieval(
        queries,
        data.val.frames.positions,
        references,
        data.map.frames.positions,
        ks=(1, 5, 10),
        threshold_m=config.val_threshold_m,
    )
    logger.info("validation: %s", report.summary())
    return {k: float(v) for k, v in report.to_dict().items()}


def _train_step(
    model: nn.Module,
    net: TrainingNet,
    tuples: list[TrainingTuple],
    data: _Data,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    world: Distributed,
) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray] | None]:
    """One optimiser step on this process's share of the global batch's tuples.

    Every term is a sum over this share divided by the global count (tuples, or pixels with a
    return), times the number of processes (DDP averages gradients): the step equals one process's
    on the whole batch. A process without a tuple runs one with weight 0, so that every process
    takes part in the gradient reduction.
    """
    share = np.array_split(np.arange(len(tuples)), world.world_size)[world.rank]
    weight = 1.0 if len(share) else 0.0
    batch = TupleBatch.from_tuples([tuples[i] for i in share] if len(share) else tuples[:1])
    as_tensor = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    query, positive = as_tensor(batch.query), as_tensor(batch.positive)
    negative, pair_tuple = as_tensor(batch.negative), as_tensor(batch.pair_tuple)
    x = data.train.inputs(batch.frames, device)
    use_amp = config.amp and device.type == "cuda"
    with torch.autocast(device.type, enabled=use_amp):
        outputs = model(x)
    terms: dict[str, torch.Tensor] = {}
    for key in net.descriptor_keys:
        per_tuple = triplet_losses(outputs[key].float(), query, positive, negative, pair_tuple, config.margin)
        terms[f"loss/triplet_{key}"] = per_tuple.sum() * weight / len(tuples)
    side_images = None
    if net.learns_side_map:
        target = data.train.targets(batch.frames, device)
        total, count = masked_l1_sum(outputs["side_map"].float(), target)
        pixels = world.sum(count * weight)
        terms["loss/side_l1"] = total * weight / max(pixels, 1.0)
        side_images = (
            outputs["side_map"][0, 0].detach().float().cpu().numpy(),
            target[0, 0].cpu().numpy(),
        )
    weights = {k: (config.side_weight if k == "loss/side_l1" else 1.0) for k in terms}
    loss = sum(weights[k] * v for k, v in terms.items())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss * world.world_size).backward()  # type: ignore[union-attr]
    scaler.step(optimizer)
    scaler.update()
    values = {k: world.sum(float(v.detach())) for k, v in terms.items()}
    values["loss/total"] = sum(weights[k] * v for k, v in values.items())
    return values, side_images


def _checkpoint(
    path: Path, net: TrainingNet, optimizer: Any, scheduler: Any, scaler: Any, rng: np.random.Generator,
    state: _State, config: TrainConfig,
) -> None:  # fmt: skip
    save_checkpoint(
        path,
        {
            "config": to_dict(config),
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
            "mining_rng": rng.bit_generator.state,
            "epoch": state.epoch,
            "step": state.step,
            "global_step": state.global_step,
            "since_refresh": state.since_refresh,
            "cache": None if state.cache is None else torch.from_numpy(state.cache),
            "side_scale": state.side_scale,
            "best_recall": state.best_recall,
            "best": state.best,
            "history": state.history,
        },
    )


def _restore(
    path: Path, net: TrainingNet, optimizer: Any, scheduler: Any, scaler: Any, rng: np.random.Generator
) -> _State:
    payload = load_checkpoint(path)
    net.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    restore_rng(payload["rng"])
    rng.bit_generator.state = payload["mining_rng"]
    cache = payload["cache"]
    return _State(
        epoch=payload["epoch"],
        step=payload["step"],
        global_step=payload["global_step"],
        since_refresh=payload["since_refresh"],
        cache=None if cache is None else cache.numpy(),
        side_scale=payload["side_scale"],
        best_recall=payload["best_recall"],
        best=dict(payload["best"]),
        history=list(payload["history"]),
    )


def _log_mining(log: RunLog, stats: MiningStats, step: int) -> None:
    log.scalar("mining/tuples_per_query", stats.tuples / max(stats.queries, 1), step)
    log.scalar("mining/negatives_per_tuple", stats.negatives / max(stats.tuples, 1), step)
    if not math.isnan(stats.mean_violation):
        log.scalar("mining/mean_violation", stats.mean_violation, step)


def train(
    config: TrainConfig | None,
    out: Path | str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    max_steps: int | None = None,
) -> TrainResult:
    """Fine-tune a descriptor on GPS triplets from bags; write the run folder ``out``.

    Args:
        config: the run's configuration (``None`` with ``resume``: the run's own).
        out: the run folder.
        resume: continue the run at ``out`` exactly where its ``last`` checkpoint left it.
        overwrite: replace an existing run folder at ``out``.
        max_steps: stop (with a ``last`` checkpoint) once the run has done this many optimiser steps
            in all; ``--resume`` continues it.

    Returns:
        What the run wrote (the model file ``out/model.pt`` once finished).

    Raises:
        OutputExistsError: ``out`` exists and neither ``resume`` nor ``overwrite`` is given.
        ConfigError: an invalid config, fewer than two training drives, or a config that differs
            from the run's own on ``resume``.
        MissingDataError: a bag, topic or side modality missing; too few frames for a batch; a
            validation drive away from the map drive.
        FrameMismatchError: drives whose frames cannot be related (no UTM origin, another zone).
    """
    out = Path(out)
    check_run_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        stored = load_run_config(out)
        if config is not None and config != stored:
            raise ConfigError(
                f"{out}: --resume continues the run with its own config.yaml; do not pass another"
            )
        config = stored
    if config is None:
        raise ConfigError("train needs a config (or resume=True to continue a run)")
    config.check_bags()
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
    device = resolve_device(config.device)
    world = Distributed.from_env(device)
    if world.enabled and device.type == "cuda":
        device = torch.device(f"cuda:{world.local_rank}")
    try:
        return _run(config, out, device, world, resume=resume, overwrite=overwrite, max_steps=max_steps)
    finally:
        world.close()


def _run(
    config: TrainConfig, out: Path, device: torch.device, world: Distributed, *, resume: bool, overwrite: bool,
    max_steps: int | None,
) -> TrainResult:  # fmt: skip
    """Model and data first (bad input fails before the run folder is touched), then the run folder."""
    logger.info(
        "vbl train -> %s (%s, %d process(es), device %s)%s",
        out,
        config.variant,
        world.world_size,
        device,
        " resumed" if resume else "",
    )
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    net = build_training_net(config).to(device)
    transform = InputTransform.from_config(net.net.config)
    cache_dir = Path(config.cache_dir) if config.cache_dir else out.resolve().parent / "frame_cache"
    data = _load_data(config, transform, cache_dir, world)
    world.barrier()  # every rank has checked the run folder before rank 0 touches it
    _on_main(world, lambda: prepare_run_dir(out, config, resume=resume, overwrite=overwrite))
    log = RunLog(out, enabled=world.is_main)
    try:
        logger.info("config: %s", config)
        return _loop(config, out, device, world, log, net, data, resume=resume, max_steps=max_steps)
    finally:
        log.close()


def _loop(
    config: TrainConfig, out: Path, device: torch.device, world: Distributed, log: RunLog, net: TrainingNet,
    data: _Data, *, resume: bool, max_steps: int | None,
) -> TrainResult:  # fmt: skip
    optimizer = _optimizer(config, net)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    rng = np.random.default_rng([config.seed, 1])
    if resume:
        state = _restore(out / LAST, net, optimizer, scheduler, scaler, rng)
        logger.info(
            "resumed at epoch %d, step %d (%d steps done)", state.epoch, state.step, state.global_step
        )
    else:
        state = _State(side_scale=data.train.scale)
    data = dataclasses.replace(data, train=dataclasses.replace(data.train, scale=state.side_scale))
    if config.uses_modality:
        logger.info("%s targets: value / %.4g, clipped to [0, 1]", config.modality, state.side_scale)
    model: nn.Module = net
    if world.enabled:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    _set_training(net)

    def save(path: str) -> None:
        if world.is_main:
            _checkpoint(out / path, net, optimizer, scheduler, scaler, rng, state, config)

    def validate() -> None:
        if data.val is None:
            return
        figures: dict[str, float] | None = _validate(net, data, config, device) if world.is_main else None
        figures = world.broadcast_object(figures)  # type: ignore[assignment]
        assert figures is not None
        state.history.append({"epoch": float(state.epoch), **figures})
        for k in ("recall@1", "recall@5", "recall@10"):
            log.scalar(f"val/{k}", figures[k], state.global_step)
        if figures["recall@1"] > state.best_recall:
            state.best_recall, state.best = figures["recall@1"], figures
            if world.is_main:
                save_model(net.net, out / BEST_MODEL)
            save(BEST)

    if not resume and state.global_step == 0:
        validate()  # the starting model, epoch 0: "best" until training beats it
    stopped = False
    while state.epoch < config.epochs and not stopped:
        order = np.random.default_rng([config.seed, 2, state.epoch]).permutation(len(data.triplets))
        batches = [
            order[i : i + config.batch_size]
            for i in range(0, len(order) - config.batch_size + 1, config.batch_size)
        ]
        stopped = _epoch(
            config,
            model,
            net,
            data,
            batches,
            state,
            rng,
            optimizer,
            scaler,
            device,
            world,
            log,
            save,
            max_steps,
        )
        if stopped:
            break
        scheduler.step()
        state.epoch += 1
        state.step = 0
        log.scalar("lr", optimizer.param_groups[0]["lr"], state.global_step)
        if state.epoch % config.val_every_epochs == 0 or state.epoch == config.epochs:
            validate()
        save(LAST)
        log.flush()
    world.barrier()
    if stopped:
        logger.info("stopped after %d steps; continue with --resume %s", state.global_step, out)
        return TrainResult(None, out / LAST, state.best, state.global_step)
    model_path = out / MODEL
    if world.is_main:
        if data.val is not None and (out / BEST_MODEL).is_file():
            (out / BEST_MODEL).replace(model_path)
        else:
            save_model(net.net, model_path)
        from vbl_ros.model.io import load_model

        fingerprint = model_fingerprint(load_model(model_path))
        write_json_atomic(
            out / "result.json",
            {"model": str(model_path), "fingerprint": fingerprint, "validation": state.best, "history": state.history,
             "steps": state.global_step, "epochs": state.epoch, "variant": config.variant},
        )  # fmt: skip
        logger.info("model %s (fingerprint %s); best validation %s", model_path, fingerprint[:12], state.best)
    world.barrier()
    return TrainResult(model_path, out / LAST, state.best, state.global_step)


def _epoch(
    config: TrainConfig, model: nn.Module, net: TrainingNet, data: _Data, batches: list[np.ndarray], state: _State,
    rng: np.random.Generator, optimizer: Any, scaler: Any, device: torch.device, world: Distributed, log: RunLog,
    save: Any, max_steps: int | None,
) -> bool:  # fmt: skip
    """The rest of the current epoch from ``state.step``; True when ``max_steps`` stopped it."""
    from tqdm import tqdm

    bar = tqdm(
        total=len(batches), initial=state.step, unit="step", desc=f"epoch {state.epoch + 1}/{config.epochs}",
        disable=None if world.is_main else True,
    )  # fmt: skip
    try:
        while state.step < len(batches):
            if config.mining == "partial" and (
                state.cache is None or state.since_refresh >= config.cache_refresh_queries
            ):
                state.cache = _refresh_cache(net, data, config, device, world)
                state.since_refresh = 0
            batch = batches[state.step]
            tuples, stats = mine(
                data.triplets, batch, rng, mode=config.mining, num_negatives=config.num_negatives,
                negative_pool=config.negative_pool, margin=config.margin, cache=state.cache,
            )  # fmt: skip
            state.since_refresh += len(batch)
            values: dict[str, float] = {}
            side_images = None
            if tuples:
                values, side_images = _train_step(
                    model, net, tuples, data, config, optimizer, scaler, device, world
                )
            state.step += 1
            state.global_step += 1
            bar.update(1)
            if values:
                bar.set_postfix(loss=f"{values['loss/total']:.4f}")
            if state.global_step % config.log_every_steps == 0 or state.step == len(batches):
                for name, value in values.items():
                    log.scalar(name, value, state.global_step)
                _log_mining(log, stats, state.global_step)
                if side_images is not None:
                    log.image("side/predicted", side_images[0], state.global_step)
                    log.image("side/lidar", side_images[1], state.global_step)
            if config.checkpoint_every_steps and state.global_step % config.checkpoint_every_steps == 0:
                save(LAST)
            if max_steps is not None and state.global_step >= max_steps:
                save(LAST)
                return True
    finally:
        bar.close()
    return False
