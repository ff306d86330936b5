"""Descriptor latency per runtime and precision at batch 1, on 1 and 2 threads, in one run with interleaved rounds.

Every configuration goes through :func:`vbl_ros.export.build_extractor`, as ``build_map`` and the
node use it: one uint8 RGB image at the model's input size in, one unit-L2 float32 descriptor out
(the extractor's checks, the exported graph's normalisation and the network included). The model is
the embedded default (EfficientNet-Lite0 + GeM, 224x224), exported once to ONNX and TorchScript in a
temporary folder. Configurations: ``torch`` (eager, the node today), ``torch`` on the TorchScript
export, ``onnxruntime`` fp32, ``openvino`` fp32 and bf16 (where the CPU has bf16), and with
``--int8`` the int8 export (:func:`vbl_ros.export.quantize.quantize_onnx`, calibrated on street
frames) in ``onnxruntime`` and ``openvino``; each on 1 and 2 intra-op threads.

Rounds: every round measures each configuration for ``--calls`` calls, in a new random order, so
that a burst of load from other processes falls on all of them alike; p50/p95 pool every round's
calls, and the spread of the per-round medians is kept.

Also: the network's FLOPs (``torch.utils.flop_counter``, 2 per multiply-add) and the machine's floor
(FLOPs / the fp32 GEMM rate measured here on 1 and 2 threads), the descriptors' cosine to eager
PyTorch fp32, and the resident memory of a process that runs each runtime as the node would (model
loaded, 20 calls; ``vbl_ros.localizer`` and ``vbl_ros.mapping`` imported), with whether it imported torch.

    .venv/bin/python benchmarks/descriptor_runtimes.py [--quick] [--int8]

writes ``benchmarks/results/descriptor_runtimes.json`` (``--quick``: ``descriptor_runtimes_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from _common import CpuMonitor, load_average, machine, percentiles_ms, table, wait_for_quiet, write_results
from skimage import data

from vbl_ros.export import build_extractor, export_model, installed_runtimes
from vbl_ros.model import default_model, save_model

NAME = "descriptor_runtimes"
log = logging.getLogger(NAME)


def gemm_gflops(threads: int, n: int = 1536, repeats: int = 30) -> float:
    """The fp32 GEMM rate (GFLOP/s) of torch's BLAS on ``threads`` threads: the machine's practical peak."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def network_flops(h: int, w: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    net = default_model()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(torch.zeros(1, 3, h, w))
    return int(counter.get_total_flops())


MEMORY = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import vbl_ros.localizer, vbl_ros.mapping
    from vbl_ros.export import build_extractor
    model, runtime = sys.argv[1], sys.argv[2]
    extractor = build_extractor(model, runtime=runtime, device="cpu", threads=1)
    image = np.full((224, 224, 3), 100, np.uint8)
    for _ in range(20):
        extractor([image])
    status = dict(l.split(":", 1) for l in open("/proc/self/status"))
    print(json.dumps({"rss_mib": int(status["VmRSS"].split()[0]) / 1024,
                      "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024,
                      "torch_imported": "torch" in sys.modules}))
    """
)


def node_memory(model: Path, runtime: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", MEMORY, str(model), runtime], capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        return {"runtime": runtime, "error": result.stderr.strip().splitlines()[-1]}
    return {"runtime": runtime, "model": model.suffix, **json.loads(result.stdout.strip().splitlines()[-1])}


def configurations(folder: Path, int8: Path | None) -> list[dict]:
    """(label, model, runtime, precision) of every measured configuration."""
    runtimes = installed_runtimes()
    pt, onnx, ts = folder / "default.pt", folder / "default.onnx", folder / "default.ts"
    out = [
        {"runtime": "torch", "file": "model", "precision": "fp32", "model": pt},
        {"runtime": "torch", "file": "torchscript", "precision": "fp32", "model": ts},
    ]
    if "onnxruntime" in runtimes:
        out.append({"runtime": "onnxruntime", "file": "onnx", "precision": "fp32", "model": onnx})
    if "openvino" in runtimes:
        import openvino as ov

        out.append({"runtime": "openvino", "file": "onnx", "precision": "fp32", "model": onnx})
        if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            out.append({"runtime": "openvino", "file": "onnx", "precision": "bf16", "model": onnx})
    if int8 is not None:
        for runtime in ("onnxruntime", "openvino"):
            if runtime in runtimes:
                out.append({"runtime": runtime, "file": "onnx-int8", "precision": "int8", "model": int8})
    return [{**c, "threads": t} for c in out for t in (1, 2)]


def main(*, quick: bool = False, int8: bool = False, out: Path | None = None) -> Path:
    info = machine()
    info["torch"] = torch.__version__
    for package in ("onnxruntime", "openvino"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    t_start = time.perf_counter()
    rounds, calls = (3, 10) if quick else (7, 30)
    net = default_model()
    h, w = net.config.input_height, net.config.input_width
    images = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    with tempfile.TemporaryDirectory(prefix="vbl-bench-") as tmp:
        folder = Path(tmp)
        save_model(net, folder / "default.pt")
        export_model(net, folder / "default.onnx")
        export_model(net, folder / "default.ts", file_format="torchscript")
        int8_path = None
        if int8:
            from vbl_ros.export.quantize import quantize_onnx

            int8_path = quantize_onnx(
                folder / "default.onnx", folder / "default_int8.onnx", street_images(64)
            )
        configs = configurations(folder, int8_path)
        torch.set_num_threads(1)
        reference = build_extractor(folder / "default.pt", runtime="torch", device="cpu", threads=1)(images)
        extractors = []
        for c in configs:
            precision = c["precision"] if c["precision"] in ("bf16",) else None
            e = build_extractor(
                c["model"], runtime=c["runtime"], device="cpu", threads=c["threads"], precision=precision
            )
            c["label"] = f"{c['runtime']} {c['file']} {c['precision']} {c['threads']}t"
            torch.set_num_threads(c["threads"])
            c["cosine_min"] = float((e(images) * reference).sum(1).min())
            extractors.append(e)
        memory = [node_memory(folder / "default.pt", "torch")]
        memory += [
            node_memory(folder / "default.onnx", r)
            for r in ("onnxruntime", "openvino")
            if r in installed_runtimes()
        ]
    flops = network_flops(h, w)

    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)
    samples: list[list[float]] = [[] for _ in configs]
    round_medians: list[list[float]] = [[] for _ in configs]
    others: list[float] = []
    wait_for_quiet(0.15, 300 if not quick else 30, log=log.warning)
    order = list(range(len(configs)))
    rng = random.Random(0)
    for r in range(rounds):
        rng.shuffle(order)
        with CpuMonitor() as monitor:
            for i in order:
                torch.set_num_threads(configs[i]["threads"])
                e = extractors[i]
                e([image])  # the first call after another runtime ran refills caches
                times = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    e([image])
                    times.append(time.perf_counter() - t0)
                samples[i] += times
                round_medians[i].append(float(np.median(times)) * 1e3)
                time.sleep(0.05)
        others.append(monitor.others)
        log.info(
            "round %d/%d: others used %.0f%% of the CPU (load %.2f)",
            r + 1,
            rounds,
            100 * monitor.others,
            load_average()[0],
        )

    wait_for_quiet(0.15, 120 if not quick else 10, log=log.warning)
    gemm = {t: gemm_gflops(t) for t in (1, 2)}
    rows = []
    for c, s, m in zip(configs, samples, round_medians, strict=True):
        stats = percentiles_ms(s)
        floor_ms = flops / (gemm[c["threads"]] * 1e9) * 1e3
        rows.append(
            {
                "label": c["label"],
                "runtime": c["runtime"],
                "file": c["file"],
                "precision": c["precision"],
                "threads": c["threads"],
                **stats,
                "round_median_min_ms": min(m),
                "round_median_max_ms": max(m),
                "x_floor": stats["p50_ms"] / floor_ms,
                "cosine_min": c["cosine_min"],
            }
        )
    for t in (1, 2):
        fastest = min(r["p50_ms"] for r in rows if r["threads"] == t)
        for r in rows:
            if r["threads"] == t:
                r["x_fastest"] = r["p50_ms"] / fastest
    print(
        table(
            rows,
            [
                "label",
                "p50_ms",
                "p95_ms",
                "round_median_min_ms",
                "round_median_max_ms",
                "x_fastest",
                "x_floor",
                "cosine_min",
            ],
        )
    )
    print(
        f"network: {flops / 1e9:.3f} GFLOP at {w}x{h}; fp32 GEMM {gemm[1]:.0f} GFLOP/s on 1 thread, "
        f"{gemm[2]:.0f} on 2: floor {flops / gemm[1] / 1e6:.2f} ms / {flops / gemm[2] / 1e6:.2f} ms"
    )
    print(f"others' share of the CPU per round: {[round(o, 2) for o in others]}")
    print(table(memory, ["runtime", "model", "rss_mib", "peak_rss_mib", "torch_imported"]))
    payload = {
        "benchmark": NAME,
        "command": " ".join(["benchmarks/descriptor_runtimes.py", *sys.argv[1:]]),
        "machine": info,
        "model": {
            "name": "default (EfficientNet-Lite0 + GeM)",
            "input": f"{w}x{h}",
            "dim": net.dim,
            "gflop": flops / 1e9,
        },
        "gemm_gflops": gemm,
        "rounds": rounds,
        "calls_per_round": calls,
        "others_cpu_per_round": others,
        "latency_batch1": rows,
        "node_memory": memory,
        "load_average_at_end": load_average(),
        "wall_s": time.perf_counter() - t_start,
    }
    return write_results(NAME + ("_quick" if quick else ""), payload, out)


def street_images(n: int) -> list[np.ndarray]:
    """Calibration images for int8: crops of scikit-image's photos at several scales (no dataset needed)."""
    rng = np.random.default_rng(1)
    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket(), data.immunohistochemistry()]
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        s = int(rng.integers(min(photo.shape[:2]) // 2, min(photo.shape[:2])))
        y, x = int(rng.integers(0, photo.shape[0] - s + 1)), int(rng.integers(0, photo.shape[1] - s + 1))
        out.append(np.ascontiguousarray(photo[y : y + s, x : x + s]))
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 rounds of 10 calls instead of 7 of 30")
    p.add_argument("--int8", action="store_true", help="also the int8 export (vbl_ros.export.quantize)")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"results: {main(quick=a.quick, int8=a.int8)}")
