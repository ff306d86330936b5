"""Load: ``vbl evaluate`` live at several replay rates; latency and frames dropped by the node.

The node drops stale frames (latest frame wins) when frames come faster than it processes them, so
its latency stays bounded while the share of frames processed falls. Each rate is one
:func:`vbl_ros.pipelines.evaluate` run in live mode (the installed node over DDS) whose report
folder is kept under ``--out-dir``.

    .venv/bin/python benchmarks/evaluate_load.py --map demo_out/map_spacing2m --bag demo_out/bags/query_* \\
        [--rates 1 2 4 16] [--out-dir /tmp/evaluate_load]

Writes ``benchmarks/results/evaluate_load.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, CpuMonitor, machine, table, wait_for_quiet, write_results

from vbl_ros.evaluation import load_report
from vbl_ros.pipelines.evaluate import EvaluateConfig, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map", type=Path, required=True)
    parser.add_argument("--bag", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="the map's model (default: the embedded one)")
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 2.0, 4.0, 16.0])
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--quiet-wait-s",
        type=float,
        default=60.0,
        help="wait up to this long for other processes to leave the CPU before measuring",
    )
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/evaluate_load"))
    parser.add_argument("--out", type=Path, default=RESULTS / "evaluate_load.json")
    args = parser.parse_args()

    info = machine()
    rows = []
    for rate in args.rates:
        wait_for_quiet(0.2, args.quiet_wait_s)
        config = EvaluateConfig(rate=rate, device=args.device)
        out = args.out_dir / f"live_{rate:g}x"
        with CpuMonitor() as cpu:
            evaluate(args.map, [args.bag], out, model=args.model, config=config, overwrite=True)
        entry = load_report(out).all
        f, lat = entry.frames, entry.latency
        rows.append(
            {
                "rate": rate,
                "sent": f.sent,
                "processed": f.processed,
                "dropped": f.dropped,
                "bad": f.bad,
                "latency_p50_ms": lat.p50_ms if lat else None,
                "latency_p95_ms": lat.p95_ms if lat else None,
                "latency_p99_ms": lat.p99_ms if lat else None,
                "recall_at_1": entry.recall_at.get(1),
                "availability": entry.availability,
                "others_cpu": round(cpu.others, 3),
                "report": str(out),
                "frames": dataclasses.asdict(f),
            }
        )
        print(table(rows[-1:], list(rows[-1])[:12]))
    columns = ["rate", "sent", "processed", "dropped", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
    print(table(rows, [*columns, "recall_at_1", "availability", "others_cpu"]))
    write_results(
        "evaluate_load", {"machine": info, "bag": str(args.bag), "map": str(args.map), "rows": rows}, args.out
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
