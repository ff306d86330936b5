"""Loop-closure candidates, single-frame vs confirmed through time, with and without odometry (issue 11).

Drives scored by THE evaluation routine (:func:`vbl_ros.evaluation.evaluate_localization`, loop
candidates judged against the drive's own truth, 25 m):

- drives that never revisit a place: the demo's query drive (sun) and its map drive (overcast);
  every candidate is wrong;
- looped drives: ONE bag written by :func:`vbl_ros.evaluation.looped.write_looped_bag` from the
  demo's two traversals of the same route, the map drive (overcast) then the query drive (sun),
  stamps continuous (the second starts ``--gap-s`` after the first ends: the drive back to the
  start is not recorded), the second's odometry brought into the first's frame; its second lap
  revisits every place of the first. And the same the other way round (sun, then overcast).

Each frame's descriptor is computed once (the default model, 1 torch thread) and the localizer's
own path after the descriptor (:meth:`Localizer.localize_descriptor`) runs per setting: single-frame
(``loop_confirm_frames=1``) and confirmed (the defaults); without odometry, with the bag's INS
odometry (what the node gets with ``use_odometry:=true``), and with a drifting odometry (the INS
scaled by 1.02 and turned by a heading drift of 1 degree per 100 m travelled).

    .venv/bin/python benchmarks/loop_closure.py [--map-bag B1] [--query-bag B2] [--out JSON]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, write_results

from vbl_ros.bags import read_camera_frames, read_odometry, read_utm_origin
from vbl_ros.evaluation import EvaluationConfig, evaluate_localization
from vbl_ros.evaluation.looped import write_looped_bag
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.localizer import Localizer, LocalizerConfig

DEMO = Path("/tmp/demo_out/bags")
MAP_BAG = DEMO / "map_2014-11-28-11-20-53"
QUERY_BAG = DEMO / "query_2014-12-07-14-16-45"
CAMERA_TOPIC = "/stereo/centre/image_raw/compressed"


def drifting(trajectory: Trajectory, stamps_ns: np.ndarray) -> np.ndarray:
    """Odometry positions at ``stamps_ns`` that drift: 2 % scale error and a heading error growing
    by 1 degree per 100 m travelled (a wheel odometry's typical errors), from the first stamp."""
    fine = np.arange(trajectory.start_ns, trajectory.end_ns, 10**8)  # 10 Hz integration
    positions = trajectory.interpolate(fine)[0]
    steps = np.diff(positions, axis=0)
    heading = np.radians(np.concatenate([[0.0], np.cumsum(np.linalg.norm(steps[:, :2], axis=1))]) / 100.0)
    c, s = np.cos(heading[1:]), np.sin(heading[1:])
    turned = np.stack([c * steps[:, 0] - s * steps[:, 1], s * steps[:, 0] + c * steps[:, 1], steps[:, 2]], 1)
    odom = positions[0] + np.concatenate([np.zeros((1, 3)), np.cumsum(1.02 * turned, axis=0)])
    return np.stack([np.interp(stamps_ns, fine, odom[:, k]) for k in range(3)], axis=1)


def descriptors(bag: Path) -> tuple[np.ndarray, np.ndarray]:
    """Stamps and default-model descriptors of the bag's camera frames (1 torch thread)."""
    import torch

    from vbl_ros.model import default_model
    from vbl_ros.model.extractor import DescriptorExtractor

    torch.set_num_threads(1)
    extractor = DescriptorExtractor(default_model(), "cpu", num_threads=1, batch_size=16)
    stamps, descs, batch = [], [], []
    for frame in read_camera_frames(bag, CAMERA_TOPIC):
        stamps.append(frame.stamp_ns)
        batch.append(frame.image_rgb)
        if len(batch) == 16:
            descs.append(extractor(batch))
            batch = []
    if batch:
        descs.append(extractor(batch))
    return np.asarray(stamps, np.int64), np.concatenate(descs).astype(np.float32)


def replay(config: LocalizerConfig, stamps: np.ndarray, desc: np.ndarray, odometry: np.ndarray | None):
    """The localizer's results (no map: loop candidates only) and the loop path's time per frame."""
    from types import SimpleNamespace

    loc = Localizer(SimpleNamespace(dim=desc.shape[1], fingerprint=None), None, config)
    results = [
        loc.localize_descriptor(desc[i], int(stamps[i]), None if odometry is None else odometry[i])
        for i in range(len(stamps))
    ]
    return results


def detector_cost(sizes: tuple[int, ...] = (1000, 3600, 10000), frames: int = 200) -> list[dict[str, object]]:
    """Time of :meth:`LoopDetector.update` per frame against ``N`` eligible session keyframes
    (random unit 320-d descriptors, one keyframe a second): the confirmed mode's added cost."""
    from vbl_ros.tracking import LoopConfig, LoopDetector

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        keyframes = rng.normal(size=(n, 320)).astype(np.float32)
        keyframes /= np.linalg.norm(keyframes, axis=1, keepdims=True)
        stamps = np.arange(n, dtype=np.int64) * 10**9
        queries = rng.normal(size=(frames, 320)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        detector = LoopDetector(LoopConfig())
        times = []
        for i in range(frames):
            t0 = time.perf_counter()
            detector.update(queries[i], (n + 30) * 10**9 + i * 3 * 10**8, keyframes, stamps)
            times.append(time.perf_counter() - t0)
        ms = np.asarray(times) * 1e3
        rows.append({"keyframes": n, "p50_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))})
        print(
            f"LoopDetector.update, {n} keyframes: p50 {rows[-1]['p50_ms']:.2f} ms, p95 {rows[-1]['p95_ms']:.2f} ms"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map-bag", type=Path, default=MAP_BAG, help="first lap (the demo's map drive)")
    parser.add_argument("--query-bag", type=Path, default=QUERY_BAG, help="second lap; alone: no revisits")
    parser.add_argument("--gap-s", type=float, default=10.0, help="unrecorded time between the laps")
    parser.add_argument("--looped-bag", type=Path, default=None, help="keep the looped bag here")
    parser.add_argument(
        "--out", type=Path, default=None, help="results JSON (default results/loop_closure.json)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    info = machine()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        looped = args.looped_bag or Path(tmp) / "looped"
        if not looped.exists():
            write_looped_bag(args.map_bag, args.query_bag, looped, gap_s=args.gap_s)
        reversed_bag = write_looped_bag(
            args.query_bag, args.map_bag, Path(tmp) / "looped_reversed", gap_s=args.gap_s
        )
        drives = {  # name: (bag, end of its first lap)
            "no_revisit (query drive, sun)": (args.query_bag, None),
            "no_revisit (map drive, overcast)": (args.map_bag, None),
            "looped (overcast, then sun)": (looped, read_odometry(args.map_bag).end_ns),
            "looped (sun, then overcast)": (reversed_bag, read_odometry(args.query_bag).end_ns),
        }
        data = {}
        for name, (bag, first_lap_end) in drives.items():
            truth = read_odometry(bag).in_frame(read_utm_origin(bag))
            stamps, desc = descriptors(bag)
            data[name] = (truth, stamps, desc, first_lap_end)
    rows = []
    configs = {"single-frame": LocalizerConfig(loop_confirm_frames=1), "confirmed": LocalizerConfig()}
    evaluation = EvaluationConfig(loop_exclude_recent_s=LocalizerConfig().loop_exclude_recent_s)
    for drive, (truth, stamps, desc, first_lap_end) in data.items():
        positions = truth.interpolate(stamps)[0]
        odometries = {"none": None, "INS": positions, "drifting": drifting(truth, stamps)}
        for mode, config in configs.items():
            for odom_name, odometry in odometries.items():
                t0 = time.perf_counter()
                results = replay(config, stamps, desc, odometry)
                seconds = time.perf_counter() - t0
                report = evaluate_localization(results, positions, query_trajectory=truth, config=evaluation)
                loop = report.per_frame.loop
                has = loop.count > 0
                revisit = loop.revisit
                second_lap = stamps > (first_lap_end if first_lap_end is not None else stamps[-1])
                candidates, wrong = int(loop.count.sum()), int(loop.wrong.sum())
                rows.append(
                    {
                        "drive": drive,
                        "mode": mode,
                        "odometry": odom_name,
                        "frames": len(stamps),
                        "frames_with_candidates": float(has.mean()),
                        "revisit_frames": int(revisit.sum()),
                        "revisit_correct": float(loop.best_correct[revisit].mean())
                        if revisit.any()
                        else math.nan,
                        "second_lap_correct": float(loop.best_correct[second_lap].mean())
                        if second_lap.any()
                        else math.nan,
                        "candidates": candidates,
                        "wrong_candidates": wrong,
                        "precision": 1.0 - wrong / candidates if candidates else math.nan,
                        "non_revisit_frames_with_candidates": float(has[~revisit].mean()),
                        "loop_ms_per_frame": 1e3 * seconds / len(stamps),
                    }
                )
                print(
                    f"{drive:36s} {mode:12s} odom {odom_name:8s}: "
                    f"{report.loop_candidates.frames_with_candidates:.3f} of frames with candidates, "
                    f"{wrong}/{candidates} wrong",
                    flush=True,
                )
    columns = [
        "drive",
        "mode",
        "odometry",
        "frames",
        "frames_with_candidates",
        "revisit_frames",
        "revisit_correct",
        "candidates",
        "wrong_candidates",
        "precision",
        "loop_ms_per_frame",
    ]
    print(table(rows, columns))
    cost = detector_cost()
    payload = {
        "machine": info,
        "command": "benchmarks/loop_closure.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "bags": {"first_lap": str(args.map_bag), "second_lap": str(args.query_bag), "gap_s": args.gap_s},
        "localizer_defaults": dataclasses.asdict(LocalizerConfig()),
        "rows": rows,
        "detector_cost": cost,
        "seconds": time.perf_counter() - started,
    }
    print("wrote", write_results("loop_closure", payload, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
