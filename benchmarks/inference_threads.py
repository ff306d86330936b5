"""Single-image descriptor latency on the CPU with 1 and 2 torch threads, alone and beside a busy loop.

The ``localize`` node computes one descriptor per frame on a robot's computer, which other processes
share (drivers, SLAM, planners). PyTorch's default is one OpenMP thread per core, and its idle threads
spin: when another process holds a core, every parallel region waits for the descheduled thread.
This measures what the node's ``inference_threads`` default should be.

Each configuration runs in a fresh subprocess:
:class:`~vbl_ros.model.extractor.DescriptorExtractor` on :func:`~vbl_ros.model.default_model`
(``num_threads=T``: ``torch.set_num_threads``), warmed up, then ``--calls`` single-image calls at the model's input size (224x224), p50/p95/max.
"Competing load" is one other process spinning in a busy loop (``while True: pass``) for the whole run.

    .venv/bin/python benchmarks/inference_threads.py [--calls 80]

writes ``benchmarks/results/inference_threads.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import CpuMonitor, load_average, machine, table, write_results

NAME = "inference_threads"
HERE = Path(__file__).resolve().parent

_WORKER = r"""
import json, sys, time
import numpy as np
from vbl_ros.model import DescriptorExtractor, default_model
threads, calls = int(sys.argv[1]), int(sys.argv[2])
extractor = DescriptorExtractor(default_model(), "cpu", num_threads=threads)
h, w = extractor.config.input_height, extractor.config.input_width
image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
for _ in range(10):
    extractor([image])
times = []
for _ in range(calls):
    t0 = time.perf_counter()
    extractor([image])
    times.append((time.perf_counter() - t0) * 1e3)
a = np.asarray(times)
print(json.dumps({"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
                  "max_ms": float(a.max()), "mean_ms": float(a.mean()), "calls": calls}))
"""


def measure(threads: int, competing: bool, calls: int) -> dict:
    """Run one configuration in a subprocess; returns its figures."""
    busy = (
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        if competing
        else None
    )
    try:
        time.sleep(0.5 if competing else 0.0)
        with CpuMonitor() as monitor:
            out = subprocess.run(
                [sys.executable, "-c", _WORKER, str(threads), str(calls)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    row = json.loads(out.strip().splitlines()[-1])
    # "others": CPU share of every process but this one and the worker, the busy loop included
    row.update(threads=threads, competing_load="busy loop" if competing else "none", others=monitor.others)
    return row


def main(calls: int, out: Path | None = None) -> Path:
    """Measure the four configurations (twice, alternating); write and return the JSON path."""
    info = machine()
    rows = []
    for _repeat in range(2):
        for competing in (False, True):
            for threads in (1, 2):
                rows.append(measure(threads, competing, calls))
                print(table(rows[-1:], ["threads", "competing_load", "p50_ms", "p95_ms", "max_ms", "others"]))
    print(table(rows, ["threads", "competing_load", "p50_ms", "p95_ms", "max_ms", "others"]))
    payload = {
        "benchmark": NAME,
        "command": " ".join(["benchmarks/inference_threads.py", *sys.argv[1:]]),
        "machine": info,
        "rows": rows,
        "load_average_at_end": load_average(),
    }
    return write_results(NAME, payload, out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=80, help="timed single-image calls per configuration")
    a = p.parse_args()
    print(f"results: {main(a.calls)}")
