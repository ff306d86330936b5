"""Single-frame vs filtered pose priors on query drives, scored by ``vbl evaluate``'s routine.

For each query bag: every camera frame's descriptor is computed once (the embedded default model,
1 thread; cached next to the results as ``descriptors_<bag>.npz``), then the core localizer
(``Localizer.localize_descriptor``, as ``vbl evaluate --offline`` runs it after the network) replays
the drive in each mode:

- ``single``: each frame judged alone (today's default);
- ``filtered, no odometry``: the temporal filter with its bounded speed prior;
- ``filtered, odometry``: with the bag's odometry (simulated: exact);
- ``filtered, noisy odometry``: the same odometry with a 3 % scale error and a heading drift of
  0.5 deg per metre driven (an honest robot).

Two hard cases on the first bag: ``kidnapped`` (half-way the replay jumps 100 frames ahead while
the odometry carries on smoothly) and ``off-map`` (a map of the route's first half only: the drive
leaves the mapped streets). Each run is scored by :func:`vbl_ros.evaluation.evaluate_localization`
against the bag's odometry in the map's frame. The filter's own cost per frame (``PlaceFilter.update``)
is timed apart, with its p95.

Without bags only the cost check runs (``--out results/tracking_cost.json``).

Usage: one map and its query bags, or a suite of towns (a YAML list of ``{name, map, queries,
role, cases}``, ``role`` ``tuning`` or ``held-out``, ``cases`` whether to run the kidnapped and
off-map cases on the town's first query; see ``benchmarks/tracking_suite.yaml``)::

    nice -n 10 python benchmarks/tracking.py --map /tmp/demo_out/map_spacing2m \\
        --out benchmarks/results/tracking.json \\
        /tmp/demo_out/bags/query_2014-12-07-14-16-45 night_bag snow_bag
    nice -n 10 python benchmarks/tracking.py --suite benchmarks/tracking_suite.yaml \\
        --out benchmarks/results/tracking.json

Descriptors are cached under ``--cache``, in a folder per town (``NAME/descriptors_<bag>.npz``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml
from _common import git_commit

from vbl_ros.bags import read_camera_frames, read_odometry
from vbl_ros.evaluation import EvaluationConfig, evaluate_localization, frame_truth
from vbl_ros.geometry.rotations import euler_to_rotation, quaternion_to_euler, rotation_to_quaternion
from vbl_ros.localizer import Localizer, LocalizerConfig
from vbl_ros.mapping import KeyframeMap

logger = logging.getLogger("benchmarks.tracking")

SCALE_ERROR = 0.03
HEADING_DRIFT_DEG_PER_M = 0.5
JUMP_AT, JUMP_FRAMES = 150, 100


def descriptors(bag: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(stamps (F,), descriptors (F, D))`` of the bag's camera frames, computed once."""
    path = cache / f"descriptors_{bag.name}.npz"
    if not path.exists():
        import torch

        from vbl_ros.model import DescriptorExtractor, default_model

        torch.set_num_threads(1)
        extractor = DescriptorExtractor(default_model(), "cpu", num_threads=1)
        stamps, desc = [], []
        for frame in read_camera_frames(bag):
            stamps.append(frame.stamp_ns)
            desc.append(extractor([frame.image_rgb])[0])
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, stamps=np.array(stamps, np.int64), desc=np.array(desc, np.float32))
    data = np.load(path)
    return data["stamps"], data["desc"]


def odometry_poses(bag: Path, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bag's odometry ``(x, y, z)`` and yaw at each stamp (the bag's own frame)."""
    positions, quats = read_odometry(bag).interpolate(stamps)
    return positions, quaternion_to_euler(quats)[:, 2]


def noisy(positions: np.ndarray, yaws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Odometry integrated again from its steps with a scale error and a heading drift."""
    steps = np.diff(positions[:, :2], axis=0)
    dist = np.linalg.norm(steps, axis=1)
    drift = np.radians(HEADING_DRIFT_DEG_PER_M) * np.concatenate([[0.0], np.cumsum(dist)])
    c, s = np.cos(drift[:-1]), np.sin(drift[:-1])
    rotated = np.column_stack([c * steps[:, 0] - s * steps[:, 1], s * steps[:, 0] + c * steps[:, 1]])
    xy = positions[0, :2] + np.concatenate([[[0.0, 0.0]], np.cumsum((1 + SCALE_ERROR) * rotated, axis=0)])
    return np.column_stack([xy, positions[:, 2]]), yaws + drift


def replay(
    keyframe_map: KeyframeMap,
    config: LocalizerConfig,
    stamps: np.ndarray,
    desc: np.ndarray,
    odometry: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[list, list[float]]:
    """The localizer's results for each frame, and the filter's own time per frame (ms)."""
    localizer = Localizer(None, keyframe_map, config)
    results, filter_ms = [], []
    update = localizer.filter.update if localizer.filter is not None else None
    if update is not None:

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = update(*args, **kwargs)
            filter_ms.append((time.perf_counter() - t0) * 1e3)
            return out

        localizer.filter.update = timed  # type: ignore[method-assign]
    for i, stamp in enumerate(stamps):
        pose = (None, None)
        if odometry is not None:
            position, yaw = odometry[0][i], odometry[1][i]
            pose = (position, rotation_to_quaternion(euler_to_rotation(0.0, 0.0, float(yaw))))
        results.append(localizer.localize_descriptor(desc[i], int(stamp), *pose))
    return results, filter_ms


def score(results: list, truth_positions: np.ndarray, truth_yaw: np.ndarray, keyframe_map) -> dict:
    report = evaluate_localization(
        results,
        truth_positions,
        map_positions=keyframe_map.positions(),
        ground_truth_yaw_rad=truth_yaw,
        config=EvaluationConfig(),
    )
    errors = []
    for r, t in zip(results, truth_positions, strict=True):
        if r.pose_prior is not None and np.all(np.isfinite(t)):
            errors.append(float(np.linalg.norm(np.array(r.pose_prior.position[:2]) - t[:2])))
    return {
        "frames": report.num_frames,
        "availability": report.availability,
        "priors": report.priors_published,
        "precision_25m": report.prior_precision,
        "error_median_m": report.prior_error_median_m,
        "error_p95_m": report.prior_error_p95_m,
        "error_max_m": max(errors) if errors else math.nan,
        "coverage_95": report.covariance_coverage_95,
        "states": {
            s: sum(r.filter_state == s for r in results) for s in ("initializing", "tracking", "lost")
        },
    }


def kidnapped(stamps, desc, odom, truth_p, truth_y):
    """Frames ``[0, JUMP_AT)`` then ``[JUMP_AT + JUMP_FRAMES, end)``, re-stamped to run on; the
    odometry after the jump continues smoothly from the last pose before it (it never saw the jump)."""
    keep = np.r_[0:JUMP_AT, JUMP_AT + JUMP_FRAMES : len(stamps)]
    dt = int(np.median(np.diff(stamps)))
    new_stamps = stamps[0] + dt * np.arange(len(keep))
    pos, yaw = odom[0][keep].copy(), odom[1][keep].copy()
    a, b = JUMP_AT - 1, JUMP_AT  # last frame before, first after
    turn = yaw[a] - yaw[b]
    c, s = math.cos(turn), math.sin(turn)
    rel = pos[b:, :2] - pos[b, :2]
    step = pos[a, :2] - pos[a - 1, :2]
    pos[b:, :2] = pos[a, :2] + step + rel @ np.array([[c, s], [-s, c]])
    yaw[b:] += turn
    return new_stamps, desc[keep], (pos, yaw), truth_p[keep], truth_y[keep]


def after_jump(results: list, truth: np.ndarray) -> dict:
    """Frames after the jump until the filter tracks the right place again; wrong priors after it."""
    wrong, relocalized = [], None
    for i in range(JUMP_AT, len(results)):
        prior = results[i].pose_prior
        if prior is None:
            continue
        err = float(np.linalg.norm(np.array(prior.position[:2]) - truth[i, :2]))
        if err > 25.0:
            wrong.append(i - JUMP_AT)
        elif relocalized is None and not any(w > i - JUMP_AT for w in wrong):
            relocalized = i - JUMP_AT
    return {"wrong_priors_after_jump_at_frames": wrong, "frames_to_relocalize": relocalized}


def submap(keyframe_map: KeyframeMap, keep: np.ndarray) -> KeyframeMap:
    """A map of the keyframes ``keep`` only (in memory)."""
    out = KeyframeMap.create(keyframe_map.dim, keyframe_map.model_fingerprint, keyframe_map.utm_origin)
    out.add(keyframe_map.descriptors()[keep], [keyframe_map.keyframe(int(i)) for i in np.flatnonzero(keep)])
    return out


def time_filter(keyframes: int, frames: int = 2000, odometry: bool = True) -> dict:
    """The filter's cost per frame on a map of ``keyframes`` places (positions only: the filter never
    touches descriptors), fed ``4 * top_k`` matches per frame, with odometry or without (the speed
    prior, and the comparison with the best rival place)."""
    from vbl_ros.tracking import FilterConfig, PlaceFilter

    rng = np.random.default_rng(0)
    side = math.ceil(math.sqrt(keyframes))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:keyframes] * 2.5
    positions = np.column_stack([grid, np.zeros(keyframes)])
    config = FilterConfig()
    filt = PlaceFilter(positions, rng.uniform(-np.pi, np.pi, keyframes), config)
    k = 4 * LocalizerConfig().top_k
    times, cpu = [], []
    for i in range(frames):
        truth = 2.5 * i
        near = np.flatnonzero(np.abs(grid[: side * 4, 0] - truth % (side * 2.5)) < 10)[: k // 2]
        ids = np.concatenate([near, rng.integers(0, keyframes, k - len(near))])
        scores = np.sort(rng.uniform(0.88, 0.95, k))[::-1]
        t0, c0 = time.perf_counter(), time.thread_time()
        filt.update(i * 312_500_000, ids, scores, (truth, 0.0, 0.0) if odometry else None)
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    c50, c95 = np.percentile(cpu, [50, 95])
    return {
        "keyframes": keyframes,
        "odometry": odometry,
        "frames": frames,
        "wall_p50_ms": p50,
        "wall_p95_ms": p95,
        "wall_p99_ms": p99,
        "cpu_p50_ms": c50,
        "cpu_p95_ms": c95,
        "load_average_1min": os.getloadavg()[0],
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_town(
    keyframe_map: KeyframeMap,
    bags: list[Path],
    cache: Path,
    modes: dict,
    cases: bool,
    filter_ms: list[float],
) -> dict:
    """Every mode on every query bag of one town, and the hard cases on its first bag when asked."""
    drives: dict = {}
    for i, bag in enumerate(bags):
        stamps, desc = descriptors(bag, cache)
        truth = frame_truth(bag, keyframe_map.utm_origin)
        truth_p, truth_y = truth.positions(stamps), truth.yaw_rad(stamps)
        exact = odometry_poses(bag, stamps)
        odometry = {None: None, "exact": exact, "noisy": noisy(*exact)}
        drive: dict = {}
        for name, (config, odom) in modes.items():
            results, ms = replay(keyframe_map, config, stamps, desc, odometry[odom])
            filter_ms += ms
            drive[name] = score(results, truth_p, truth_y, keyframe_map)
            print(f"{bag.name:40s} {name:26s} {json.dumps(drive[name])}", flush=True)
        if i == 0 and cases:
            for name in ("single", "filtered, odometry", "filtered, no odometry"):
                config, odom = modes[name]
                k_stamps, k_desc, k_odom, k_truth, k_yaw = kidnapped(stamps, desc, exact, truth_p, truth_y)
                results, _ = replay(keyframe_map, config, k_stamps, k_desc, k_odom if odom else None)
                case = {**score(results, k_truth, k_yaw, keyframe_map), **after_jump(results, k_truth)}
                drive[f"kidnapped: {name}"] = case
                print(f"{bag.name:40s} kidnapped {name:16s} {json.dumps(case)}", flush=True)
            half = np.arange(len(keyframe_map)) < len(keyframe_map) // 2
            small = submap(keyframe_map, half)
            for name in ("single", "filtered, odometry", "filtered, no odometry"):
                config, odom = modes[name]
                results, _ = replay(small, config, stamps, desc, exact if odom else None)
                case = score(results, truth_p, truth_y, small)
                near = np.min(
                    np.linalg.norm(truth_p[:, None, :2] - small.positions()[None, :, :2], axis=2), axis=1
                )
                off = near > 25.0
                case["frames_off_map"] = int(off.sum())
                case["priors_off_map"] = sum(
                    r.pose_prior is not None for r, o in zip(results, off, strict=True) if o
                )
                drive[f"off-map (first half of the map): {name}"] = case
                print(f"{bag.name:40s} off-map {name:18s} {json.dumps(case)}", flush=True)
        drives[bag.name] = drive
    return drives


def load_suite(path: Path) -> list[dict]:
    """The towns of a suite file: a YAML list of ``{name, map, queries, role, cases}``."""
    towns = yaml.safe_load(path.read_text())
    if not isinstance(towns, list) or not towns:
        raise SystemExit(f"{path}: expected a YAML list of towns ({{name, map, queries, role, cases}})")
    for town in towns:
        missing = {"name", "map", "queries"} - set(town)
        if missing:
            raise SystemExit(f"{path}: town {town} lacks {', '.join(sorted(missing))}")
        town.setdefault("role", "tuning")
        town.setdefault("cases", False)
    return towns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bags", type=Path, nargs="*", help="query bags (none: only the cost check)")
    parser.add_argument("--map", type=Path, help="the map (needed with bags)")
    parser.add_argument("--suite", type=Path, help="a YAML list of towns {name, map, queries, role, cases}")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vbl_tracking_cache"))
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="LocalizerConfig overrides, e.g. filter_min_mass=0.9",
    )
    parser.add_argument("--no-cases", action="store_true", help="skip the kidnapped and off-map cases")
    parser.add_argument(
        "--timing-keyframes",
        type=int,
        nargs="*",
        default=[400, 1_000_000],
        help="map sizes of the cost check",
    )
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    logging.basicConfig(level=logging.WARNING)
    meta = {
        "command": "python benchmarks/tracking.py " + " ".join(os.sys.argv[1:]),
        "date": _now(),
        "machine": f"{os.cpu_count()} x {platform.processor() or platform.machine()}, "
        f"load {os.getloadavg()[0]:.1f}",
        "git_commit": git_commit(),
    }
    if not args.bags and args.suite is None:
        rows = [time_filter(n, odometry=o) for n in args.timing_keyframes for o in (True, False)]
        for row in rows:
            print("filter cost per frame:", row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**meta, "filter_cost_vs_map_size": rows}, indent=2) + "\n")
        return
    if args.suite is not None:
        towns = load_suite(args.suite)
    elif args.map is None:
        parser.error("--map is needed with query bags")
    else:
        towns = [
            {"name": args.map.name, "map": args.map, "queries": args.bags, "role": "tuning", "cases": True}
        ]
    modes = {
        "single": (LocalizerConfig(prior_mode="single"), None),
        "filtered, no odometry": (LocalizerConfig(prior_mode="filtered", **overrides), None),
        "filtered, odometry": (LocalizerConfig(prior_mode="filtered", **overrides), "exact"),
        "filtered, noisy odometry": (LocalizerConfig(prior_mode="filtered", **overrides), "noisy"),
    }
    out: dict = {
        **meta,
        "settings": dataclasses.asdict(modes["filtered, odometry"][0]),
        "noisy_odometry": f"{100 * SCALE_ERROR:g} % scale error, {HEADING_DRIFT_DEG_PER_M:g} deg/m heading drift",
        "towns": {},
    }
    filter_ms: list[float] = []
    for town in towns:
        keyframe_map = KeyframeMap.load(Path(town["map"]))
        bags = [Path(b) for b in town["queries"]]
        print(
            f"== {town['name']} ({town['role']}): {town['map']} ({len(keyframe_map)} keyframes)", flush=True
        )
        drives = run_town(
            keyframe_map,
            bags,
            args.cache / town["name"],
            modes,
            bool(town["cases"]) and not args.no_cases,
            filter_ms,
        )
        out["towns"][town["name"]] = {
            "role": town["role"],
            "map": f"{town['map']} ({len(keyframe_map)} keyframes)",
            "drives": drives,
        }
        out["load_average_1min_after_" + town["name"]] = os.getloadavg()[0]
    times = np.array(filter_ms)
    out["filter_ms_per_frame"] = {
        "p50": float(np.percentile(times, 50)),
        "p95": float(np.percentile(times, 95)),
        "p99": float(np.percentile(times, 99)),
        "frames": len(times),
        "particles": LocalizerConfig().filter_particles,
    }
    print("filter cost per frame in the replays (ms):", out["filter_ms_per_frame"])
    out["filter_cost_vs_map_size"] = [
        time_filter(n, odometry=o) for n in args.timing_keyframes for o in (True, False)
    ]
    for row in out["filter_cost_vs_map_size"]:
        print("filter cost per frame:", row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=lambda o: dataclasses.asdict(o)) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
