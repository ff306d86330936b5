"""``vbl demo``: the whole pipeline on the embedded default, with no download and no dataset.

1. simulate two traversals of the demo route (a map drive, a query drive in another condition);
2. convert both into bags with ``vbl convert robotcar``'s function;
3. build a keyframe map from the map bag with the embedded pretrained model;
4. start the ``localize`` node as its own process, exactly as ``ros2 launch`` would;
5. replay the query bag's camera into it over DDS and collect what it publishes;
6. score it with the shared evaluation routine: recall@1 within 25 m, the median pose-prior error,
   the latency; save a plot of the route with correct and wrong matches.

Each step skips work a previous run finished, so a second ``vbl demo`` goes straight to replay.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vbl_ros.errors import VblError
from vbl_ros.evaluation import evaluate_localization, ground_truth, plot_localization
from vbl_ros.mapping import KeyframeMap, MapConfig, build_map
from vbl_ros.robotcar.convert import ConvertConfig, convert_robotcar
from vbl_ros.ros.collector import OutputCollector
from vbl_ros.ros.process import find_share_file, localize_command, start_localize, stop_process
from vbl_ros.ros.replay import replay_bag
from vbl_ros.sim.simulate import SimConfig, simulate

__all__ = ["DemoConfig", "DemoReport", "run_demo"]

logger = logging.getLogger(__name__)

CAMERA_TOPIC = "/stereo/centre/image_raw/compressed"


@dataclass(frozen=True)
class DemoConfig:
    """What ``vbl demo`` runs.

    Attributes:
        preset: simulation preset (``demo``: a 1 km route driven twice; ``tiny`` for tests).
        seed: simulation seed.
        map_spacing_m: metres between map keyframes.
        replay_rate: replay speed relative to the bag's own pace.
        threshold_m: a match or prior within this distance of the truth is correct.
        device: where the node runs the network: ``auto``, ``cpu`` or ``cuda``.
        node_start_timeout_s: how long to wait for the node to come up.
        settle_s: how long to wait for the node's last outputs after the last frame.
    """

    preset: str = "demo"
    seed: int = 0
    map_spacing_m: float = 2.0
    replay_rate: float = 2.0
    threshold_m: float = 25.0
    device: str = "auto"
    node_start_timeout_s: float = 120.0
    settle_s: float = 3.0


@dataclass(frozen=True)
class DemoReport:
    """The demo's figures (also written to ``<out>/demo_report.json``)."""

    frames_sent: int
    frames_answered: int
    priors_published: int
    recall_at_1: float
    prior_precision: float
    median_prior_error_m: float
    latency_p50_ms: float
    latency_p95_ms: float
    map_keyframes: int
    plot: str
    threshold_m: float = 25.0

    def summary(self) -> str:
        return (
            f"query frames sent {self.frames_sent}, answered {self.frames_answered}; "
            f"recall@1 within {self.threshold_m:g} m: {100 * self.recall_at_1:.1f} %; "
            f"pose priors published for {self.priors_published} frames, "
            f"{100 * self.prior_precision:.1f} % of them within {self.threshold_m:g} m, "
            f"median error {self.median_prior_error_m:.2f} m; "
            f"latency p50 {self.latency_p50_ms:.1f} ms, p95 {self.latency_p95_ms:.1f} ms; "
            f"map of {self.map_keyframes} keyframes; plot: {self.plot}"
        )


def _prepare(out: Path, config: DemoConfig) -> tuple[Path, Path, Path]:
    """Steps 1-3; returns (map folder, query bag, map bag)."""
    sim_dir, bag_dir = out / "sim", out / "bags"
    traversals = (
        sorted(p for p in sim_dir.glob("????-??-??-??-??-??") if p.is_dir()) if sim_dir.exists() else []
    )
    if len(traversals) < 2:
        logger.info("1/5 simulating the %s route into %s", config.preset, sim_dir)
        sim_config = SimConfig.preset(config.preset)
        traversals = simulate(sim_dir, dataclasses.replace(sim_config, seed=config.seed))
    map_trav, query_trav = traversals[0], traversals[1]
    sdk = sim_dir / "sdk"
    bags = []
    for name, traversal in (("map", map_trav), ("query", query_trav)):
        bag = bag_dir / f"{name}_{traversal.name}"
        if not bag.exists():
            logger.info("2/5 converting %s -> %s", traversal, bag)
            convert_robotcar(
                traversal,
                bag,
                extrinsics_dir=sdk / "extrinsics",
                models_dir=sdk / "models",
                config=ConvertConfig(side_modality=False, lidar_points=False),
            )
        bags.append(bag)
    map_dir = out / f"map_spacing{config.map_spacing_m:g}m"
    if not map_dir.exists():
        logger.info("3/5 building the keyframe map %s", map_dir)
        build_map(bags[0], map_dir, config=MapConfig(spacing_m=config.map_spacing_m, device=config.device))
    return map_dir, bags[1], bags[0]


def _replay(map_dir: Path, query_bag: Path, out: Path, config: DemoConfig) -> OutputCollector:
    """Steps 4-5: node process + replay over DDS."""
    domain_id = int(os.environ.get("VBL_DEMO_DOMAIN_ID", 50 + os.getpid() % 50))
    command = localize_command(
        params_file=find_share_file("config/localize.yaml"),
        parameters={"map": str(map_dir.resolve()), "device": config.device, "image_transport": "compressed"},
        remappings={"image": "/camera/image/compressed"},
    )
    logger.info("4/5 starting the localize node: %s", " ".join(command))
    process = start_localize(command, domain_id=domain_id, log_path=out / "localize_node.log")
    collector = OutputCollector(domain_id, name="vbl_demo_player")
    try:
        started = time.monotonic()
        while not collector.diagnostics():  # the node publishes diagnostics once it is ready
            if process.poll() is not None:
                raise VblError(
                    f"the localize node exited with code {process.returncode}; see {out / 'localize_node.log'}"
                )
            if time.monotonic() - started > config.node_start_timeout_s:
                raise VblError(f"the localize node did not come up in {config.node_start_timeout_s} s")
            time.sleep(0.2)
        logger.info("5/5 replaying %s into the node", query_bag)
        replay_bag(
            collector.node,
            query_bag,
            {CAMERA_TOPIC: "/camera/image/compressed"},
            rate=config.replay_rate,
            on_publish=lambda _topic, bag_time_ns: collector.note_sent(bag_time_ns),
        )
        time.sleep(config.settle_s)
    finally:
        code = stop_process(process)
        collector.close()
    logger.info("the localize node stopped with exit code %s", code)
    return collector


def run_demo(out: Path, config: DemoConfig | None = None) -> DemoReport:
    """Run the demo in the folder ``out`` and print its figures."""
    config = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    map_dir, query_bag, _map_bag = _prepare(out, config)
    collector = _replay(map_dir, query_bag, out, config)

    stamps = np.array(collector.sent_stamps(), dtype=np.int64)
    keyframe_map = KeyframeMap.load(map_dir)
    truth = ground_truth(query_bag, stamps, keyframe_map.utm_origin)  # in the map's frame
    results = [collector.result(int(s)) for s in stamps]
    answered_s = [collector.latency_s(int(s)) for s in stamps]
    latencies = np.array([math.nan if s is None else 1000 * s for s in answered_s])
    report = evaluate_localization(results, truth, threshold_m=config.threshold_m, latencies_ms=latencies)
    top1 = np.array([r.matches[0].keyframe.position if r.matches else (math.nan,) * 3 for r in results])
    latencies = latencies[np.isfinite(latencies)]
    title = (
        f"vbl demo: {len(stamps)} query frames, R@1 {100 * report.recall_at_1:.1f} % within {config.threshold_m:g} m, "
        f"priors for {100 * report.fraction_published:.0f} % of frames, median prior error {report.median_error_m:.1f} m"
    )
    plot = plot_localization(
        report, keyframe_map.positions(), truth, top1, out / "demo_route.png", title=title
    )
    result = DemoReport(
        frames_sent=len(stamps),
        frames_answered=len(latencies),
        priors_published=len(collector.stamps("pose_prior")),
        recall_at_1=report.recall_at_1,
        prior_precision=report.precision,
        median_prior_error_m=report.median_error_m,
        latency_p50_ms=float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        latency_p95_ms=float(np.percentile(latencies, 95)) if len(latencies) else float("nan"),
        map_keyframes=len(keyframe_map),
        plot=str(plot),
        threshold_m=config.threshold_m,
    )
    (out / "demo_report.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(result.summary())
    logger.info("demo finished in %.0f s", time.monotonic() - started)
    return result
