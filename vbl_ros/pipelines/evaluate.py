"""``vbl evaluate``: replay query bags against a map (the live node over DDS, or offline), score them, write the report.

:func:`evaluate` composes the steps: check the inputs (the map and the model belong together, every
bag can be read and brought into the map's frame), replay each query bag (live:
:func:`vbl_ros.ros.live.replay_live`, the installed ``localize`` node as on the robot; offline:
:func:`vbl_ros.evaluation.localize_bag`, the core localizer in this process), score each with the one
routine (:func:`vbl_ros.evaluation.evaluate_localization`) against its odometry in the map's frame,
and write ``report.json``, ``report.md`` and the plots (:func:`vbl_ros.evaluation.write_report`) into
a temporary sibling folder that is renamed into place when complete. :func:`compare_reports` puts
finished reports side by side (:func:`vbl_ros.evaluation.compare`).

What is scored: the frames the localizer processed. Frames it dropped (latest frame wins), frames
lost on the way and frames it could not decode are counted in the report's frame counts, not scored.
A query bag without odometry has no ground truth: its frames are counted and its retrieval-free
figures (pose-prior availability, loop-candidate counts, latency, frame counts) are reported; recall
and errors are n/a, and the report says so in a note.

The descriptor runs as on the robot, live and offline alike: :func:`descriptor_settings` reads the
node's ``runtime``, ``precision`` and ``inference_threads`` from the parameters file the node is
started with (the options ``runtime`` / ``precision`` / ``inference_threads`` override them, and live
they are written into the node's parameters file), and offline :func:`offline_extractor` builds the
extractor with :func:`vbl_ros.export.build_extractor` exactly as the node does, so an offline run
reproduces a live one frame by frame whatever the runtime. Training validation is the exception: it
scores a network while it trains, so it runs it in eager PyTorch (``vbl_ros.training``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import platform
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vbl_ros.bags import CAMERA_TOPICS, ODOMETRY_TOPIC, open_reader, read_odometry
from vbl_ros.config import from_dict
from vbl_ros.errors import ConfigError, MissingDataError, OutputExistsError
from vbl_ros.evaluation import (
    EvaluationConfig,
    EvaluationReport,
    FrameCounts,
    FrameTruth,
    LocalizationReport,
    compare,
    evaluate_localization,
    frame_truth,
    load_report,
    localize_bag,
    write_report,
)
from vbl_ros.export.metadata import model_file_format, read_metadata
from vbl_ros.export.runtimes import PRECISIONS, RUNTIMES, Extractor, build_extractor
from vbl_ros.files import recover_dir, replace_dir, temp_dir
from vbl_ros.localizer import LocalizationResult, Localizer, LocalizerConfig
from vbl_ros.mapping import KeyframeMap
from vbl_ros.mapping.adapt import resolve_model
from vbl_ros.mapping.store import check_model_fingerprint

__all__ = [
    "DEVICES",
    "DescriptorSettings",
    "EvaluateConfig",
    "compare_reports",
    "descriptor_settings",
    "evaluate",
    "offline_extractor",
    "write_node_params",
]

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
_IMAGE_TYPES = {"sensor_msgs/msg/CompressedImage": True, "sensor_msgs/msg/Image": False}


@dataclass(frozen=True)
class EvaluateConfig:
    """How ``vbl evaluate`` replays the query bags and scores them.

    Attributes:
        offline: run the core localizer frame by frame in this process, as fast as it goes, instead
            of the ``localize`` node over DDS.
        rate: live replay pace relative to each bag's recorded pace (2.0: twice as fast).
        device: where the network runs: auto (CUDA when available), cpu or cuda.
        params_file: the node's parameters file (top_k, thresholds, ...; the map, model, device and
            image transport are set by the evaluation); ``None``: the package's ``config/localize.yaml``.
            Offline mode reads the localizer's settings from the same file.
        camera_topic: the bags' image topic; ``None``: the centre camera, or the only image topic.
        truth_max_gap_s: odometry gaps longer than this are not interpolated across; frames in
            them have no ground truth and are counted apart.
        node_start_timeout_s: how long the live node may take to load its model and map.
        use_odometry: give the localizer each bag's odometry with every frame (session keyframes by
            distance, the filtered prior's motion step): offline, the pose at each frame's stamp;
            live, the bag's odometry topic replayed into the node, started with ``use_odometry:
            true``. Simulated odometry is exact; a robot's drifts.
        runtime: the descriptor's runtime (``auto``, ``torch``, ``onnxruntime``, ``openvino``,
            ``tensorrt``); ``None``: the node's ``runtime`` parameter in ``params_file``. Live, a
            value here is written into the node's parameters; offline, the same extractor is built.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``; ``None``: the node's ``precision``
            parameter (empty = ``auto``).
        inference_threads: the network's CPU threads; ``None``: the node's ``inference_threads``.
        evaluation: what counts as right (success radius, recall@N, ...).
    """

    offline: bool = False
    rate: float = 1.0
    device: str = "auto"
    params_file: str | None = None
    camera_topic: str | None = None
    truth_max_gap_s: float = 1.0
    node_start_timeout_s: float = 120.0
    use_odometry: bool = False
    runtime: str | None = None
    precision: str | None = None
    inference_threads: int | None = None
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ConfigError(
                f"rate must be a positive factor of the bags' pace, e.g. 1 or 2; got {self.rate}"
            )
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        if not (math.isfinite(self.truth_max_gap_s) and self.truth_max_gap_s > 0):
            raise ConfigError(f"truth_max_gap_s must be > 0 s, got {self.truth_max_gap_s}")
        if not self.node_start_timeout_s > 0:
            raise ConfigError(f"node_start_timeout_s must be > 0 s, got {self.node_start_timeout_s}")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {self.runtime!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.inference_threads is not None and self.inference_threads < 1:
            raise ConfigError(f"inference_threads must be >= 1, got {self.inference_threads}")


@dataclass(frozen=True)
class DescriptorSettings:
    """How the node runs its descriptor network, and so how the offline replay runs it; the
    defaults are the node's (``vbl_ros.ros.params.NodeParams``, whose empty ``precision`` is ``auto``).

    Attributes:
        runtime: one of :data:`~vbl_ros.export.runtimes.RUNTIMES`.
        precision: one of :data:`~vbl_ros.export.runtimes.PRECISIONS`.
        threads: intra-op CPU threads.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    runtime: str = "auto"
    precision: str = "auto"
    threads: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {self.runtime!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if not (isinstance(self.threads, int) and self.threads >= 1):
            raise ConfigError(f"inference_threads must be an integer >= 1, got {self.threads!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")

    def describe(self) -> str:
        """``runtime auto, precision auto, 1 thread(s), device cpu`` (the report's header)."""
        return f"runtime {self.runtime}, precision {self.precision}, {self.threads} thread(s), device {self.device}"


@dataclass(frozen=True)
class _Query:
    """A query bag, checked: its camera topic and its truth in the map's frame."""

    name: str
    bag: Path
    camera_topic: str
    compressed: bool
    truth: FrameTruth
    note: str | None


@dataclass(frozen=True)
class _Replayed:
    """What the localizer said about the frames it processed, with their latencies and the counts."""

    results: Sequence[LocalizationResult]
    latencies_ms: Sequence[float]
    frames: FrameCounts


def evaluate(
    map_dir: Path | str,
    query_bags: Sequence[Path | str],
    out: Path | str,
    *,
    model: Path | str | None = None,
    config: EvaluateConfig | None = None,
    overwrite: bool = False,
    meta: Mapping[str, str] | None = None,
) -> Path:
    """Replay ``query_bags`` against the map ``map_dir``, score each and all together; write the report.

    Args:
        map_dir: a map from ``vbl build-map``.
        query_bags: the query drives (each reported separately and together, as "all").
        out: the report folder to create (``report.json``, ``report.md``, ``plots/``; live mode
            adds the node's logs in ``logs/``).
        model: the model the map was built with; ``None``: the model the map carries (``vbl
            build-map --adapt``), else the embedded default model.
        config: live or offline, pace, device, parameters, success radius.
        overwrite: replace an existing report at ``out``.
        meta: extra lines for the report's header (e.g. the command).

    Returns:
        ``out``.

    Raises:
        OutputExistsError: ``out`` exists (and ``overwrite`` is false, or it is not a report).
        MapError: no map at ``map_dir``. ModelMismatchError: the map was built with another model.
        MissingDataError: a bag is missing, unreadable or has no camera topic.
        FrameMismatchError: a bag's odometry cannot be brought into the map's frame.
    """
    config = config or EvaluateConfig()
    out = Path(out).absolute()
    _check_out(out, overwrite, "report.json")
    params_file = Path(config.params_file) if config.params_file else _package_params_file()
    localizer_config = localizer_config_from_params(params_file)
    settings = descriptor_settings(params_file, config)
    keyframe_map = KeyframeMap.load(map_dir)  # a missing or damaged map is refused before the model loads
    model = resolve_model(model, map_dir)  # a map built with --adapt carries its model
    extractor = offline_extractor(model, settings) if config.offline else None
    fingerprint, model_config = _model_identity(model, extractor)
    check_model_fingerprint(map_dir, keyframe_map.model_fingerprint, fingerprint)
    queries = [_inspect(bag, name, keyframe_map, config) for name, bag in _unique_names(query_bags).items()]
    with _staging(out, overwrite, "report.json") as staging:
        if extractor is not None:
            replay = _offline_replayer(extractor, keyframe_map, localizer_config, config)
        else:
            node_params = write_node_params(params_file, config, staging / "logs")
            replay = _live_replayer(Path(map_dir), model, node_params, staging / "logs", config)
        scored = {q.name: _score(q, replay(q), keyframe_map, config) for q in queries}
        identity = (fingerprint, model_config)
        header = _meta(
            map_dir, keyframe_map, model, identity, params_file, queries, config, settings, extractor, meta
        )
        report = EvaluationReport.of(scored, meta=header)
        write_report(report, staging, map_positions=keyframe_map.positions())
    logger.info("evaluation written to %s: %s", out, report.all.summary())
    return out


def compare_reports(report_dirs: Sequence[Path | str], out: Path | str, *, overwrite: bool = False) -> Path:
    """Several reports side by side (``out/compare.md`` and ``out/compare_*.png``); returns ``out``.

    Each report is labelled with its folder's name (with its parent's when two names are equal).

    Raises:
        ReportError: a folder holds no readable report. OutputExistsError: ``out`` exists.
    """
    if not report_dirs:
        raise ConfigError("--compare needs at least one report folder written by vbl evaluate")
    out = Path(out).absolute()
    _check_out(out, overwrite, "compare.md")
    reports = {label: load_report(path) for label, path in _unique_names(report_dirs).items()}
    with _staging(out, overwrite, "compare.md") as staging:
        compare(reports, staging)
    return out


def localizer_config_from_params(params_file: Path | str) -> LocalizerConfig:
    """The :class:`LocalizerConfig` a ``localize`` params file sets (its ``/**`` and ``localize`` entries).

    The node's own parameters (map, model, device, ...) in the file are not the localizer's and are
    left out; a localizer setting of the wrong type or value is refused, naming it.

    Raises:
        ConfigError: the file is missing, not YAML, or sets an invalid value.
    """
    values = _node_parameters(params_file)
    names = {f.name for f in dataclasses.fields(LocalizerConfig)}
    return from_dict(
        LocalizerConfig, {k: v for k, v in values.items() if k in names}, source=str(params_file)
    )


def descriptor_settings(params_file: Path | str, config: EvaluateConfig | None = None) -> DescriptorSettings:
    """How the node started with ``params_file`` runs its network, with ``config``'s overrides.

    The node's ``runtime``, ``precision`` (empty = ``auto``, as the node reads it) and
    ``inference_threads`` from the file (its ``/**`` and ``localize`` entries), else the node's
    defaults; ``config.runtime`` / ``precision`` / ``inference_threads`` / ``device`` replace them.

    Raises:
        ConfigError: the file is missing, not YAML, or sets an invalid value.
    """
    config = config or EvaluateConfig()
    node = DescriptorSettings()  # the node's defaults (NodeParams; a test keeps them equal)
    defaults = {"runtime": node.runtime, "precision": node.precision, "inference_threads": node.threads}
    values = {**defaults, **_node_parameters(params_file), **_descriptor_overrides(config)}
    try:
        return DescriptorSettings(
            runtime=values["runtime"],
            precision=values["precision"] or node.precision,  # the node reads an empty one as auto
            threads=values["inference_threads"],
            device=config.device,
        )
    except ConfigError as err:
        raise ConfigError(f"{params_file}: {err}") from err


def offline_extractor(model: Path | str | None, settings: DescriptorSettings) -> Extractor:
    """The descriptor extractor the node builds with ``settings`` (one frame at a time, as the node runs).

    Args:
        model: a vbl model file, an exported file, or ``None`` for the embedded default.
        settings: the node's runtime, precision, threads and device (:func:`descriptor_settings`).
    """
    return build_extractor(
        model,
        runtime=settings.runtime,
        device=settings.device,
        threads=settings.threads,
        precision=settings.precision,
        batch_size=1,
    )


def _node_parameters(params_file: Path | str) -> dict[str, Any]:
    """The ``localize`` node's parameters a params file sets: its ``/**`` entry, then the node's own on top."""
    path = Path(params_file)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found; give a file like config/localize.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    values: dict[str, Any] = {}
    entries = data.items() if isinstance(data, dict) else ()
    for key, entry in sorted(entries, key=lambda kv: kv[0] != "/**"):  # "/**" first, the node's own on top
        if _is_node_entry(key) and isinstance(entry, dict):
            values.update(entry.get("ros__parameters") or {})
    return values


def _is_node_entry(key: object) -> bool:
    return key == "/**" or str(key).rstrip("/").endswith("localize")


def _descriptor_overrides(config: EvaluateConfig) -> dict[str, Any]:
    """The node's descriptor parameters that ``config`` sets (``--runtime`` / ``--precision`` / threads)."""
    values = {
        "runtime": config.runtime,
        "precision": config.precision,
        "inference_threads": config.inference_threads,
    }
    return {name: value for name, value in values.items() if value is not None}


def write_node_params(params_file: Path, config: EvaluateConfig, folder: Path) -> Path:
    """``params_file`` with ``config``'s descriptor overrides, for the live node (``folder/localize_params.yaml``).

    Returns ``params_file`` itself when nothing is overridden. The overrides are written into every
    entry of the file that applies to the node (``/**`` and ``localize``), so none of them wins over
    them; the file is kept beside the node's logs.
    """
    overrides = _descriptor_overrides(config)
    if not overrides:
        return params_file
    data = yaml.safe_load(params_file.read_text()) or {}
    entries = [entry for key, entry in data.items() if _is_node_entry(key) and isinstance(entry, dict)]
    if not entries:
        data["/**"] = {"ros__parameters": {}}
        entries = [data["/**"]]
    for entry in entries:
        entry["ros__parameters"] = {**(entry.get("ros__parameters") or {}), **overrides}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "localize_params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    logger.info("the node's parameters: %s with %s", params_file, overrides)
    return path


def _model_identity(model: Path | str | None, extractor: Extractor | None) -> tuple[str, dict[str, Any]]:
    """The model's fingerprint and config (a dict): from the extractor, an export's metadata, or the model."""
    from vbl_ros.config import to_dict

    if extractor is not None:
        metadata = getattr(extractor, "metadata", None)
        config = dict(metadata.config) if metadata is not None else to_dict(extractor.config)  # type: ignore[attr-defined]
        return extractor.fingerprint, config
    if model is not None and model_file_format(model) != "vbl-model":
        metadata = read_metadata(model)
        return metadata.fingerprint, dict(metadata.config)
    from vbl_ros.model import default_model, load_model, model_fingerprint

    net = load_model(model) if model is not None else default_model()
    return model_fingerprint(net), to_dict(net.config)


# ---------------------------------------------------------------------------------------- steps


def _inspect(bag: Path | str, name: str, keyframe_map: KeyframeMap, config: EvaluateConfig) -> _Query:
    """Check a query bag before anything runs: readable, a camera topic, its truth in the map's frame."""
    from rosbags.highlevel import AnyReaderError

    bag = Path(bag)
    try:
        with open_reader(bag) as reader:
            images = {c.topic: c.msgtype for c in reader.connections if c.msgtype in _IMAGE_TYPES}
    except (AnyReaderError, OSError) as err:
        raise MissingDataError(f"{bag}: not a readable rosbag2 bag ({err}); give a bag folder") from err
    topic = config.camera_topic or next((t for t in CAMERA_TOPICS if t in images), None)
    if topic is None and len(images) == 1:
        topic = next(iter(images))
    if topic not in images:
        raise MissingDataError(
            f"{bag}: no image topic {topic or 'of the centre camera'!s}; its image topics are "
            f"{sorted(images) or 'none'}; name one with camera_topic (--camera-topic)"
        )
    note = None
    try:
        truth = frame_truth(bag, keyframe_map.utm_origin, max_gap_s=config.truth_max_gap_s)
    except MissingDataError as err:
        truth = FrameTruth(None)
        note = (
            f"no ground truth ({err}): its frames are counted and its pose-prior availability, "
            "loop-candidate counts and latency reported; recall, errors and precision are n/a"
        )
        logger.warning("%s: %s", bag, note)
    return _Query(name, bag, topic, _IMAGE_TYPES[images[topic]], truth, note)


def _offline_replayer(
    extractor: Extractor, keyframe_map: KeyframeMap, localizer_config: LocalizerConfig, config: EvaluateConfig
) -> Callable[[_Query], _Replayed]:
    """Each query through the core localizer in this process (a fresh session per bag)."""
    localizer = Localizer(extractor, keyframe_map, localizer_config)

    def replay(query: _Query) -> _Replayed:
        seen: list[int] = []

        def keep(stamp_ns: int) -> bool:
            seen.append(stamp_ns)
            return True

        localizer.reset_session()
        odometry = read_odometry(query.bag) if config.use_odometry else None
        results = localize_bag(
            localizer, query.bag, camera_topic=query.camera_topic, keep=keep, odometry=odometry
        )
        rejected = sum(r.rejected_reason is not None for r in results)
        frames = FrameCounts(len(seen), len(results), 0, rejected, bad=len(seen) - len(results))
        return _Replayed(results, [r.descriptor_ms + r.search_ms for r in results], frames)

    return replay


def _live_replayer(
    map_dir: Path, model: Path | str | None, params_file: Path, logs: Path, config: EvaluateConfig
) -> Callable[[_Query], _Replayed]:
    """Each query replayed over DDS into its own run of the installed ``localize`` node."""
    from vbl_ros.ros.live import replay_live

    def replay(query: _Query) -> _Replayed:
        run = replay_live(
            map_dir,
            query.bag,
            logs,
            model=model,
            camera_topic=query.camera_topic,
            compressed=query.compressed,
            rate=config.rate,
            device=config.device,
            params_file=params_file,
            odometry_topic=ODOMETRY_TOPIC if config.use_odometry else None,
            node_start_timeout_s=config.node_start_timeout_s,
        )
        return _Replayed(run.results, run.latencies_ms, run.frames)

    return replay


def _score(
    query: _Query, replayed: _Replayed, keyframe_map: KeyframeMap, config: EvaluateConfig
) -> LocalizationReport:
    """The one scoring routine, against the query's truth in the map's frame."""
    stamps = np.array([r.stamp_ns for r in replayed.results], dtype=np.int64)
    logger.info("%s: scoring %d frames (%s)", query.name, len(stamps), replayed.frames)
    return evaluate_localization(
        replayed.results,
        query.truth.positions(stamps),
        latencies_ms=replayed.latencies_ms,
        map_positions=keyframe_map.positions(),
        ground_truth_yaw_rad=query.truth.yaw_rad(stamps),
        query_trajectory=query.truth.positions,
        frames=replayed.frames,
        config=config.evaluation,
    )


# ---------------------------------------------------------------------------------------- helpers


def _package_params_file() -> Path:
    """The package's ``config/localize.yaml`` (the one the node is launched with)."""
    from vbl_ros.ros.process import find_share_file  # plain Python: finds a file, imports no ROS

    try:
        return find_share_file("config/localize.yaml")
    except FileNotFoundError as err:
        raise ConfigError(f"{err}; give the node's parameters file (params_file, --params)") from err


def _unique_names(paths: Sequence[Path | str]) -> dict[str, Path]:
    """A name per path: its folder name, with parent folders added while two names are equal."""
    resolved = [Path(p).absolute() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"a folder is given twice: {[str(p) for p in paths]}")
    depth = 1
    while True:
        names = ["/".join(p.parts[-depth:]) for p in resolved]
        if len(set(names)) == len(names) and "all" not in names:
            return dict(zip(names, resolved, strict=True))
        depth += 1


def _check_out(out: Path, overwrite: bool, marker: str) -> None:
    """Refuse an existing output folder (unless ``overwrite``, and then only a folder we wrote)."""
    if not out.exists():
        return
    if not overwrite:
        raise OutputExistsError(f"{out}: exists; choose another --out or replace it with --overwrite")
    if not out.is_dir() or not ((out / marker).is_file() or not any(out.iterdir())):
        raise OutputExistsError(f"{out}: exists and is not a vbl report ({marker}); not replacing it")


@contextmanager
def _staging(out: Path, overwrite: bool, marker: str) -> Iterator[Path]:
    """A temporary sibling of ``out`` to write into; renamed into place when the block succeeds.

    An existing ``out`` (allowed by ``overwrite``) is renamed aside, the new one renamed in, and the
    old one deleted, so a failure at any point leaves either the old folder or the new one, never a
    half-written one.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(out, marker)
    tmp = temp_dir(out)
    try:
        yield tmp
        _check_out(out, overwrite, marker)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)


def _meta(
    map_dir: Path | str,
    keyframe_map: KeyframeMap,
    model: Path | str | None,
    identity: tuple[str, Mapping[str, Any]],
    params_file: Path,
    queries: Sequence[_Query],
    config: EvaluateConfig,
    settings: DescriptorSettings,
    extractor: Extractor | None,
    extra: Mapping[str, str] | None,
) -> dict[str, str]:
    """The report's header: what was evaluated, how, where and when."""
    fingerprint, model_config = identity
    mode = (
        "offline: the core localizer frame by frame in one process, as fast as it goes"
        + (", with each bag's odometry" if config.use_odometry else ", without odometry")
        if config.offline
        else f"live: the installed localize node over DDS, each bag replayed at {config.rate:g}x its recorded pace"
    )
    meta = dict(extra or {})
    meta.update(
        {
            "map": f"{Path(map_dir).absolute()} ({len(keyframe_map)} keyframes)",
            "model": f"{model if model is not None else 'the embedded default model'} "
            f"({model_config.get('backbone')} + {model_config.get('aggregation')}, fingerprint {fingerprint[:16]})",
            "mode": mode,
            "device": config.device,
            "descriptor": settings.describe()
            + (
                f": {extractor.runtime} {getattr(extractor, 'precision', '?')}"
                if extractor is not None
                else " (the node's log says what it chose)"
            ),
            "parameters": str(params_file),
            "query bags": ", ".join(f"{q.name} ({q.bag}, {q.camera_topic})" for q in queries),
            "scored frames": "those the localizer processed; dropped, lost and bad frames are only counted",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": _machine(),
        }
    )
    for q in queries:
        if q.note:
            meta[f"note ({q.name})"] = q.note
    return meta


def _machine() -> str:
    """The CPU (model and count) and OS: the figures' context."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} x {cpu}, {platform.system()} {platform.release()}, Python {platform.python_version()}"
