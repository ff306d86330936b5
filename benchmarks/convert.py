"""RobotCar conversion speed and peak memory vs traversal length (memory must not grow with length).

Simulated traversals of several route lengths are written with :func:`vbl_ros.sim.simulate.simulate`
(one condition, 160x120 images at the RobotCar camera rate of 16 Hz, LIDAR at 12.5 Hz; the low
resolution keeps simulating cheap: the LIDAR work per image, which depends on the depth-map
window, is as at full resolution, but PNG bytes and depth images are 64x smaller than 1280x960,
so images/s here is an upper bound for real RobotCar frames), then each is
converted by :func:`vbl_ros.robotcar.convert.convert_robotcar_report` (the function behind
``vbl convert robotcar``, default options: PNG bytes, LIDAR depth/reflectance maps over the
10 s / 50 s window, point clouds, GPS, mcap + zstd) in a fresh child process, which reports its peak
RSS (``ru_maxrss`` and ``VmHWM``), its RSS after the imports, wall time and camera images written.

    .venv/bin/python benchmarks/convert.py [--quick] [--lengths 200,600,1800]

writes ``benchmarks/results/convert.json`` (``--quick``: 100 m and 300 m, ``convert_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CpuMonitor, load_average, machine, table, wait_for_quiet, write_results

NAME = "convert"
LENGTHS_M = (200.0, 600.0, 1800.0)
QUICK_LENGTHS_M = (100.0, 300.0)
CAMERA_HZ = 16.0  # the RobotCar stereo camera rate (the simulator's default is 3.2 Hz)


def _vm(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child_convert(traversal: Path, out_bag: Path, sdk: Path) -> dict:
    """Run in a fresh process: convert one traversal, return time, images and peak memory."""
    from vbl_ros.robotcar.convert import ConvertConfig, convert_robotcar_report

    rss_after_imports = _vm("VmRSS")
    t0 = time.perf_counter()
    report = convert_robotcar_report(
        traversal,
        out_bag,
        extrinsics_dir=sdk / "extrinsics",
        models_dir=sdk / "models",
        config=ConvertConfig(progress=False),
    )
    wall = time.perf_counter() - t0
    images = sum(
        v for k, v in report.message_counts.items() if k.endswith(("/image_raw/compressed", "/image_raw"))
    )
    scans = sum(v for k, v in report.message_counts.items() if k.endswith("/points"))
    bag_bytes = sum(p.stat().st_size for p in Path(out_bag).rglob("*") if p.is_file())
    return {
        "images": images,
        "lidar_scans": scans,
        "messages": sum(report.message_counts.values()),
        "duration_s": (report.end_us - report.start_us) / 1e6,
        "convert_s": wall,
        "images_per_s": images / wall if wall > 0 else float("nan"),
        "rss_after_imports_mib": rss_after_imports,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "vm_hwm_mib": _vm("VmHWM"),
        "bag_mib": bag_bytes / 2**20,
    }


def simulate_traversal(out_dir: Path, length_m: float, log: logging.Logger) -> tuple[Path, Path, float]:
    """One simulated traversal of ``length_m`` (160x120 images at 16 Hz); (folder, sdk, seconds)."""
    from vbl_ros.sim.simulate import SimConfig, simulate

    config = SimConfig(
        conditions=("overcast",),
        route_length_m=length_m,
        width=160,
        height=120,
        camera_hz=CAMERA_HZ,
    )
    t0 = time.perf_counter()
    (folder,) = simulate(out_dir, config)
    seconds = time.perf_counter() - t0
    log.info("simulated %.0f m in %.1f s: %s", length_m, seconds, folder)
    return folder, out_dir / "sdk", seconds


def main(*, quick: bool = False, lengths: tuple[float, ...] = LENGTHS_M, out: Path | None = None) -> Path:
    """Simulate, convert each traversal in a child process, write and return the JSON results path."""
    log = logging.getLogger(NAME)
    if quick:
        lengths = QUICK_LENGTHS_M
    info = machine()
    t_start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vbl-bench-convert-") as tmp:
        sims = []
        for length in lengths:
            folder, sdk, sim_s = simulate_traversal(Path(tmp) / f"sim_{int(length)}m", length, log)
            sims.append((length, folder, sdk, sim_s))
        for length, folder, sdk, sim_s in sims:
            bag = Path(tmp) / f"bag_{int(length)}m"
            busy = wait_for_quiet(0.15, 120.0, log=log.info)
            with CpuMonitor() as monitor:
                child = subprocess.run(
                    [sys.executable, __file__, "--child", str(folder), str(bag), str(sdk)],
                    capture_output=True,
                    text=True,
                )
            if child.returncode != 0:
                raise RuntimeError(f"conversion of {folder} failed:\n{child.stderr[-4000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            row = {"route_m": length, "simulate_s": sim_s, **result, "others_cpu": monitor.others}
            rows.append(row)
            log.info("%.0f m: %s (others used %.0f%% before start)", length, result, 100 * busy)
    cols = ["route_m", "duration_s", "images", "lidar_scans", "convert_s", "images_per_s"]
    cols += ["rss_after_imports_mib", "vm_hwm_mib", "peak_rss_mib", "bag_mib", "others_cpu"]
    print(table(rows, cols))
    # VmHWM: ru_maxrss survives exec, so a child forked from this (large, simulating) process
    # reports at least this process's size there; the per-mm high-water mark starts afresh at exec
    growth = rows[-1]["vm_hwm_mib"] - rows[0]["vm_hwm_mib"] if len(rows) > 1 else float("nan")
    ratio = rows[-1]["images"] / max(rows[0]["images"], 1) if len(rows) > 1 else float("nan")
    print(
        f"peak RSS (VmHWM) grows by {growth:.0f} MiB from the shortest to the longest ({ratio:.1f}x the images)"
    )
    payload = {
        "benchmark": NAME,
        "command": " ".join(["benchmarks/convert.py", *sys.argv[1:]]),
        "machine": info,
        "rows": rows,
        "peak_rss_growth_mib": growth,
        "images_ratio": ratio,
        "load_average_at_end": load_average(),
        "wall_s": time.perf_counter() - t_start,
    }
    return write_results(NAME + ("_quick" if quick else ""), payload, out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 m and 300 m")
    p.add_argument("--lengths", type=lambda s: tuple(float(v) for v in s.split(",")), default=LENGTHS_M)
    p.add_argument("--out", type=Path, default=None, help="results JSON (default: results/convert.json)")
    p.add_argument("--child", nargs=3, metavar=("TRAVERSAL", "OUT_BAG", "SDK"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child_convert(*(Path(v) for v in a.child))))
        raise SystemExit(0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"results: {main(quick=a.quick, lengths=a.lengths, out=a.out)}")
