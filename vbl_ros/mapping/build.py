"""The ``build_map`` step: bags' frames every few metres -> descriptors -> a saved keyframe map in one frame."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vbl_ros.errors import ConfigError, MapError, OutputExistsError
from vbl_ros.export.runtimes import RUNTIMES, build_extractor
from vbl_ros.geometry.utm import UtmOrigin
from vbl_ros.mapping.adapt import MAP_MODEL_FILE, AdaptConfig, fit_adapted_model, resolve_model
from vbl_ros.mapping.indexes import FlatIndexConfig, IndexConfig, index_config
from vbl_ros.mapping.store import Keyframe, KeyframeMap, recover_map

if TYPE_CHECKING:
    from vbl_ros.bags import CameraFrame
    from vbl_ros.export.runtimes import Extractor
    from vbl_ros.geometry.trajectory import Trajectory

__all__ = ["FLAT_ADVICE_KEYFRAMES", "MapConfig", "build_map"]

logger = logging.getLogger(__name__)

FLAT_ADVICE_KEYFRAMES = 100_000  # build_map suggests the pq index above this size


@dataclasses.dataclass(frozen=True)
class MapConfig:
    """How :func:`build_map` makes a map, and the index the map searches with.

    Attributes:
        spacing_m: distance along the INS track between keyframes (5 m: twice the density of the
            25 m success radius, ~1.5 frames/s at city speeds; 1M keyframes cover 5,000 km).
        index: the index kind and its settings (:mod:`vbl_ros.mapping.indexes`): ``flat`` (exact,
            the default), ``pq`` (for large maps), ``ivf`` or ``hnsw``. From YAML, a kind's name
            (``index: pq``) or a mapping with its settings (``index: {kind: pq, candidates: 256}``).
        batch_size: images per descriptor batch.
        camera_topic: image topic; ``None`` = the contract's compressed centre camera, else raw.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        runtime: the descriptor runtime (:mod:`vbl_ros.export.runtimes`): ``auto`` (on the CPU the
            fastest installed ONNX runtime, for a model file through its cached ONNX export), ``torch``,
            ``onnxruntime``, ``openvino`` or ``tensorrt``. The map records the source model's
            fingerprint whatever the runtime, so the node may use another one.
        threads: intra-op threads of the runtime; ``None`` = every CPU this process may use
            (eager PyTorch: torch's own setting).
        adapt: ``None`` (describe with the model given, or the default), or how to fit a model
            to the map's own keyframes (:class:`~vbl_ros.mapping.adapt.AdaptConfig`: NetVLAD
            centres, PCA whitening when there are enough keyframes), written into the map as
            ``MAP/model.pt``; from YAML ``adapt: {}`` for the defaults.
    """

    spacing_m: float = 5.0
    index: IndexConfig = dataclasses.field(default_factory=FlatIndexConfig)
    batch_size: int = 16
    camera_topic: str | None = None
    device: str = "auto"
    runtime: str = "auto"
    threads: int | None = None
    adapt: AdaptConfig | None = None

    def __post_init__(self) -> None:
        if not self.spacing_m > 0:
            raise ConfigError(f"spacing_m must be > 0, got {self.spacing_m}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime {self.runtime!r}: choose one of {', '.join(RUNTIMES)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        index: Any = self.index
        if isinstance(index, (str, Mapping)):  # a kind's name or {kind: ..., settings} from YAML
            object.__setattr__(self, "index", index_config(index))
        elif not isinstance(index, IndexConfig):
            raise ConfigError(f"index must be an index config or a kind's name, got {index!r}")
        if self.adapt is not None and not isinstance(self.adapt, AdaptConfig):
            raise ConfigError(f"adapt must be an adapt config (or null), got {self.adapt!r}")


def build_map(
    bags: Path | str | Sequence[Path | str],
    out: Path | str,
    *,
    model: Path | str | None = None,
    config: MapConfig | None = None,
    overwrite: bool = False,
    add: bool = False,
) -> Path:
    """Build a keyframe map from one or several bags (docs/CONTRACTS.md) and save it to the folder ``out``.

    A frame becomes a keyframe each ``config.spacing_m`` metres travelled along its bag's INS track
    (``/ins/odometry``, interpolated at the image stamp); frames outside the track are skipped.
    Only keyframes are decoded; descriptors are computed in batches.

    One map has one frame: the first bag's ``map`` frame (with ``add``, the existing map's), and the
    poses of every other bag are brought into it through the bags' UTM origins, so drives that
    started in different places line up. Every bag's frame is checked before any descriptor is
    computed.

    Args:
        bags: the bag, or several bags (e.g. drives in different conditions).
        out: the map folder to create (with ``add``: the map to grow).
        model: a model file, or its ONNX / TorchScript export (``vbl export``); ``None`` = the
            embedded default model (with ``add``: the model the map carries, if it does). With
            ``add``, it must be the model the map was built with (or its export).
        config: spacing, index, batch size, camera topic, device, runtime, threads, and whether to
            adapt a model to the map (``config.adapt``: fitted on the keyframes of ``bags``, saved
            into the map with it, atomically).
        overwrite: replace an existing map at ``out``.
        add: add the bags' keyframes to the existing map at ``out`` (replaced atomically).

    Returns:
        ``out``.

    Raises:
        OutputExistsError: ``out`` exists and neither ``overwrite`` nor ``add`` is given.
        MapError: ``add`` without a map at ``out``, or no frame lies on any INS track.
        FrameMismatchError: several bags (or a bag and the map) whose frames cannot be related
            (a UTM origin missing, or another UTM zone).
        MissingDataError: a bag lacks the camera or odometry topic.
        ModelMismatchError: ``add`` with another model than the map's.
        ConfigError: ``adapt`` with ``model`` or with ``add`` (the map's model is fixed).
        ModelError: too few keyframes to fit the adapted model's NetVLAD clusters.
    """
    config = config or MapConfig()
    bag_list = [Path(bags)] if isinstance(bags, str | Path) else [Path(b) for b in bags]
    out = Path(out)
    recover_map(out)  # a map hidden by an interrupted replace is put back before out is checked
    if not bag_list:
        raise ConfigError("build_map needs at least one bag")
    if add and overwrite:
        raise ConfigError("choose one of add (grow the map) and overwrite (replace it)")
    if add and not out.exists():
        raise MapError(f"{out}: no map to add to; build it first without --add")
    if out.exists() and not (overwrite or add):
        raise OutputExistsError(f"{out}: exists; choose another --out, --overwrite it or --add to it")
    if config.adapt is not None and add:
        raise ConfigError(
            "adapt fits a new model, and the keyframes of a map all come from one model: drop --adapt "
            "to add to the map (it keeps its model), or rebuild it with --overwrite --adapt"
        )
    if config.adapt is not None and model is not None:
        raise ConfigError(
            f"adapt fits its own model on a pretrained backbone; drop --model {model} or --adapt"
        )
    logger.info("build_map %s -> %s with %s", [str(b) for b in bag_list], out, config)
    with tempfile.TemporaryDirectory(prefix="vbl-adapt-") as scratch:
        if config.adapt is not None:
            model = _adapt(bag_list, Path(scratch) / MAP_MODEL_FILE, config.adapt, config)
        elif add:
            model = resolve_model(model, out)
        return _build(bag_list, out, model, config, add, adapted=config.adapt is not None)


def _build(
    bag_list: list[Path], out: Path, model: Path | str | None, config: MapConfig, add: bool, *, adapted: bool
) -> Path:
    """The map of ``bag_list`` described by ``model``, saved to ``out`` (``adapted``: the map
    carries ``model``)."""
    from vbl_ros.bags import read_odometry

    extractor = build_extractor(
        model,
        runtime=config.runtime,
        device=config.device,
        threads=config.threads,
        batch_size=config.batch_size,
    )
    if add:
        kmap = KeyframeMap.load(out, expected_fingerprint=extractor.fingerprint, mmap=False)
    else:
        origin = read_odometry(bag_list[0]).origin
        if origin is None:
            logger.warning(
                "%s: no UTM origin (/map/utm_origin); the map frame is not geo-referenced", bag_list[0]
            )
        kmap = KeyframeMap.create(extractor.dim, extractor.fingerprint, origin, config.index)
        kmap.model_file = MAP_MODEL_FILE if adapted else None
    trajectories = _trajectories(bag_list, kmap.utm_origin, add)
    before = len(kmap)
    for bag, trajectory in zip(bag_list, trajectories, strict=True):
        added = _add_keyframes(kmap, bag, trajectory, extractor, config, label=out.name)
        logger.info("%s: %d keyframes", bag, added)
    if len(kmap) == before:
        raise MapError(
            f"{', '.join(map(str, bag_list))}: no camera frame lies within the INS track; cannot build a map"
        )
    if isinstance(kmap.index_config, FlatIndexConfig) and len(kmap) > FLAT_ADVICE_KEYFRAMES:
        logger.warning(
            "%d keyframes in an exact (flat) map: a query reads them all (~7 ms per 100k keyframes on "
            "a CPU core); rebuild with '--index pq' for ~2 ms at 1M (benchmarks/README.md)",
            len(kmap),
        )
    kmap.save(out, model=model if adapted else None)  # a loaded map carries its own model along
    logger.info("built %r from %s", kmap, [str(b) for b in bag_list])
    return out


def _trajectories(bag_list: list[Path], origin: UtmOrigin | None, relate: bool) -> list[Trajectory]:
    """Every bag's odometry, in the frame of ``origin`` when there are several bags or ``relate``:
    a bag that cannot be related fails before any descriptor."""
    from vbl_ros.bags import read_odometry

    trajectories = [read_odometry(bag) for bag in bag_list]
    if relate or len(bag_list) > 1:
        trajectories = [t.in_frame(origin) for t in trajectories]
    return trajectories


def _adapt(bag_list: list[Path], path: Path, adapt: AdaptConfig, config: MapConfig) -> Path:
    """Fit the adapted model on up to ``adapt.max_images`` keyframes of ``bag_list`` (evenly spread,
    the keyframes the map will hold) and save it to ``path``; return ``path``."""
    from vbl_ros.bags import read_odometry
    from vbl_ros.model.image_folder import evenly_spaced
    from vbl_ros.model.io import model_fingerprint, save_model
    from vbl_ros.model.transforms import InputTransform

    transform = InputTransform.from_config(adapt.model_config(0))  # checks the backbone's name too
    origin = read_odometry(bag_list[0]).origin
    trajectories = _trajectories(bag_list, origin, False)
    counts = [_count_keyframes(bag, t, config) for bag, t in zip(bag_list, trajectories, strict=True)]
    wanted = set(evenly_spaced(sum(counts), adapt.max_images).tolist())
    images, first = [], 0
    for bag, trajectory, count in zip(bag_list, trajectories, counts, strict=True):
        chosen = {i - first for i in wanted if first <= i < first + count}
        for frame in _chosen_keyframes(bag, trajectory, config, chosen):
            images.append(transform.resize(frame.image_rgb))
        first += count
    logger.info("adapting a model on %d of the map's %d keyframes", len(images), sum(counts))
    if not images:
        raise MapError(f"{', '.join(map(str, bag_list))}: no keyframe to adapt a model on")
    net = fit_adapted_model(np.stack(images), adapt, device=config.device)
    save_model(net, path)
    logger.info("adapted model: %d-d descriptors, fingerprint %s", net.dim, model_fingerprint(net)[:12])
    return path


def _add_keyframes(
    kmap: KeyframeMap,
    bag: Path,
    trajectory: Trajectory,
    extractor: Extractor,
    config: MapConfig,
    *,
    label: str,
) -> int:
    """Add the keyframes of one bag to ``kmap`` (``trajectory``: the bag's odometry in the map's
    frame); return how many."""
    from tqdm import tqdm

    from vbl_ros.bags import read_camera_frames

    keep = _every_spacing(trajectory, config.spacing_m)
    to_latlon = _latlon_function(bag, trajectory.origin)
    total_m = float(trajectory.arc_length(trajectory.stamps_ns[-1])[0])
    bar = tqdm(total=int(total_m // config.spacing_m) + 1, unit="kf", desc=f"map {label}", disable=None)
    before = len(kmap)
    pending_images: list[np.ndarray] = []
    pending_stamps: list[int] = []

    def flush() -> None:
        if not pending_stamps:
            return
        descriptors = extractor(pending_images)
        stamps = np.asarray(pending_stamps, dtype=np.int64)
        positions, orientations = trajectory.interpolate(stamps)
        latlon = to_latlon(positions, stamps)
        kmap.add(
            descriptors,
            [
                Keyframe(int(s), tuple(map(float, p)), tuple(map(float, q)), float(ll[0]), float(ll[1]))  # type: ignore[arg-type]
                for s, p, q, ll in zip(stamps, positions, orientations, latlon, strict=True)
            ],
        )
        bar.update(len(pending_stamps))
        pending_images.clear()
        pending_stamps.clear()

    try:
        for frame in read_camera_frames(bag, config.camera_topic, keep=keep):
            pending_images.append(frame.image_rgb)
            pending_stamps.append(frame.stamp_ns)
            if len(pending_stamps) >= config.batch_size:
                flush()
        flush()
    finally:
        bar.close()
    return len(kmap) - before


def _count_keyframes(bag: Path, trajectory: Trajectory, config: MapConfig) -> int:
    """How many keyframes ``bag`` gives (stamps only: nothing is decoded)."""
    from vbl_ros.bags import read_camera_frames

    is_keyframe, count = _every_spacing(trajectory, config.spacing_m), 0

    def tally(stamp: int) -> bool:
        nonlocal count
        count += is_keyframe(stamp)
        return False

    for _ in read_camera_frames(bag, config.camera_topic, keep=tally):
        pass
    return count


def _chosen_keyframes(
    bag: Path, trajectory: Trajectory, config: MapConfig, chosen: set[int]
) -> Iterator[CameraFrame]:
    """The keyframes of ``bag`` whose rank among its keyframes is in ``chosen``, decoded."""
    from vbl_ros.bags import read_camera_frames

    is_keyframe, rank = _every_spacing(trajectory, config.spacing_m), -1

    def keep(stamp: int) -> bool:
        nonlocal rank
        if not is_keyframe(stamp):
            return False
        rank += 1
        return rank in chosen

    return read_camera_frames(bag, config.camera_topic, keep=keep)


def _every_spacing(trajectory: Trajectory, spacing_m: float) -> Callable[[int], bool]:
    """``keep(stamp)``: true for the first frame on the track at or past each multiple of
    ``spacing_m`` metres travelled (frames in stamp order)."""
    next_distance = [0.0]

    def keep(stamp: int) -> bool:
        if not bool(trajectory.contains(stamp)):
            return False
        travelled = float(trajectory.arc_length(stamp)[0])
        if travelled + 1e-9 < next_distance[0]:
            return False
        next_distance[0] = (np.floor(travelled / spacing_m) + 1) * spacing_m
        return True

    return keep


def _latlon_function(bag: Path, origin: UtmOrigin | None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``f(positions (N, 3), stamps (N,)) -> (N, 2)`` latitude, longitude: from the UTM origin,
    else interpolated from ``/gps/fix``, else nan."""
    if origin is not None:
        return lambda positions, _stamps: origin.to_latlon(positions)
    from vbl_ros.bags import read_gps

    gps = read_gps(bag)
    if gps is None:
        logger.warning("%s: neither a UTM origin nor GPS: keyframes get no latitude/longitude", bag)
        return lambda _p, stamps: np.full((len(stamps), 2), np.nan)
    return lambda _p, stamps: np.stack(gps.interpolate(stamps), axis=1)
