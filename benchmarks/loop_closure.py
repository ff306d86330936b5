"""Loop-closure candidates, single-frame vs confirmed through time, with and without odometry (issue 11).

Drives scored by THE evaluation routine (:func:`vbl_ros.evaluation.evaluate_localization`, loop
candidates judged against the drive's own truth, 25 m):

- drives that never revisit a place, each alone: every candidate is wrong;
- looped drives: ONE bag per pair of drives of the same route, written by
  :func:`vbl_ros.evaluation.looped.write_looped_bag` (the first drive, then the second ``--gap-s``
  after it, stamps continuous, the second's odometry in the first's frame: the drive back to the
  start is not recorded); its second lap revisits every place of the first in another condition.

Drives are named ``<route>/<condition>`` (:data:`DRIVES`; ``--drive NAME=BAG`` adds one) and each is
*tuning* (the demo's overcast and sunny drives, the ones the defaults were chosen on), *held-out
conditions* (the demo's route at night and in snow) or *held-out town* (other towns, every
condition): the figures of each set are reported apart. ``--pairs FIRST,SECOND ...`` chooses the
looped drives (default: :data:`TUNING_PAIRS` and :data:`HELD_OUT_PAIRS`); every drive of a pair is
also scored alone as a drive without revisits.

Each drive's descriptors are computed once (the default model, 1 torch thread) and cached under
``--work`` (a looped bag's are its two drives' own, checked frame by frame against its stamps);
the localizer's own path after the descriptor (:meth:`Localizer.localize_descriptor`) then runs per
setting: single-frame (``loop_confirm_frames=1``) and confirmed (the defaults, or ``--loop KEY=VALUE``);
without odometry, with the bag's INS odometry (what the node gets with ``use_odometry:=true``), and
with a drifting odometry (the INS scaled by 1.02 and turned by a heading drift of 1 degree per 100 m
travelled).

    nice -n 10 .venv/bin/python benchmarks/loop_closure.py [--pairs demo/overcast,demo/sun ...] [--out JSON]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import math
import sys
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

CAMERA_TOPIC = "/stereo/centre/image_raw/compressed"
TUNING, HELD_OUT_CONDITIONS, HELD_OUT_TOWN = "tuning", "held-out conditions", "held-out town"
_TOWNS = Path("/tmp/vbl_default_model")  # benchmarks/default_model.py's rendered towns C and D
_TRAINING = Path("/tmp/vbl_training_experiment/full")  # benchmarks/training_experiment.py's towns A and B

#: name -> (bag, set): the rendered drives this machine keeps (``vbl demo --out /tmp/demo_out``, the
#: filter benchmark's night and snow drives of the demo's route, and the towns of the model benchmarks)
DRIVES: dict[str, tuple[Path, str]] = {
    "demo/overcast": (Path("/tmp/demo_out/bags/map_2014-11-28-11-20-53"), TUNING),
    "demo/sun": (Path("/tmp/demo_out/bags/query_2014-12-07-14-16-45"), TUNING),
    "demo/night": (Path("/tmp/filter_data/bags/night_2014-12-16-19-20-53"), HELD_OUT_CONDITIONS),
    "demo/snow": (Path("/tmp/filter_data/bags/snow_2014-12-25-09-16-45"), HELD_OUT_CONDITIONS),
    **{
        f"{town}/{cond}": (root / town / f"{i}_{cond}", HELD_OUT_TOWN)
        for root, town, conds in (
            (_TRAINING, "town_a", ("overcast", "sun")),
            (_TRAINING, "town_b", ("overcast", "night", "snow")),
            (_TOWNS, "town_c", ("overcast", "night", "snow")),
            (_TOWNS, "town_d", ("overcast", "night", "snow")),
        )
        for i, cond in enumerate(conds)
    },
    "town_a/night": (_TRAINING / "town_a" / "6_night", HELD_OUT_TOWN),
    "town_a/snow": (_TRAINING / "town_a" / "7_snow", HELD_OUT_TOWN),
}
TUNING_PAIRS = (("demo/overcast", "demo/sun"), ("demo/sun", "demo/overcast"))
HELD_OUT_PAIRS = (
    ("demo/overcast", "demo/night"),
    ("demo/overcast", "demo/snow"),
    ("demo/night", "demo/overcast"),
    *(
        (f"{town}/{a}", f"{town}/{b}")
        for town in ("town_a", "town_b", "town_c", "town_d")
        for a, b in (("overcast", "night"), ("overcast", "snow"), ("night", "overcast"))
    ),
    ("town_a/sun", "town_a/overcast"),
)


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


def camera_stamps(bag: Path) -> np.ndarray:
    """The stamps of the bag's camera frames, in bag order (none decoded)."""
    stamps: list[int] = []

    def note(stamp_ns: int) -> bool:
        stamps.append(stamp_ns)
        return False  # nothing decoded

    for _ in read_camera_frames(bag, CAMERA_TOPIC, keep=note):
        pass
    return np.asarray(stamps, np.int64)


def cached_descriptors(bag: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`descriptors` of ``bag``, kept in ``cache`` (keyed by the bag's path, size and time)."""
    files = sorted(p for p in bag.iterdir() if p.is_file())
    key = hashlib.sha1(
        repr(
            [str(bag.resolve())] + [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        ).encode()
    ).hexdigest()[:16]
    path = cache / f"{bag.name}-{key}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["stamps"], data["desc"]
    stamps, desc = descriptors(bag)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, stamps=stamps, desc=desc)
    return stamps, desc


def looped_descriptors(
    looped: Path, laps: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """The looped bag's stamps and its laps' descriptors: the same images, the second lap restamped
    by one shift (checked here: same frame count, first lap's stamps equal, second's shifted)."""
    (s1, d1), (s2, d2) = laps
    stamps = camera_stamps(looped)
    shift = stamps[len(s1) :] - s2 if len(stamps) == len(s1) + len(s2) else None
    if shift is None or not np.array_equal(stamps[: len(s1)], s1) or np.ptp(shift) != 0:
        raise RuntimeError(f"{looped}: its frames are not its two drives' frames; remove it and run again")
    return stamps, np.concatenate([d1, d2])


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


def score(
    config: LocalizerConfig,
    stamps: np.ndarray,
    desc: np.ndarray,
    truth: Trajectory,
    odometry: np.ndarray | None,
    first_lap_end: int | None,
) -> dict[str, object]:
    """One replay scored by the evaluation routine: the figures of a row."""
    evaluation = EvaluationConfig(loop_exclude_recent_s=LocalizerConfig().loop_exclude_recent_s)
    positions = truth.interpolate(stamps)[0]
    t0 = time.perf_counter()
    results = replay(config, stamps, desc, odometry)
    seconds = time.perf_counter() - t0
    report = evaluate_localization(results, positions, query_trajectory=truth, config=evaluation)
    loop = report.per_frame.loop
    has, revisit = loop.count > 0, loop.revisit
    second_lap = stamps > (first_lap_end if first_lap_end is not None else stamps[-1])
    candidates, wrong = int(loop.count.sum()), int(loop.wrong.sum())
    first_miss = None  # seconds from the second lap's start to its first correct candidate
    if second_lap.any() and (loop.best_correct & second_lap).any():
        first_miss = float((stamps[np.argmax(loop.best_correct & second_lap)] - stamps[second_lap][0]) / 1e9)
    return {
        "frames": len(stamps),
        "frames_with_candidates": float(has.mean()),
        "revisit_frames": int(revisit.sum()),
        "revisit_correct": float(loop.best_correct[revisit].mean()) if revisit.any() else math.nan,
        "second_lap_correct": float(loop.best_correct[second_lap].mean()) if second_lap.any() else math.nan,
        "seconds_to_first_correct": first_miss,
        "candidates": candidates,
        "wrong_candidates": wrong,
        "precision": 1.0 - wrong / candidates if candidates else math.nan,
        "non_revisit_frames_with_candidates": float(has[~revisit].mean()) if (~revisit).any() else math.nan,
        "loop_ms_per_frame": 1e3 * seconds / len(stamps),
    }


def summarise(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per set, mode and odometry: the worst drive without revisits, the worst and mean looped drive,
    all wrong candidates."""
    out = []
    keys = sorted({(r["set"], r["mode"], r["odometry"]) for r in rows}, key=str)
    for key in keys:
        group = [r for r in rows if (r["set"], r["mode"], r["odometry"]) == key]
        alone = [r for r in group if r["kind"] == "no revisit"]
        looped = [r for r in group if r["kind"] == "looped"]
        revisit = [float(r["revisit_correct"]) for r in looped]
        out.append(
            {
                "set": key[0],
                "mode": key[1],
                "odometry": key[2],
                "drives_alone": len(alone),
                "worst_no_revisit": max(
                    (float(r["frames_with_candidates"]) for r in alone), default=math.nan
                ),
                "looped_drives": len(looped),
                "looped_at_90": sum(v >= 0.9 for v in revisit),
                "worst_revisit_correct": min(revisit, default=math.nan),
                "mean_revisit_correct": float(np.mean(revisit)) if revisit else math.nan,
                "wrong_candidates": sum(int(r["wrong_candidates"]) for r in group),
                "candidates": sum(int(r["candidates"]) for r in group),
            }
        )
    return out


def parse_value(text: str) -> object:
    """``--loop`` values: int, then float, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs",
        nargs="+",
        default=None,
        metavar="FIRST,SECOND",
        help="looped drives (names of DRIVES or --drive); default: the tuning and held-out pairs",
    )
    parser.add_argument(
        "--drive", action="append", default=[], metavar="NAME=BAG", help="another drive (held-out town)"
    )
    parser.add_argument("--gap-s", type=float, default=10.0, help="unrecorded time between the laps")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/loops3_data"), help="looped bags and descriptor cache"
    )
    parser.add_argument(
        "--loop",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a loop_* setting of the confirmed mode",
    )
    parser.add_argument("--odometry", default="none,INS,drifting", help="odometry kinds, comma-separated")
    parser.add_argument("--no-single-frame", action="store_true", help="only the confirmed mode")
    parser.add_argument("--no-cost", action="store_true", help="skip the detector cost measurement")
    parser.add_argument(
        "--out", type=Path, default=None, help="results JSON (default results/loop_closure.json)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    info = machine()
    started = time.perf_counter()
    drives = dict(DRIVES)
    for spec in args.drive:
        name, _, bag = spec.partition("=")
        drives[name] = (Path(bag), HELD_OUT_TOWN)
    pairs = [tuple(p.split(",")) for p in args.pairs] if args.pairs else [*TUNING_PAIRS, *HELD_OUT_PAIRS]
    for pair in pairs:
        if len(pair) != 2 or not all(name in drives for name in pair):
            parser.error(
                f"--pairs: {','.join(pair)} is not FIRST,SECOND of known drives ({', '.join(drives)})"
            )
    overrides = {}
    for spec in args.loop:
        key, _, value = spec.partition("=")
        if not key.startswith("loop_") or key not in LocalizerConfig.__dataclass_fields__:
            parser.error(f"--loop: {key} is not a loop_* field of LocalizerConfig")
        overrides[key] = parse_value(value)
    configs = {"confirmed": LocalizerConfig(**overrides)}
    if not args.no_single_frame:
        configs = {"single-frame": LocalizerConfig(loop_confirm_frames=1), **configs}
    odometry_kinds = args.odometry.split(",")
    cache = args.work / "descriptors"
    # (name, kind, set, bag, end of its first lap, descriptors)
    cases: list[tuple[str, str, str, Path, int | None, tuple[np.ndarray, np.ndarray]]] = []
    alone = {}
    for name in dict.fromkeys(n for pair in pairs for n in pair):
        bag, which = drives[name]
        alone[name] = cached_descriptors(bag, cache)
        cases.append((name, "no revisit", which, bag, None, alone[name]))
        print(f"{name}: {len(alone[name][0])} frames ({bag})", flush=True)
    for first, second in pairs:
        looped = args.work / "looped" / f"{first.replace('/', '_')}__{second.replace('/', '_')}"
        if not looped.exists():
            looped.parent.mkdir(parents=True, exist_ok=True)
            write_looped_bag(drives[first][0], drives[second][0], looped, gap_s=args.gap_s)
        order = [TUNING, HELD_OUT_CONDITIONS, HELD_OUT_TOWN]
        which = max(drives[first][1], drives[second][1], key=order.index)  # the more held-out of the two
        first_end = int(alone[first][0][-1]) + 1
        cases.append(
            (
                f"{first} then {second}",
                "looped",
                which,
                looped,
                first_end,
                looped_descriptors(looped, (alone[first], alone[second])),
            )
        )
    rows = []
    for drive, kind, which, bag, first_lap_end, (stamps, desc) in cases:
        truth = read_odometry(bag).in_frame(read_utm_origin(bag))
        odometries = {"none": None, "INS": truth.interpolate(stamps)[0], "drifting": drifting(truth, stamps)}
        for mode, config in configs.items():
            for odom_name in odometry_kinds:
                row = {"drive": drive, "kind": kind, "set": which, "mode": mode, "odometry": odom_name}
                row.update(score(config, stamps, desc, truth, odometries[odom_name], first_lap_end))
                rows.append(row)
                print(
                    f"[{which}] {drive:36s} {mode:12s} odom {odom_name:8s}: "
                    f"{row['frames_with_candidates']:.3f} of frames with candidates, revisited correct "
                    f"{row['revisit_correct']:.3f}, {row['wrong_candidates']}/{row['candidates']} wrong",
                    flush=True,
                )
    columns = [
        "set",
        "drive",
        "mode",
        "odometry",
        "frames",
        "frames_with_candidates",
        "revisit_frames",
        "revisit_correct",
        "seconds_to_first_correct",
        "candidates",
        "wrong_candidates",
        "precision",
    ]
    print(table(rows, columns))
    summary = summarise(rows)
    print(table(summary, list(summary[0])))
    cost = [] if args.no_cost else detector_cost()
    payload = {
        "machine": info,
        "command": "benchmarks/loop_closure.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "drives": {name: {"bag": str(drives[name][0]), "set": drives[name][1]} for name in alone},
        "pairs": [list(p) for p in pairs],
        "gap_s": args.gap_s,
        "localizer_defaults": dataclasses.asdict(LocalizerConfig()),
        "confirmed_config": dataclasses.asdict(configs["confirmed"]),
        "rows": rows,
        "summary": summary,
        "detector_cost": cost,
        "seconds": time.perf_counter() - started,
    }
    print("wrote", write_results("loop_closure", payload, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
