"""The ``localize`` node's resident memory after its first frames, per model and runtime, and whether it loaded torch.

The node is started as ``vbl evaluate`` and ``ros2 launch`` start it (:func:`localize_command` /
:func:`start_localize`, the packaged ``config/localize.yaml``) with a 40-keyframe map of the default
model (``end_to_end.py``'s), and runs for each configuration: the embedded default model (``model``
empty; a ``.pt`` model runs in an ONNX runtime through its cached export, made here once beforehand,
as a robot's first start makes it) and the same model exported by ``vbl export`` (``.onnx``), each
with the node's default ``runtime: auto`` / ``precision: auto`` and with ``runtime: onnxruntime``;
eager PyTorch (``runtime: torch``) for reference. This process publishes 24 ``rgb8`` frames at
4 Hz over DDS; once the node has answered them, its ``VmRSS`` and ``VmHWM`` are read from
``/proc/<pid>/status`` and ``/proc/<pid>/maps`` says whether ``libtorch`` was loaded (the node's
``sys.modules`` from outside: importing ``torch`` maps ``libtorch_cpu.so``). Target (issue 10):
<= 400 MB when the node runs an exported model.

    .venv/bin/python benchmarks/node_memory.py

writes ``benchmarks/results/node_memory.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import load_average, machine, table, write_results
from end_to_end import build_small_map, image_msg, perturbed

NAME = "node_memory"
TARGET_MB = 400.0
FRAMES = 24
RATE_HZ = 4.0
#: (label, model: "default" or "onnx", runtime, precision)
CONFIGS = (
    ("default model, auto/auto (the node's default)", "default", "auto", ""),
    ("default model, onnxruntime", "default", "onnxruntime", ""),
    ("exported .onnx, auto/auto", "onnx", "auto", ""),
    ("exported .onnx, onnxruntime", "onnx", "onnxruntime", ""),
    ("default model, torch (eager, reference)", "default", "torch", ""),
)


def status_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in MB (10^6 bytes, the issue's unit)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024 / 1e6
    return values


def loaded(pid: int, names: tuple[str, ...]) -> dict[str, bool]:
    """Which of the shared libraries ``names`` (substrings) ``pid`` has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name: name in maps for name in names}


def measure(
    label: str, model: Path | None, runtime: str, precision: str, map_path: Path, scenes, workdir: Path, log
):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from vbl_ros.ros.collector import OutputCollector
    from vbl_ros.ros.process import find_share_file, localize_command, start_localize, stop_process

    domain_id = 1 + (os.getpid() * 31 + 11 + len(label)) % 100
    command = localize_command(
        params_file=find_share_file("config/localize.yaml"),
        parameters={
            "map": str(map_path),
            "model": str(model) if model is not None else "",
            "image_transport": "raw",
            "device": "cpu",
            "runtime": runtime,
            "precision": precision,
        },
    )
    node_log = workdir / f"localize_{len(list(workdir.glob('localize_*.log')))}.log"
    log.info("%s: %s", label, " ".join(command))
    started = time.monotonic()
    process = start_localize(command, domain_id=domain_id, log_path=node_log)
    collector = OutputCollector(domain_id, name="vbl_node_memory")
    publisher = collector.node.create_publisher(Image, "/image", qos_profile_sensor_data)
    rng = np.random.default_rng(2)
    try:
        deadline = time.monotonic() + 180
        while publisher.get_subscription_count() == 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{label}: the node did not come up:\n{node_log.read_text()}")
            time.sleep(0.1)
        ready_s = time.monotonic() - started
        stamps = [1_700_000_000_000_000_000 + i * 10**8 for i in range(FRAMES)]
        for i, stamp in enumerate(stamps):
            publisher.publish(image_msg(perturbed(scenes[i % len(scenes)], rng), stamp))
            time.sleep(1.0 / RATE_HZ)
        time.sleep(1.5)
        answered = sum(collector.answered_at(s) is not None for s in stamps)
        memory = status_mb(process.pid)
        libraries = loaded(process.pid, ("libtorch_cpu", "libonnxruntime", "libopenvino"))
        diagnostics = collector.diagnostics()
    finally:
        collector.close()
        stop_process(process)
    return {
        "configuration": label,
        "model": model.name
        if model is not None
        else "the embedded default" + (" (eager)" if runtime == "torch" else " (cached export)"),
        "runtime_param": runtime,
        "runtime_ran": diagnostics.get("runtime", "?"),
        "answered": f"{answered}/{FRAMES}",
        "rss_mb": memory["VmRSS"],
        "peak_rss_mb": memory["VmHWM"],
        "torch_loaded": libraries["libtorch_cpu"],
        "onnxruntime_loaded": libraries["libonnxruntime"],
        "openvino_loaded": libraries["libopenvino"],
        "start_to_subscribed_s": ready_s,
        "meets_400_mb": memory["VmRSS"] <= TARGET_MB,
    }


def main(out: Path | None = None) -> Path:
    log = logging.getLogger(NAME)
    info = machine()
    load_before = load_average()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vbl-node-memory-") as tmp:
        workdir = Path(tmp)
        os.environ["VBL_CACHE_DIR"] = str(workdir / "cache")  # the node inherits it: a cache of this run's
        from vbl_ros.export import build_extractor, export_model

        build_extractor(
            None, runtime="onnxruntime", device="cpu", threads=1, warmup=False
        )  # the first start's export
        onnx = export_model(None, workdir / "default.onnx")
        map_path, scenes, _, _ = build_small_map(workdir, "cpu", log)
        for label, model, runtime, precision in CONFIGS:
            rows.append(
                measure(
                    label,
                    onnx if model == "onnx" else None,
                    runtime,
                    precision,
                    map_path,
                    scenes,
                    workdir,
                    log,
                )
            )
            log.info("%s", rows[-1])
    print(table(rows, list(rows[0])))
    payload = {
        "benchmark": NAME,
        "command": " ".join(["benchmarks/node_memory.py", *sys.argv[1:]]),
        "machine": info,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "target_mb": TARGET_MB,
        "rows": rows,
    }
    return write_results(NAME, payload, out)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"results: {main()}")
