"""Does reduced precision keep retrieval? Recall@N on the demo's drives per runtime and precision.

The demo's two simulated drives (``vbl demo`` leaves them in ``demo_out/bags/``: a map drive,
overcast, and a query drive, sunny, another day): map keyframes every ``--spacing`` metres of the
map drive (``build_map``'s rule, through ``build_map`` itself with eager PyTorch), every frame of
the query drive as a query, its ground truth in the map's frame. For each configuration, the map
keyframes and the queries get descriptors through :func:`vbl_ros.export.build_extractor` and
:func:`vbl_ros.evaluation.retrieval.evaluate_retrieval` (exact search) scores recall@1/5/10
within 25 m, with the map's descriptors from the same configuration and, as deployed (a map built
offline, queried by the node in another runtime), from eager PyTorch fp32 (``R@N_torch_map``); also
the top-1 agreement with eager PyTorch fp32 and the descriptors' cosine to it.

Configurations: eager PyTorch fp32 (the reference), ONNX Runtime fp32, OpenVINO fp32 and bf16,
and int8 (:func:`vbl_ros.export.quantize.quantize_onnx`, calibrated on every 4th map keyframe) in
ONNX Runtime and OpenVINO. The model is the embedded default (EfficientNet-Lite0 + GeM, 224x224).

    .venv/bin/vbl demo --out demo_out      # once, if demo_out/bags/ is not there (~3 min)
    .venv/bin/python benchmarks/precision_recall.py demo_out/bags/map_* demo_out/bags/query_*

writes ``benchmarks/results/precision_recall.json``.

``--priors MAP_DIR`` scores the localizer itself, as ``vbl evaluate --offline`` does (the one
scoring routine: recall, pose priors, their errors), on an existing map (the demo's, built in eager
PyTorch fp32) with the query drive's descriptors in eager PyTorch fp32, ONNX Runtime fp32, OpenVINO
bf16 and the node's default (``auto``/``auto``), each on one thread as the node runs:

    .venv/bin/python benchmarks/precision_recall.py --priors demo_out/map_spacing2m demo_out/bags/map_* demo_out/bags/query_*

writes ``benchmarks/results/precision_priors.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine, table, write_results

from vbl_ros.bags import read_camera_frames
from vbl_ros.evaluation.ground_truth import ground_truth
from vbl_ros.evaluation.retrieval import evaluate_retrieval
from vbl_ros.export import build_extractor, export_model, installed_runtimes
from vbl_ros.mapping import KeyframeMap, MapConfig, build_map
from vbl_ros.model import default_model, save_model

NAME = "precision_recall"
log = logging.getLogger(NAME)


def frames_at(bag: Path, stamps: set[int] | None) -> tuple[list[np.ndarray], np.ndarray]:
    keep = None if stamps is None else (lambda s: s in stamps)
    images, out = [], []
    for frame in read_camera_frames(bag, keep=keep):
        images.append(frame.image_rgb)
        out.append(frame.stamp_ns)
    return images, np.asarray(out, np.int64)


def main(
    map_bag: Path, query_bag: Path, *, spacing_m: float = 2.0, threads: int = 2, out: Path | None = None
) -> Path:
    from vbl_ros.export.quantize import quantize_onnx

    t_start = time.perf_counter()
    info = machine()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="vbl-precision-") as tmp:
        folder = Path(tmp)
        net = default_model()
        pt = save_model(net, folder / "default.pt")
        onnx = export_model(net, folder / "default.onnx")
        kmap_path = build_map(
            map_bag,
            folder / "map",
            model=pt,
            config=MapConfig(spacing_m=spacing_m, device="cpu", runtime="torch"),
        )
        kmap = KeyframeMap.load(kmap_path)
        map_images, map_stamps = frames_at(map_bag, set(int(s) for s in kmap.stamps_ns()))
        # the positions of the map frames in the order read
        by_stamp = dict(zip(kmap.stamps_ns().tolist(), kmap.positions(), strict=True))
        map_positions = np.array([by_stamp[int(s)] for s in map_stamps])
        query_images, query_stamps = frames_at(query_bag, None)
        query_positions = ground_truth(query_bag, query_stamps, kmap.utm_origin)
        log.info("%d map keyframes, %d queries", len(map_images), len(query_images))
        int8 = quantize_onnx(onnx, folder / "default_int8.onnx", map_images[::4])
        configs = [("torch", pt, None, "fp32")]
        runtimes = installed_runtimes()
        if "onnxruntime" in runtimes:
            configs += [("onnxruntime", onnx, None, "fp32"), ("onnxruntime", int8, None, "int8")]
        if "openvino" in runtimes:
            configs += [
                ("openvino", onnx, None, "fp32"),
                ("openvino", onnx, "bf16", "bf16"),
                ("openvino", int8, None, "int8"),
            ]
        rows = []
        reference: dict[str, np.ndarray] = {}
        for runtime, model, precision, label in configs:
            extractor = build_extractor(
                model, runtime=runtime, device="cpu", threads=threads, precision=precision
            )
            m, q = extractor(map_images), extractor(query_images)
            report = evaluate_retrieval(q, query_positions, m, map_positions, ks=(1, 5, 10))
            if not reference:
                reference = {"map": m, "query": q, "top1": report.top1_ids}
            # the deployed case: a map built offline in eager PyTorch fp32, queried in this configuration
            mixed = evaluate_retrieval(q, query_positions, reference["map"], map_positions, ks=(1, 5, 10))
            cosine = np.concatenate([(m * reference["map"]).sum(1), (q * reference["query"]).sum(1)])
            rows.append(
                {
                    "runtime": runtime,
                    "precision": label,
                    **{f"R@{k}": 100 * report.recalls[k] for k in report.ks},
                    "median_error_m": report.median_error_m,
                    "R@1_torch_map": 100 * mixed.recalls[1],
                    "R@5_torch_map": 100 * mixed.recalls[5],
                    "top1_same_as_torch_pct": 100 * float(np.mean(report.top1_ids == reference["top1"])),
                    "cosine_min": float(cosine.min()),
                    "cosine_median": float(np.median(cosine)),
                }
            )
            log.info("%s %s: %s", runtime, label, report.summary())
    print(
        table(
            rows,
            [
                "runtime",
                "precision",
                "R@1",
                "R@5",
                "R@10",
                "median_error_m",
                "R@1_torch_map",
                "R@5_torch_map",
                "top1_same_as_torch_pct",
                "cosine_min",
                "cosine_median",
            ],
        )
    )
    payload = {
        "benchmark": NAME,
        "command": " ".join(["benchmarks/precision_recall.py", *sys.argv[1:]]),
        "machine": info,
        "map_bag": str(map_bag),
        "query_bag": str(query_bag),
        "spacing_m": spacing_m,
        "map_keyframes": len(map_images),
        "queries": len(query_images),
        "int8_calibration_images": len(map_images[::4]),
        "rows": rows,
        "wall_s": time.perf_counter() - t_start,
    }
    return write_results(NAME, payload, out)


#: (runtime, precision) of the --priors comparison: the fp32 reference, the fp32 default before, bf16,
#: and the node's default on this machine
PRIOR_CONFIGS = (("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "bf16"), ("auto", "auto"))


def priors(map_dir: Path, query_bag: Path, *, out: Path | None = None) -> Path:
    """The localizer's figures (``vbl evaluate --offline``) per runtime and precision on an existing map."""
    from vbl_ros.evaluation import load_report
    from vbl_ros.pipelines.evaluate import EvaluateConfig, evaluate

    t_start = time.perf_counter()
    info = machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vbl-precision-priors-") as tmp:
        for runtime, precision in PRIOR_CONFIGS:
            config = EvaluateConfig(offline=True, device="cpu", runtime=runtime, precision=precision)
            report = load_report(
                evaluate(map_dir, [query_bag], Path(tmp) / f"{runtime}-{precision}", config=config)
            )
            figures = report.all
            rows.append(
                {
                    "runtime": runtime,
                    "precision": precision,
                    "ran": report.meta["descriptor"].rpartition(": ")[2],
                    "R@1": 100 * figures.recall_at[1],
                    "R@5": 100 * figures.recall_at[5],
                    "priors": figures.priors_published,
                    "prior_precision": 100 * figures.prior_precision,
                    "prior_error_median_m": figures.prior_error_median_m,
                    "prior_error_p95_m": figures.prior_error_p95_m,
                    "heading_error_p95_deg": figures.heading_error_p95_deg,
                    "map_matches_ap": figures.map_matches.average_precision,
                    "latency_p50_ms": figures.latency.p50_ms if figures.latency else None,
                }
            )
            log.info("%s %s: %s", runtime, precision, figures.summary())
    columns = list(rows[0])
    print(table(rows, columns))
    payload = {
        "benchmark": "precision_priors",
        "command": " ".join(["benchmarks/precision_recall.py", *sys.argv[1:]]),
        "machine": info,
        "map_dir": str(map_dir),
        "query_bag": str(query_bag),
        "rows": rows,
        "wall_s": time.perf_counter() - t_start,
    }
    return write_results("precision_priors", payload, out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("map_bag", type=Path)
    p.add_argument("query_bag", type=Path)
    p.add_argument("--spacing", type=float, default=2.0, help="metres between map keyframes (the demo's 2)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--priors",
        type=Path,
        metavar="MAP_DIR",
        help="instead: the localizer's figures (vbl evaluate --offline) per runtime on this existing map",
    )
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if a.priors is not None:
        print(f"results: {priors(a.priors, a.query_bag)}")
    else:
        print(f"results: {main(a.map_bag, a.query_bag, spacing_m=a.spacing, threads=a.threads)}")
