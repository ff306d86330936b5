"""The ``vbl`` command line: each subcommand parses its arguments and forwards to a core function.

vbl simulate OUT_DIR [--preset tiny|demo]
vbl convert robotcar TRAVERSAL_DIR OUT_BAG --extrinsics DIR --models DIR
vbl init-model OUT [--config MODEL_YAML] [--bag BAG | --images FOLDER] [--aggregation gem|netvlad] [--projection ...]
vbl build-map BAG [BAG ...] --out MAP [--overwrite | --add] [--model MODEL | --adapt] [--spacing M] [--index flat|pq|ivf|hnsw] [--runtime R] [--config MAP_YAML]
vbl export MODEL --format onnx|torchscript --out FILE [--overwrite]
vbl train [--config TRAIN_YAML] --out RUN_DIR [--train-bags BAG ...] [--val-bag BAG --map-bag BAG] [--overwrite] | --resume RUN_DIR
vbl demo [--out DIR]
vbl evaluate --map MAP [--model M] --out REPORT_DIR [--offline] [--use-odometry] [--rate X] [--threshold M] [--runtime R] [--precision P] QUERY_BAG...
vbl evaluate --compare REPORT_DIR... --out DIR
vbl repair-map MAP

Every error a user can cause (a path, a file's content, a config value, a full disk, a permission,
an interrupted earlier run) ends in a one-line message naming the error and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vbl_ros.bags import check_bags
from vbl_ros.config import load_yaml
from vbl_ros.errors import OutputExistsError, VblError
from vbl_ros.export.metadata import FILE_FORMATS
from vbl_ros.export.runtimes import PRECISIONS, RUNTIMES
from vbl_ros.files import check_output, output_error, tree_size
from vbl_ros.mapping.indexes import INDEXES

__all__ = ["main"]

log = logging.getLogger("vbl")

MIB = 2**20


def _override(base: Any, **overrides: Any) -> Any:
    """``base`` with the command line's explicit values (those not ``None``) on top."""
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _config(cls: type, path: Path | None, **overrides: Any) -> Any:
    """``cls`` from a YAML file (or its defaults), with the command line's explicit values on top."""
    return _override(load_yaml(cls, path) if path is not None else cls(), **overrides)


def _simulate(args: argparse.Namespace) -> None:
    from vbl_ros.sim.simulate import SimConfig, simulate

    base = SimConfig.preset(args.preset) if args.config is None else load_yaml(SimConfig, args.config)
    config = _override(base, seed=args.seed, save_depth=args.save_depth or None)
    check_output(args.out_dir, (16 if args.preset == "tiny" else 256) * MIB, "simulated traversals")
    for folder in simulate(args.out_dir, config):
        print(folder)


def _convert_robotcar(args: argparse.Namespace) -> None:
    from vbl_ros.robotcar.convert import ConvertConfig, convert_robotcar_report

    config = _config(
        ConvertConfig,
        args.config,
        storage=args.storage,
        image_encoding=args.image_encoding,
        cameras=tuple(args.cameras) if args.cameras else None,
        side_modality=False if args.no_side_modality else None,
    )
    cameras = [args.traversal_dir / c for c in config.cameras]
    raw = config.image_encoding != "compressed"
    check_output(args.out_bag, (4 if raw else 1) * tree_size(cameras) + 16 * MIB, "bag")
    report = convert_robotcar_report(
        args.traversal_dir,
        args.out_bag,
        extrinsics_dir=args.extrinsics,
        models_dir=args.models,
        config=config,
    )
    print(report.summary())


def _init_model(args: argparse.Namespace) -> None:
    from vbl_ros.model import ModelConfig, init_model, load_model, model_fingerprint

    config = _config(
        ModelConfig,
        args.config,
        aggregation=args.aggregation,
        netvlad_clusters=args.clusters,
        projection=args.projection,
        projection_dim=args.dim,
    )
    check_bags([] if args.bag is None else [args.bag])
    check_output(args.out, 64 * MIB, "model file")
    out = init_model(
        args.out,
        config,
        bag=args.bag,
        images=args.images,
        camera_topic=args.camera_topic,
        max_images=args.max_images,
        seed=args.seed,
        device=args.device,
        overwrite=args.overwrite,
    )
    print(out)
    print(f"fingerprint {model_fingerprint(load_model(out))}")


def _build_map(args: argparse.Namespace) -> None:
    from vbl_ros.mapping import MapConfig, build_map, index_config
    from vbl_ros.mapping.adapt import AdaptConfig

    config = _config(MapConfig, args.config, spacing_m=args.spacing, runtime=args.runtime)
    if args.adapt and config.adapt is None:  # --config's adapt settings stay
        config = dataclasses.replace(config, adapt=AdaptConfig())
    if args.index is not None and args.index != config.index.kind:  # the same kind keeps the file's settings
        config = dataclasses.replace(config, index=index_config(args.index))
    check_bags(args.bags)
    check_output(args.out, MIB + tree_size(args.bags) // 50, "map")
    print(
        build_map(
            args.bags, args.out, model=args.model, config=config, overwrite=args.overwrite, add=args.add
        )
    )


def _export(args: argparse.Namespace) -> None:
    from vbl_ros.export import export_model, read_metadata

    if args.out.exists() and not args.overwrite:  # before loading the model
        raise OutputExistsError(f"{args.out}: exists; choose another --out, or --overwrite it")
    check_output(args.out, 64 * MIB, "exported model")
    out = export_model(args.model, args.out, file_format=args.format, overwrite=args.overwrite)
    metadata = read_metadata(out)
    print(out)
    print(
        f"fingerprint {metadata.fingerprint}; input (N, {metadata.height}, {metadata.width}, 3) uint8 RGB "
        f"(NHWC) -> descriptors (N, {metadata.dim}) float32"
    )


def _train(args: argparse.Namespace) -> None:
    from vbl_ros.training import TrainConfig, train

    config = None
    if args.resume is None:
        config = _config(
            TrainConfig,
            args.config,
            train_bags=tuple(str(b) for b in args.train_bags) if args.train_bags else None,
            val_bag=None if args.val_bag is None else str(args.val_bag),
            map_bag=None if args.map_bag is None else str(args.map_bag),
            variant=args.variant,
            epochs=args.epochs,
            device=args.device,
        )
    bags = (
        [] if config is None else [Path(b) for b in (*config.train_bags, config.val_bag, config.map_bag) if b]
    )
    check_bags(bags)
    target = (
        args.out if args.resume is None else args.resume / "checkpoints" / "last.pt"
    )  # resume writes inside
    check_output(target, 256 * MIB + tree_size(bags) // 2, "training run")
    result = train(
        config,
        args.resume if args.resume is not None else args.out,
        resume=args.resume is not None,
        overwrite=args.overwrite,
        max_steps=args.max_steps,
    )
    if result.model is None:
        print(
            f"stopped after {result.steps} steps; continue with: vbl train --resume {result.checkpoint.parent.parent}"
        )
        return
    print(result.model)
    if result.validation:
        v = result.validation
        print(
            f"validation (best): recall@1 {100 * v['recall@1']:.1f} %, recall@5 {100 * v['recall@5']:.1f} %, "
            f"recall@10 {100 * v['recall@10']:.1f} % within {v['threshold_m']:g} m"
        )


def _demo(args: argparse.Namespace) -> None:
    from vbl_ros.ros.demo import DemoConfig, run_demo

    config = _config(DemoConfig, args.config)
    check_output(args.out, 512 * MIB, "demo folder")
    run_demo(args.out, config)


def _evaluate(args: argparse.Namespace) -> None:
    from vbl_ros.errors import ConfigError
    from vbl_ros.evaluation import load_report
    from vbl_ros.pipelines.evaluate import EvaluateConfig, compare_reports, evaluate

    if args.compare:
        if args.map is not None or args.bags:
            raise ConfigError("--compare takes report folders only: drop --map and the query bags")
        check_output(args.out, MIB, "comparison")
        print(compare_reports(args.compare, args.out, overwrite=args.overwrite) / "compare.md")
        return
    if args.map is None or not args.bags:
        raise ConfigError(
            "vbl evaluate needs --map MAP and at least one QUERY_BAG (or --compare REPORT_DIR...)"
        )
    config = _config(
        EvaluateConfig,
        args.config,
        offline=args.offline or None,
        rate=args.rate,
        device=args.device,
        params_file=None if args.params is None else str(args.params),
        camera_topic=args.camera_topic,
        use_odometry=args.use_odometry or None,
        runtime=args.runtime,
        precision=args.precision,
    )
    if config.offline and args.rate is not None:
        raise ConfigError("--rate sets the live replay's pace; --offline runs as fast as it goes: drop one")
    if args.threshold is not None:
        config = dataclasses.replace(
            config, evaluation=dataclasses.replace(config.evaluation, threshold_m=args.threshold)
        )
    command = ["vbl evaluate", "--map", str(args.map), "--out", str(args.out)]
    command += [] if args.model is None else ["--model", str(args.model)]
    command += ["--offline"] if config.offline else ["--rate", f"{config.rate:g}"]
    command += ["--use-odometry"] if config.use_odometry else []
    command += [] if config.runtime is None else ["--runtime", config.runtime]
    command += [] if config.precision is None else ["--precision", config.precision]
    command += [f"--threshold {config.evaluation.threshold_m:g}", *map(str, args.bags)]
    check_bags(args.bags)
    check_output(args.out, 16 * MIB, "report")
    out = evaluate(
        args.map,
        args.bags,
        args.out,
        model=args.model,
        config=config,
        overwrite=args.overwrite,
        meta={"command": " ".join(command)},
    )
    report = load_report(out)
    for name, query in {**report.queries, "all": report.all}.items():
        print(f"{name}: {query.summary()}")
    print(out / "report.md")


def _repair_map(args: argparse.Namespace) -> None:
    from vbl_ros.mapping.store import KeyframeMap, recover_map

    done = recover_map(args.map)
    kmap = KeyframeMap.load(args.map)
    print(f"{args.map}: {'repaired' if done else 'nothing to repair'}; {kmap!r} loads")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vbl", description="Visual-based localization for ROS 2.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="render simulated RobotCar traversals")
    simulate.add_argument(
        "out_dir", type=Path, help="folder to write the traversals and a simulated SDK into"
    )
    simulate.add_argument("--preset", choices=("tiny", "demo"), default="demo", help="size of the simulation")
    simulate.add_argument("--seed", type=int, help="random seed (the same seed gives the same traversals)")
    simulate.add_argument("--save-depth", action="store_true", help="also save the renderer's depth maps")
    simulate.add_argument("--config", type=Path, help="a YAML SimConfig instead of a preset")
    simulate.set_defaults(func=_simulate)

    convert = commands.add_parser("convert", help="convert a dataset into ROS 2 bags")
    sources = convert.add_subparsers(dest="source", required=True)
    robotcar = sources.add_parser("robotcar", help="one Oxford RobotCar traversal folder -> one rosbag2 bag")
    robotcar.add_argument("traversal_dir", type=Path, help="e.g. 2014-12-09-13-21-02/")
    robotcar.add_argument("out_bag", type=Path, help="the bag folder to create (must not exist)")
    robotcar.add_argument("--extrinsics", type=Path, required=True, help="your RobotCar SDK's extrinsics/")
    robotcar.add_argument("--models", type=Path, required=True, help="your RobotCar SDK's models/")
    robotcar.add_argument("--storage", choices=("mcap", "sqlite3"), help="bag storage (default mcap)")
    robotcar.add_argument(
        "--image-encoding",
        choices=("compressed", "bayer_gbrg8", "rgb8"),
        help="original PNG bytes as CompressedImage (default), or a raw Image",
    )
    robotcar.add_argument(
        "--cameras",
        nargs="+",
        help="image folders to convert, e.g. stereo/centre stereo/left mono_rear (default stereo/centre)",
    )
    robotcar.add_argument(
        "--no-side-modality", action="store_true", help="skip the LIDAR depth and reflectance maps"
    )
    robotcar.add_argument("--config", type=Path, help="a YAML ConvertConfig")
    robotcar.set_defaults(func=_convert_robotcar)

    init = commands.add_parser(
        "init-model", help="write a model file: pretrained backbone, NetVLAD/PCA fitted on a bag or images"
    )
    init.add_argument("out", type=Path, help="the model file to write, e.g. models/netvlad64_lite0.pt")
    init.add_argument("--config", type=Path, help="a YAML ModelConfig (e.g. models/*.yaml)")
    frames = init.add_mutually_exclusive_group()
    frames.add_argument("--bag", type=Path, help="frames for NetVLAD's k-means and PCA (not needed for GeM)")
    frames.add_argument(
        "--images",
        type=Path,
        metavar="FOLDER",
        help="instead of a bag: a folder of png/jpg camera images (RGB or grey), sorted by name",
    )
    init.add_argument("--camera-topic", help="image topic of the bag (default: the centre camera)")
    init.add_argument("--aggregation", choices=("gem", "netvlad"), help="aggregation (default gem)")
    init.add_argument("--clusters", type=int, help="NetVLAD clusters K (default 64)")
    init.add_argument(
        "--projection", choices=("none", "pca", "linear"), help="projection after aggregation (default none)"
    )
    init.add_argument("--dim", type=int, help="projection output dimension")
    init.add_argument(
        "--max-images",
        type=int,
        default=300,
        help="frames sampled evenly from the bag or folder (default 300)",
    )
    init.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    init.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    init.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    init.set_defaults(func=_init_model)

    build_map = commands.add_parser(
        "build-map",
        help="build a keyframe map from bags (in the first bag's frame, through their UTM origins)",
    )
    build_map.add_argument(
        "bags",
        type=Path,
        nargs="+",
        metavar="BAG",
        help="bags with /ins/odometry and a camera, e.g. from 'vbl convert'",
    )
    build_map.add_argument("--out", type=Path, required=True, help="the map folder to create")
    replace = build_map.add_mutually_exclusive_group()
    replace.add_argument(
        "--overwrite", action="store_true", help="replace an existing map at --out (atomically)"
    )
    replace.add_argument(
        "--add",
        action="store_true",
        help="add the bags' keyframes to the map at --out, in its frame (atomically)",
    )
    build_map.add_argument("--model", type=Path, help="a model file (default: the embedded pretrained model)")
    build_map.add_argument(
        "--adapt",
        action="store_true",
        help="fit a model to the map's own keyframes (NetVLAD centres, PCA whitening when there are "
        "enough) and save it in the map (MAP/model.pt): the node and 'vbl evaluate' then load it "
        "without --model; settings: 'adapt: {clusters: 64, pca_dim: 256}' in --config",
    )
    build_map.add_argument("--spacing", type=float, help="metres between keyframes")
    build_map.add_argument(
        "--index",
        choices=tuple(INDEXES),
        help="index kind, with its default settings: flat = exact (default); pq = codes + exact "
        "re-ranking, for large maps (> ~100k); settings: 'index: {kind: pq, candidates: 256}' in --config",
    )
    build_map.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="descriptor runtime (default auto: torch for a model file, openvino/onnxruntime/tensorrt for an "
        "exported .onnx); an ONNX runtime with a model file exports it first",
    )
    build_map.add_argument("--config", type=Path, help="a YAML MapConfig")
    build_map.set_defaults(func=_build_map)

    export = commands.add_parser(
        "export",
        help="write a model's inference network (normalisation included) as ONNX or TorchScript",
        description="Input: (N, H, W, 3) uint8 RGB images resized to the model's input size (NHWC); "
        "output: (N, D) float32 unit-L2 descriptors. The model's fingerprint and config are stored in the "
        "file's metadata, so maps built with the model file accept the exported one.",
    )
    export.add_argument(
        "model", type=Path, nargs="?", help="a vbl model file (default: the embedded pretrained model)"
    )
    export.add_argument("--format", choices=FILE_FORMATS, default="onnx", help="file format (default onnx)")
    export.add_argument("--out", type=Path, required=True, help="the file to write, e.g. model.onnx")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    export.set_defaults(func=_export)

    training = commands.add_parser(
        "train",
        help="fine-tune the descriptor on GPS triplets from bags (optionally with LIDAR depth)",
        description="Runs on several GPUs or machines with torchrun: "
        "'torchrun --nproc_per_node N -m vbl_ros.cli train ...'.",
    )
    training.add_argument("--config", type=Path, help="a YAML TrainConfig (e.g. config/train.yaml)")
    run = training.add_mutually_exclusive_group(required=True)
    run.add_argument("--out", type=Path, help="the run folder to create")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    training.add_argument("--train-bags", type=Path, nargs="+", metavar="BAG", help="training drives (>= 2)")
    training.add_argument("--val-bag", type=Path, metavar="BAG", help="validation drive (queries)")
    training.add_argument(
        "--map-bag", type=Path, metavar="BAG", help="map drive the validation is scored against"
    )
    training.add_argument(
        "--variant", choices=("rgb", "auxiliary", "hallucination", "rgb-baseline"), help="what to train"
    )
    training.add_argument("--epochs", type=int, help="passes over the training queries")
    training.add_argument("--device", choices=("auto", "cpu", "cuda"), help="auto (default), cpu or cuda")
    training.add_argument("--overwrite", action="store_true", help="replace an existing run folder at --out")
    training.add_argument(
        "--max-steps", type=int, help="stop after this many optimiser steps in all (continue with --resume)"
    )
    training.set_defaults(func=_train)

    demo = commands.add_parser(
        "demo", help="simulate, convert, build a map, localize a replayed traversal and report"
    )
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="working folder (default demo_out/)")
    demo.add_argument("--config", type=Path, help="a YAML DemoConfig")
    demo.set_defaults(func=_demo)

    evaluate = commands.add_parser(
        "evaluate",
        help="replay query bags through the localizer against a map and report recall, priors, "
        "loop candidates, latency; or --compare reports",
    )
    evaluate.add_argument(
        "bags", type=Path, nargs="*", metavar="QUERY_BAG", help="query drives, each reported and all together"
    )
    evaluate.add_argument("--map", type=Path, help="the map (from vbl build-map)")
    evaluate.add_argument("--model", type=Path, help="the map's model file (default: the embedded model)")
    evaluate.add_argument("--out", type=Path, required=True, help="the report folder to create")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing report at --out")
    evaluate.add_argument(
        "--offline",
        action="store_true",
        help="run the core localizer in this process, as fast as it goes (default: the localize node over DDS)",
    )
    evaluate.add_argument(
        "--use-odometry",
        action="store_true",
        help="give the localizer each bag's odometry with every frame (live: replayed into the node, use_odometry)",
    )
    evaluate.add_argument("--rate", type=float, help="live replay pace, times the bags' own (default 1)")
    evaluate.add_argument(
        "--threshold", type=float, metavar="M", help="success radius in metres (default 25)"
    )
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the network runs")
    evaluate.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="descriptor runtime, live (given to the node) and offline alike (default: the node's, "
        "from --params: auto)",
    )
    evaluate.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="descriptor precision, live and offline alike (default: the node's, from --params: auto = "
        "bf16 in OpenVINO on a CPU with native bf16, else fp32)",
    )
    evaluate.add_argument(
        "--params", type=Path, help="the node's parameters file (default: the package's config/localize.yaml)"
    )
    evaluate.add_argument("--camera-topic", help="image topic of the bags (default: the centre camera)")
    evaluate.add_argument("--config", type=Path, help="a YAML EvaluateConfig")
    evaluate.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="REPORT_DIR",
        help="put these reports side by side in --out instead of evaluating",
    )
    evaluate.set_defaults(func=_evaluate)

    repair = commands.add_parser(
        "repair-map",
        help="after a crash or kill during 'vbl build-map': put back the previous map, delete temporary "
        "folders, check the map loads",
    )
    repair.add_argument("map", type=Path, help="the map folder (as given to --out)")
    repair.set_defaults(func=_repair_map)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args.func(args)
    except VblError as err:
        log.error("%s: %s", type(err).__name__, err)
        return 2
    except Exception as err:  # a full disk or a permission while writing is the user's; the rest is a bug
        out = next(
            (getattr(args, a) for a in ("out", "out_bag", "out_dir", "resume") if getattr(args, a, None)),
            None,
        )
        named = output_error(err, out)
        if named is None:
            raise
        log.error("%s: %s", type(named).__name__, named)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
