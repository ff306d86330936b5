"""Issue 9 §5: does fine-tuning on GPS triplets help in conditions training never saw, and in a town it never saw?

Simulated drives of one town (seed ``--seed-a``): the map drive overcast; training drives in sun,
dusk, rain and fog; a second dusk drive for validation (picks the best epoch); held-out query drives
at night and in snow that training never sees. A second town (seed ``--seed-b``) is never seen in
training: its own overcast map drive and night and snow queries. For each model: recall@1/5 within
25 m (THE evaluation routine, :func:`vbl_ros.evaluation.evaluate_retrieval`, positions in the map
drive's frame) per held-out condition, for the pretrained default (224x224 and at the training input
size), RGB-only fine-tuning, ``auxiliary`` with depth and with reflectance, ``hallucination`` (depth)
and ``rgb-baseline``. Every run goes through ``vbl_ros.training.train`` with the same config but the
variant, and the same seed.

    .venv/bin/python benchmarks/training_experiment.py            # 300 m route, 2 epochs; 2 CPU cores
    .venv/bin/python benchmarks/training_experiment.py --quick    # 150 m route, 1 epoch
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, write_results

from vbl_ros.config import from_dict, to_dict
from vbl_ros.evaluation import evaluate_retrieval
from vbl_ros.model import DescriptorNet, ModelConfig, load_model
from vbl_ros.model.transforms import InputTransform
from vbl_ros.training import TrainConfig, train
from vbl_ros.training.dataset import FrameDataset, describe
from vbl_ros.training.frames import DriveFrames, cache_drive, frame_set

TOWN_A = ("overcast", "sun", "dusk", "rain", "fog", "dusk", "night", "snow")
ROLES_A = ("map", "train", "train", "train", "train", "val", "heldout", "heldout")
TOWN_B = ("overcast", "night", "snow")
HELD_OUT = ("night", "snow")
MODELS = (
    ("pretrained 224x224", None),
    ("pretrained", None),
    ("rgb", {"variant": "rgb"}),
    ("auxiliary depth", {"variant": "auxiliary", "modality": "depth"}),
    ("auxiliary reflectance", {"variant": "auxiliary", "modality": "reflectance"}),
    ("hallucination depth", {"variant": "hallucination", "modality": "depth"}),
    ("rgb-baseline", {"variant": "rgb-baseline"}),
)

log = logging.getLogger("training_experiment")


def simulate_town(root: Path, seed: int, conditions: tuple[str, ...], route_m: float) -> list[Path]:
    """Simulate and convert (with depth and reflectance maps) one bag per condition."""
    from vbl_ros.robotcar.convert import ConvertConfig, convert_robotcar
    from vbl_ros.sim.simulate import SimConfig, simulate

    bags = [root / f"{i}_{c}" for i, c in enumerate(conditions)]
    if all((b / "metadata.yaml").is_file() for b in bags):
        return bags
    config = dataclasses.replace(
        SimConfig.preset("tiny"), seed=seed, conditions=conditions, route_length_m=route_m,
        block_m=(50.0, 80.0), lms_hz=10.0,
    )  # fmt: skip
    traversals = simulate(root / "sim", config)
    sdk = root / "sim" / "sdk"
    for traversal, bag in zip(traversals, bags, strict=True):
        convert_robotcar(traversal, bag, extrinsics_dir=sdk / "extrinsics", models_dir=sdk / "models",
                         config=ConvertConfig(lidar_points=False))  # fmt: skip
    return bags


def score_town(
    net: DescriptorNet,
    transform: InputTransform,
    ref: DriveFrames,
    queries: dict[str, Path],
    cache_dir: Path,
    spacing_m: float,
) -> dict[str, dict[str, float]]:
    """R@1 and R@5 within 25 m of each query drive (condition -> bag) against the map drive ``ref``,
    by THE evaluation routine (exact search, positions in the map drive's frame)."""
    refs = frame_set([ref], ref)
    kw = {"batch_size": 32, "device": torch.device("cpu")}
    out = {}
    with torch.inference_mode():
        map_desc = describe(net, FrameDataset(refs, transform), np.arange(len(refs)), **kw)
        for condition, bag in queries.items():
            q = frame_set([cache_drive(bag, transform, cache_dir, spacing_m=spacing_m)], ref)
            q_desc = describe(net, FrameDataset(q, transform), np.arange(len(q)), **kw)
            report = evaluate_retrieval(
                q_desc, q.positions, map_desc, refs.positions, ks=(1, 5), threshold_m=25.0
            )
            out[condition] = {
                "R@1": report.recalls[1],
                "R@5": report.recalls[5],
                "queries": report.num_queries,
                "map_frames": len(refs),
            }
    return out


def evaluate(
    net: DescriptorNet, towns: dict[str, tuple[Path, dict[str, Path]]], cache_dir: Path, spacing_m: float
) -> dict[str, dict[str, float]]:
    """R@1 and R@5 within 25 m of each held-out drive against its town's map drive."""
    transform = InputTransform.from_config(net.config)
    net = net.eval()
    out = {}
    for town, (map_bag, queries) in towns.items():
        ref = cache_drive(map_bag, transform, cache_dir, spacing_m=spacing_m)
        for condition, figures in score_town(net, transform, ref, queries, cache_dir, spacing_m).items():
            out[f"{town} {condition}"] = figures
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/vbl_training_experiment"), help="bags, caches, runs"
    )
    parser.add_argument("--quick", action="store_true", help="a 150 m route and 1 epoch")
    parser.add_argument("--route-m", type=float, default=300.0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed-a", type=int, default=11)
    parser.add_argument("--seed-b", type=int, default=12)
    parser.add_argument("--models", default=",".join(name for name, _ in MODELS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("vbl_ros.robotcar", "vbl_ros.sim", "faiss", "vbl_ros.evaluation", "vbl_ros.model.io"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    route_m, epochs = (150.0, 1) if args.quick else (args.route_m, args.epochs)
    work = args.work / ("quick" if args.quick else "full")
    t0 = time.perf_counter()
    bags_a = simulate_town(work / "town_a", args.seed_a, TOWN_A, route_m)
    bags_b = simulate_town(work / "town_b", args.seed_b, TOWN_B, route_m)
    sim_s = time.perf_counter() - t0
    roles = dict(zip(bags_a, ROLES_A, strict=True))
    towns = {
        "seen town": (
            bags_a[0],
            {c: b for b, c in zip(bags_a, TOWN_A, strict=True) if roles[b] == "heldout"},
        ),
        "unseen town": (bags_b[0], {c: b for b, c in zip(bags_b, TOWN_B, strict=True) if c in HELD_OUT}),
    }
    small = {"input_height": 120, "input_width": 160}
    base = {
        "train_bags": [str(b) for b in bags_a if roles[b] == "train"],
        "val_bag": str(next(b for b in bags_a if roles[b] == "val")),
        "map_bag": str(bags_a[0]),
        "frame_spacing_m": 3.0,
        "cache_dir": str(work / "frame_cache"),
        "model": small,
        "num_negatives": 3,
        "negative_pool": 200,
        "cache_refresh_queries": 200,
        "lr": args.lr,
        "decoder_lr": 10 * args.lr,
        "epochs": epochs,
        "lr_step_epochs": 5,
        "batch_size": 4,
        "device": "cpu",
        "amp": False,
        "checkpoint_every_steps": 0,
        "log_every_steps": 10,
    }
    rows, runs = [], {}
    wanted = args.models.split(",")
    for name, change in MODELS:
        if name not in wanted:
            continue
        t = time.perf_counter()
        if change is None:
            net = DescriptorNet(ModelConfig() if "224" in name else ModelConfig(**small))
            train_s, steps, validation = 0.0, 0, {}
        else:
            config = from_dict(TrainConfig, {**base, **change})
            result = train(config, work / "runs" / name.replace(" ", "_"), overwrite=True)
            net = load_model(result.model)
            train_s, steps, validation = time.perf_counter() - t, result.steps, result.validation
            runs[name] = {
                "config": to_dict(config),
                "steps": steps,
                "train_s": round(train_s, 1),
                "validation": validation,
            }
        figures = evaluate(net, towns, work / "frame_cache", 3.0)
        row = {"model": name, "train min": round(train_s / 60, 1), "steps": steps}
        for key, value in figures.items():
            row[f"{key} R@1"] = round(100 * value["R@1"], 1)
            row[f"{key} R@5"] = round(100 * value["R@5"], 1)
        rows.append(row)
        log.info("%s: %s", name, row)
    columns = ["model", "train min", "steps"] + [c for c in rows[0] if c.endswith(("R@1", "R@5"))]
    print(table(rows, columns))
    payload = {
        "machine": machine(),
        "args": vars(args) | {"work": str(args.work)},
        "route_m": route_m,
        "epochs": epochs,
        "simulate_and_convert_s": round(sim_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "rows": rows,
        "runs": runs,
    }
    print(write_results("training_experiment_quick" if args.quick else "training_experiment", payload))


if __name__ == "__main__":
    main()
