"""Descriptor throughput and single-image latency of the default model.

Everything goes through :class:`vbl_ros.model.extractor.DescriptorExtractor` with
:func:`vbl_ros.model.default_model` (EfficientNet-Lite0 + GeM), as ``build_map`` and the ``localize``
node use it: uint8 RGB images in, unit-L2 float32 descriptors out (resize, upload, normalisation,
network, download included).

- CPU: float32, channels-last, torch's default thread count (the extractor's default).
- GPU (when ``torch.cuda.is_available()``): the extractor's CUDA path, fp16 channels-last.

Measured per device: images/s at batch 1, 8 and 32 (and 64, 128 on the GPU) with images already at
the model's input size, the latency of one image p50/p95 at the input size and from a full-size
RobotCar frame (1280x960, resized by the extractor), and peak RSS.

    .venv/bin/python benchmarks/descriptor.py [--quick]

writes ``benchmarks/results/descriptor.json`` (``--quick``: fewer repetitions, ``descriptor_quick.json``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import load_average, machine, peak_rss_mib, percentiles_ms, table, write_results

from vbl_ros.model import DescriptorExtractor, default_model

NAME = "descriptor"
CPU_BATCHES = (1, 8, 32)
GPU_BATCHES = (1, 8, 32, 64, 128)
ROBOTCAR_SIZE = (960, 1280)  # h, w of the Bumblebee XB3 centre camera


def throughput(extractor: DescriptorExtractor, image: np.ndarray, batch: int, min_images: int) -> dict:
    """images/s of ``extractor(images)`` with ``batch`` images per call (one forward pass each)."""
    images = [image] * batch
    for _ in range(3):  # warm-up at this batch shape (oneDNN/cuDNN pick kernels on the first calls)
        extractor(images)
    calls = max(2, -(-min_images // batch))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        extractor(images)
        times.append(time.perf_counter() - t0)
    total = float(np.sum(times))
    return {
        "batch": batch,
        "images": batch * calls,
        "images_per_s": batch * calls / total,
        "ms_per_batch_p50": float(np.median(times) * 1e3),
    }


def single_latency(extractor: DescriptorExtractor, image: np.ndarray, repeats: int) -> dict:
    """p50/p95 of one ``extractor([image])`` call."""
    extractor([image])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        extractor([image])
        times.append(time.perf_counter() - t0)
    return percentiles_ms(times)


def run_device(device: str, quick: bool, log: logging.Logger) -> tuple[list[dict], list[dict], dict]:
    net = default_model()
    batches = GPU_BATCHES if device == "cuda" else CPU_BATCHES
    rng = np.random.default_rng(0)
    h, w = net.config.input_height, net.config.input_width
    at_input = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    full = rng.integers(0, 256, size=(*ROBOTCAR_SIZE, 3), dtype=np.uint8)
    min_images = (16 if quick else 64) if device == "cpu" else (256 if quick else 2048)
    repeats = (20 if quick else 100) if device == "cpu" else (100 if quick else 500)
    rows, lat_rows = [], []
    for batch in batches:
        extractor = DescriptorExtractor(net, device, batch_size=batch)
        r = throughput(extractor, at_input, batch, min_images)
        r.update(device=device, dtype="fp16" if device == "cuda" else "fp32", input=f"{w}x{h}")
        rows.append(r)
        log.info(
            "%s batch %d: %.1f images/s (load %.2f)", device, batch, r["images_per_s"], load_average()[0]
        )
        if batch == 1:
            for name, image in (("input size", at_input), ("RobotCar 1280x960", full)):
                s = single_latency(extractor, image, repeats)
                lat_rows.append({"device": device, "image": name, **s})
                log.info("%s one image (%s): p50 %.2f ms p95 %.2f ms", device, name, s["p50_ms"], s["p95_ms"])
        del extractor
    info = {
        "device": device,
        "dim": net.dim,
        "input": f"{w}x{h}",
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
    }
    return rows, lat_rows, info


def main(*, quick: bool = False, devices: tuple[str, ...] | None = None, out: Path | None = None) -> Path:
    """Run the benchmark on the CPU (and the GPU when there is one); write and return the JSON path."""
    log = logging.getLogger(NAME)
    info = machine()
    info["torch"] = torch.__version__
    info["cuda_available"] = torch.cuda.is_available()
    if devices is None:
        devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    if not torch.cuda.is_available():
        print("no GPU: torch.cuda.is_available() is False; CPU only")
    t_start = time.perf_counter()
    rows: list[dict] = []
    lat_rows: list[dict] = []
    devs: list[dict] = []
    for device in devices:
        r, lr, d = run_device(device, quick, log)
        rows += r
        lat_rows += lr
        devs.append(d)
    print(table(rows, ["device", "dtype", "input", "batch", "images", "images_per_s", "ms_per_batch_p50"]))
    print()
    print(table(lat_rows, ["device", "image", "p50_ms", "p95_ms", "mean_ms", "n"]))
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    payload = {
        "benchmark": NAME,
        "command": " ".join(["benchmarks/descriptor.py", *sys.argv[1:]]),
        "machine": info,
        "devices": devs,
        "throughput": rows,
        "single_image_latency": lat_rows,
        "peak_rss_mib": peak_rss_mib(),
        "load_average_at_end": load_average(),
        "wall_s": time.perf_counter() - t_start,
    }
    return write_results(NAME + ("_quick" if quick else ""), payload, out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument(
        "--device", action="append", choices=("cpu", "cuda"), help="default: cpu, and cuda if present"
    )
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"results: {main(quick=a.quick, devices=tuple(a.device) if a.device else None)}")
