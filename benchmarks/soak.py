"""Soak: a query bag replayed into the live ``localize`` node for several minutes; the node's memory over time.

The node runs exactly as ``vbl evaluate`` runs it (:func:`vbl_ros.ros.live.replay_live`: the installed
executable, the packaged params file, the map, the bag's camera over DDS); the bag is replayed again
and again into the same node process (each pass starts a new session: time goes back) while its
resident memory is read from ``/proc/<pid>/status`` every second. Memory is flat when the RSS after
the warm-up stays within a few MiB and its fitted slope is ~0 MiB/min.

    .venv/bin/python benchmarks/soak.py --map demo_out/map_spacing2m --bag demo_out/bags/query_* [--minutes 5]

Writes ``benchmarks/results/soak.json`` (every sample) and ``benchmarks/results/soak_rss.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, CpuMonitor, machine, wait_for_quiet, write_results

from vbl_ros.bags import CAMERA_TOPICS, open_reader

WARMUP_S = 60.0  # model and map loading, first frames: left out of the flatness figures


def bag_duration_s(bag: Path, topic: str) -> float:
    with open_reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        times = [t for _, t, _ in reader.messages(connections=conns)]
    return (max(times) - min(times)) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map", type=Path, required=True)
    parser.add_argument("--bag", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="the map's model (default: the embedded one)")
    parser.add_argument("--minutes", type=float, default=5.0, help="replay time at least (default 5)")
    parser.add_argument("--rate", type=float, default=2.0, help="replay pace, times the bag's (default 2)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--quiet-wait-s",
        type=float,
        default=60.0,
        help="wait up to this long for other processes to leave the CPU before measuring",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()

    from vbl_ros.ros.live import replay_live

    topic = next(t for t in CAMERA_TOPICS if _has_topic(args.bag, t))
    pass_s = bag_duration_s(args.bag, topic) / args.rate
    repeat = max(1, math.ceil(args.minutes * 60 / pass_s))
    info = machine()
    info["others_cpu_before"] = wait_for_quiet(0.2, args.quiet_wait_s)
    print(f"{repeat} passes of {pass_s:.0f} s over {args.bag.name} at {args.rate:g}x")
    with CpuMonitor() as cpu:
        run = replay_live(
            args.map,
            args.bag,
            Path(tempfile.gettempdir()) / "vbl_soak_logs",  # the node's log
            model=args.model,
            camera_topic=topic,
            compressed=topic.endswith("compressed"),
            rate=args.rate,
            device=args.device,
            repeat=repeat,
        )
    t = np.array([s[0] for s in run.node_rss_mib])
    rss = np.array([s[1] for s in run.node_rss_mib])
    steady = t >= WARMUP_S
    slope = float(np.polyfit(t[steady] / 60.0, rss[steady], 1)[0]) if steady.sum() > 2 else math.nan
    minutes = [(float(m), float(rss[np.argmin(np.abs(t - 60 * m))])) for m in range(int(t[-1] // 60) + 1)]
    latencies = np.array(run.latencies_ms)
    summary = {
        "bag": str(args.bag),
        "map": str(args.map),
        "rate": args.rate,
        "passes": repeat,
        "replay_s": round(float(t[-1]), 1),
        "frames": dataclasses.asdict(run.frames),
        "rss_start_mib": round(float(rss[steady][0]), 1) if steady.any() else math.nan,
        "rss_end_mib": round(float(rss[-1]), 1),
        "rss_min_after_warmup_mib": round(float(rss[steady].min()), 1) if steady.any() else math.nan,
        "rss_max_after_warmup_mib": round(float(rss[steady].max()), 1) if steady.any() else math.nan,
        "rss_slope_mib_per_min": round(slope, 3),
        "rss_by_minute_mib": minutes,
        "last_pass_latency_ms": {
            q: round(float(np.percentile(latencies, p)), 1)
            for q, p in (("p50", 50), ("p95", 95), ("p99", 99))
        }
        if len(latencies)
        else {},
        "others_cpu": round(cpu.others, 3),
    }
    for key, value in summary.items():
        if key != "rss_by_minute_mib":
            print(f"{key}: {value}")
    print("RSS by minute (MiB):", ", ".join(f"{m:.0f}: {v:.0f}" for m, v in minutes))
    write_results("soak", {"machine": info, "summary": summary, "rss_samples": run.node_rss_mib}, args.out)
    _plot(t, rss, summary, args.out.with_name("soak_rss.png"))
    print(f"wrote {args.out}")


def _has_topic(bag: Path, topic: str) -> bool:
    with open_reader(bag) as reader:
        return any(c.topic == topic for c in reader.connections)


def _plot(t: np.ndarray, rss: np.ndarray, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(t / 60.0, rss, lw=1.2)
    ax.axvline(WARMUP_S / 60.0, color="grey", ls=":", lw=1)
    ax.set_xlabel("minutes since the node started")
    ax.set_ylabel("node RSS (MiB)")
    ax.set_ylim(0, max(1.0, float(rss.max())) * 1.1)
    ax.set_title(
        f"localize node memory, {summary['passes']} passes at {summary['rate']:g}x: "
        f"slope {summary['rss_slope_mib_per_min']:+.2f} MiB/min after warm-up"
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
