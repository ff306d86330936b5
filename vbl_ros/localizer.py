"""Localizer: image -> descriptor -> top-k map keyframes -> pose prior, plus loop-closure candidates.

Pose prior (only with a map): the map is searched for the ``4 * top_k`` most similar keyframes; the
matches within ``cluster_radius_m`` of the best one form the consistent cluster. A prior is published
only when the best score reaches ``min_score`` and the best match is distinctive: its score exceeds
the best score of any retrieved keyframe outside the cluster by ``min_distinctiveness``.
Its position is the score-weighted mean of the cluster, its orientation the best match's, and its
covariance (x y z roll pitch yaw, row-major 6x6):

- position: the score-weighted covariance of the cluster's positions plus a floor of
  ``(max(1 m, spacing / 2))^2`` per axis (``spacing`` = the map's median keyframe spacing);
- orientation: per angle, the score-weighted circular variance of the cluster's angles plus a floor
  (roll/pitch 5 deg, yaw 10 deg);
- both multiplied by ``1 + 3 q^2``, ``q = (1 - score) / (1 - min_score)``: a prior at the threshold is
  trusted 4x less (in variance) than a perfect match.

Filtered priors (``prior_mode: filtered``): the same ``4 * top_k`` matches feed a temporal
particle filter over map places (:class:`~vbl_ros.tracking.PlaceFilter`), moved by the odometry
pose given with each frame or, without it, by a bounded speed prior. A prior is published when the
filter is ``tracking`` (its belief concentrated and confirmed by a sequential test of the frames'
matches against chance); its position and covariance are the belief's,
its yaw the particles', roll and pitch the nearest matched keyframe's. The single-frame test's
distinctiveness is still computed and reported. Results carry the filter's state and spread.

Loop closure: the session's own keyframes (one each ``keyframe_interval_s``, or each
``keyframe_distance_m`` of odometry when odometry is given) are kept; only those older than
``loop_exclude_recent_s`` can be loop candidates. With ``loop_confirm_frames >= 2`` (the default) a
candidate is reported only when the last ``loop_confirm_frames`` frames match a sequence of session
keyframes advancing with them, standing out from the same sequence shifted 2-20 s along the
session (its contrast), and, with odometry, near the current odometry position
(:class:`~vbl_ros.tracking.loops.LoopDetector`: one candidate, the confirmed keyframe; every session
keyframe is passed to it, the younger ones only for the contrast). With
``loop_confirm_frames = 1`` each frame is judged alone: up to ``max_loop_candidates`` keyframes
scoring ``>= loop_min_score`` (on a first drive that never revisits a place, most frames then get
wrong candidates: neighbouring streets look alike).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from vbl_ros.errors import ConfigError
from vbl_ros.geometry.rotations import euler_to_rotation, quaternion_to_euler, rotation_to_quaternion
from vbl_ros.mapping import Keyframe, KeyframeMap
from vbl_ros.tracking import FilterConfig, FilterEstimate, LoopConfig, LoopDetector, PlaceFilter

__all__ = [
    "LocalizationResult",
    "Localizer",
    "LocalizerConfig",
    "LoopCandidate",
    "Match",
    "PosePrior",
]

logger = logging.getLogger(__name__)

_ROLL_PITCH_FLOOR_RAD = math.radians(5.0)
_YAW_FLOOR_RAD = math.radians(10.0)
_SEARCH_FACTOR = 4  # map neighbours retrieved per top_k, to find the best match outside the cluster
_WEIGHT_TEMPERATURE = 0.02  # softmax temperature of the cluster weights (cosine similarity units)
PRIOR_MODES = ("single", "filtered")


@dataclass(frozen=True)
class LocalizerConfig:
    """Thresholds and session-keyframe policy of the :class:`Localizer`.

    Attributes:
        top_k: map matches reported per image.
        min_score: cosine similarity of the best match needed to publish a prior.
        min_distinctiveness: margin by which the best score must exceed the best score of any
            retrieved keyframe farther than ``cluster_radius_m`` from the best match.
        cluster_radius_m: matches within this distance of the best match are one consistent place.
        keyframe_interval_s: session keyframes by time (without odometry).
        keyframe_distance_m: session keyframes by distance travelled (with odometry).
        loop_exclude_recent_s: session keyframes younger than this are not loop candidates.
        loop_min_score: cosine similarity a loop candidate needs (to the current frame).
        max_loop_candidates: loop candidates reported per image (0 = none; confirmed loops give one).
        loop_confirm_frames: consecutive frames that must match a sequence of session keyframes
            advancing with them before a loop candidate is reported; 1 = each frame alone.
        loop_start_score: sequence score that confirms a loop: the lower quartile, over the
            sequence's frames, of each frame's score standardised by its mean and spread over the
            session's keyframes.
        loop_keep_score: sequence score that keeps a confirmed loop going while it advances.
        loop_odom_drift_m: with odometry, a loop candidate must lie within this distance of the
            current odometry position, plus loop_odom_drift_fraction of the distance travelled since.
        loop_odom_drift_fraction: odometry drift allowed per metre travelled (0.1 = 10 %).
        loop_centre_frames: confirmed loops: descriptors are compared after taking out the mean
            descriptor of the last this many frames (the look shared by everything seen lately:
            light, weather); 0 = off.
        loop_start_contrast: confirmed loops: a loop starts only when its sequence score exceeds,
            by this much, the best sequence score of the same lines shifted 2-20 s along the session
            (a place stands out from its neighbours; a light, a weather, a look-alike stretch does
            not).
        loop_keep_contrast: confirmed loops: a locked loop ends when its mean contrast (sequence
            score minus the shifted lines' best) since it started falls below this.
        prior_mode: single (each frame judged alone) or filtered (a temporal particle filter over
            map places, moved by odometry when given, by a bounded speed prior otherwise).
        filter_particles: filtered mode: particle count (the cost per frame does not grow with the map).
        filter_radius_m: filtered mode: a prior is published when filter_min_mass of the belief lies
            within this radius of the estimate.
        filter_min_mass: filtered mode: belief share within filter_radius_m needed for a prior.
        filter_confirm_frames: filtered mode: the fewest frames a hypothesis must have been followed
            before the filter may start publishing priors from it.
        filter_confirm_error: filtered mode: error rate accepted when confirming a hypothesis: its
            accumulated log likelihood ratio against a random place must reach
            log((1 - filter_confirm_error) / filter_confirm_error) (three times that without odometry).
        filter_hit_rate: filtered mode: share of frames whose matches are assumed to land at the right
            place (pessimistic, night-like; a map of a few places needs a higher one to give evidence).
        filter_max_frames_unsupported: filtered mode: frames whose matches do not favour the estimate
            (moving on odometry or the speed prior alone) before the filter calls itself lost.
        filter_max_speed_mps: filtered mode: largest speed of the motion prior used without odometry.
        filter_odometry_noise: filtered mode: motion noise as a share of the odometry's distance and turn.
        filter_heading_noise_deg_per_m: filtered mode: heading noise per metre of odometry travel (its
            drift); 1.0 for an odometry drifting ~0.5 deg/m gives night and snow priors where 0.2 gives
            none, at some cost with an INS-grade odometry (benchmarks/README.md, tracking.py).
        filter_evidence_weight: filtered mode: tempering (0..1] of each frame's log likelihood ratio
            (consecutive frames' retrieval errors are correlated).
        filter_covariance_scale: filtered mode, with odometry: the prior's position std is this many
            times the particles' spread near the estimate (0.85 fits a drifting odometry, 3 % and
            0.5 deg/m; 0.25 an INS-grade one; benchmarks/README.md, tracking.py).
        filter_covariance_floor_m: filtered mode: floor (std, metres) of the prior's position covariance.
        filter_seed: filtered mode: random seed of the particles (same inputs, same outputs).
    """

    top_k: int = 5
    min_score: float = 0.6
    min_distinctiveness: float = 0.02
    cluster_radius_m: float = 15.0
    keyframe_interval_s: float = 1.0
    keyframe_distance_m: float = 5.0
    loop_exclude_recent_s: float = 30.0
    loop_min_score: float = 0.7
    max_loop_candidates: int = 5
    loop_confirm_frames: int = 8
    loop_start_score: float = 2.5
    loop_keep_score: float = 0.5
    loop_odom_drift_m: float = 10.0
    loop_odom_drift_fraction: float = 0.1
    loop_centre_frames: int = 0
    loop_start_contrast: float = 1.3
    loop_keep_contrast: float = 0.25
    prior_mode: str = "single"
    filter_particles: int = FilterConfig.particles
    filter_radius_m: float = FilterConfig.radius_m
    filter_min_mass: float = FilterConfig.min_mass
    filter_confirm_frames: int = FilterConfig.confirm_frames
    filter_confirm_error: float = FilterConfig.confirm_error
    filter_hit_rate: float = FilterConfig.hit_rate
    filter_max_frames_unsupported: int = FilterConfig.max_frames_unsupported
    filter_max_speed_mps: float = FilterConfig.max_speed_mps
    filter_odometry_noise: float = FilterConfig.odometry_noise
    filter_heading_noise_deg_per_m: float = FilterConfig.heading_noise_deg_per_m
    filter_evidence_weight: float = FilterConfig.evidence_weight
    filter_covariance_scale: float = FilterConfig.covariance_scale
    filter_covariance_floor_m: float = FilterConfig.covariance_floor_m
    filter_seed: int = FilterConfig.seed

    def __post_init__(self) -> None:
        if self.prior_mode not in PRIOR_MODES:
            raise ConfigError(f"prior_mode must be one of {', '.join(PRIOR_MODES)}; got {self.prior_mode!r}")
        self.filter_config()  # checks the filter's settings
        if self.top_k < 1 or self.max_loop_candidates < 0:
            raise ConfigError("top_k must be >= 1 and max_loop_candidates >= 0")
        if not -1.0 <= self.min_score < 1.0 or not -1.0 <= self.loop_min_score <= 1.0:
            raise ConfigError("min_score must be in [-1, 1) and loop_min_score in [-1, 1]")
        if self.min_distinctiveness < 0:
            raise ConfigError("min_distinctiveness must be >= 0")
        for name in ("cluster_radius_m", "keyframe_interval_s", "keyframe_distance_m"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.loop_exclude_recent_s < 0:
            raise ConfigError("loop_exclude_recent_s must be >= 0")
        if self.loop_confirm_frames < 1:
            raise ConfigError(
                f"loop_confirm_frames must be >= 1 (1 = single-frame candidates), got {self.loop_confirm_frames}"
            )
        if self.loop_confirm_frames > 1:
            try:
                self.loop_config()  # checks the sequence settings
            except ConfigError as err:
                raise ConfigError(f"loop settings (the loop_* parameters): {err}") from err

    def loop_config(self) -> LoopConfig:
        """The settings of the sequence loop detector (``loop_confirm_frames >= 2``)."""
        return LoopConfig(
            confirm_frames=self.loop_confirm_frames,
            start_score=self.loop_start_score,
            keep_score=self.loop_keep_score,
            odom_drift_m=self.loop_odom_drift_m,
            odom_drift_fraction=self.loop_odom_drift_fraction,
            centre_frames=self.loop_centre_frames,
            start_contrast=self.loop_start_contrast,
            keep_contrast=self.loop_keep_contrast,
        )

    def filter_config(self) -> FilterConfig:
        """The temporal filter's settings (the ``filter_*`` fields; the rest at their defaults)."""
        try:
            return FilterConfig(
                particles=self.filter_particles,
                radius_m=self.filter_radius_m,
                min_mass=self.filter_min_mass,
                keep_mass=min(FilterConfig.keep_mass, self.filter_min_mass),
                confirm_frames=self.filter_confirm_frames,
                confirm_error=self.filter_confirm_error,
                hit_rate=self.filter_hit_rate,
                max_frames_unsupported=self.filter_max_frames_unsupported,
                max_speed_mps=self.filter_max_speed_mps,
                odometry_noise=self.filter_odometry_noise,
                heading_noise_deg_per_m=self.filter_heading_noise_deg_per_m,
                evidence_weight=self.filter_evidence_weight,
                covariance_scale=self.filter_covariance_scale,
                covariance_floor_m=self.filter_covariance_floor_m,
                seed=self.filter_seed,
            )
        except ConfigError as err:
            raise ConfigError(f"filter_{err}") from None


@dataclass(frozen=True)
class Match:
    """A map keyframe retrieved for an image (rank 1 = best)."""

    rank: int
    score: float
    keyframe: Keyframe


@dataclass(frozen=True)
class PosePrior:
    """A pose in the map frame with its 6x6 covariance (row-major, x y z roll pitch yaw)."""

    stamp_ns: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    covariance: tuple[float, ...]
    score: float
    keyframe_stamps_ns: tuple[int, ...]


@dataclass(frozen=True)
class LoopCandidate:
    """A session keyframe that looks like the current image (rank 1 = best).

    ``position``/``orientation`` are the odometry pose of that keyframe, ``None`` without odometry.
    """

    rank: int
    score: float
    keyframe_stamp_ns: int
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class LocalizationResult:
    """Everything the localizer found for one image.

    ``pose_prior`` is ``None`` when no prior is published; ``rejected_reason`` then says why.
    ``distinctiveness`` is the best score's margin over the best match outside the cluster.
    ``filter_state`` (``initializing`` / ``tracking`` / ``lost``) and ``filter_spread_m`` (RMS
    distance of the particles to their mean) are the temporal filter's, ``None`` / nan in single mode.
    ``descriptor_ms`` / ``search_ms`` are the localizer's own timings; ``None`` where they were not
    measured (a result rebuilt from the node's messages).
    """

    stamp_ns: int
    pose_prior: PosePrior | None
    matches: tuple[Match, ...]
    loop_candidates: tuple[LoopCandidate, ...]
    rejected_reason: str | None
    descriptor_ms: float | None
    search_ms: float | None
    distinctiveness: float = math.nan
    filter_state: str | None = None
    filter_spread_m: float = math.nan


def _circular_variance(angles: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted wrapped-normal variance ``-2 ln R`` of ``(N, A)`` angles -> ``(A,)``."""
    resultant = np.abs((weights[:, None] * np.exp(1j * angles)).sum(axis=0)) / weights.sum()
    return -2.0 * np.log(np.clip(resultant, 1e-12, 1.0))


class _SessionKeyframes:
    """This session's descriptors in a flat FAISS index (and an array, for sequence matching), with
    stamps, optional odometry poses and the odometry distance travelled when each was taken."""

    def __init__(self, dim: int) -> None:
        import faiss

        self._faiss = faiss
        self.index = faiss.IndexFlatIP(dim)
        self.stamps: list[int] = []
        self.positions: list[tuple[float, float, float] | None] = []
        self.orientations: list[tuple[float, float, float, float] | None] = []
        # the same in arrays, for sequence matching (grown by doubling); the descriptors as the
        # loop detector compares them (centred or as they came)
        self._descriptors = np.zeros((64, dim), dtype=np.float32)
        self._raw = np.zeros((64, dim), dtype=np.float32)
        self._stamps = np.zeros(64, dtype=np.int64)
        self._positions = np.full((64, 3), math.nan)  # nan: taken without odometry
        self._travelled = np.zeros(64)

    def __len__(self) -> int:
        return len(self.stamps)

    def reset(self) -> None:
        self.index.reset()
        self.stamps.clear()
        self.positions.clear()
        self.orientations.clear()

    def add(
        self,
        descriptor: np.ndarray,
        stamp_ns: int,
        position,
        orientation,
        travelled_m: float = 0.0,
        loop_descriptor: np.ndarray | None = None,
    ) -> None:
        n = len(self.stamps)
        if n == len(self._stamps):
            self._descriptors = np.concatenate([self._descriptors, np.zeros_like(self._descriptors)])
            self._raw = np.concatenate([self._raw, np.zeros_like(self._raw)])
            self._stamps = np.concatenate([self._stamps, np.zeros_like(self._stamps)])
            self._positions = np.concatenate([self._positions, np.full_like(self._positions, math.nan)])
            self._travelled = np.concatenate([self._travelled, np.zeros_like(self._travelled)])
        self._raw[n] = descriptor.reshape(-1)
        self._descriptors[n] = (descriptor if loop_descriptor is None else loop_descriptor).reshape(-1)
        self._stamps[n] = int(stamp_ns)
        self._positions[n] = math.nan if position is None else np.asarray(position, np.float64).reshape(3)
        self._travelled[n] = float(travelled_m)
        self.index.add(descriptor.reshape(1, -1))
        self.stamps.append(int(stamp_ns))
        self.positions.append(None if position is None else tuple(float(v) for v in position))
        self.orientations.append(None if orientation is None else tuple(float(v) for v in orientation))

    def eligible(self, stamp_ns: int) -> int:
        """How many keyframes have a stamp <= ``stamp_ns`` (they are a prefix: stamps increase)."""
        return int(np.searchsorted(self._stamps[: len(self.stamps)], stamp_ns, side="right"))

    def descriptor(self, i: int) -> np.ndarray:
        """``(D,)`` keyframe ``i``'s descriptor as it came."""
        return self._raw[i]

    def arrays(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Views of the first ``count`` keyframes: ``(count, D)`` descriptors as the loop detector
        compares them, ``(count,)`` stamps,
        ``(count, 3)`` odometry positions (``nan``: none) and ``(count,)`` odometry distance
        travelled when each was taken."""
        return (
            self._descriptors[:count],
            self._stamps[:count],
            self._positions[:count],
            self._travelled[:count],
        )

    def raw_arrays(self, count: int) -> np.ndarray:
        """``(count, D)`` the first ``count`` keyframes' descriptors as they came."""
        return self._raw[:count]

    def search_older_than(
        self, descriptor: np.ndarray, stamp_ns: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` among keyframes with stamp <= ``stamp_ns`` (they are a prefix: stamps increase)."""
        eligible = self.eligible(stamp_ns)
        if eligible == 0 or k == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        params = self._faiss.SearchParameters(sel=self._faiss.IDSelectorRange(0, eligible))
        scores, ids = self.index.search(descriptor.reshape(1, -1), min(k, eligible), params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep].astype(np.int64)


class Localizer:
    """Pose priors from a keyframe map and loop-closure candidates from the session's own keyframes.

    Args:
        extractor: turns an RGB image into a descriptor (anything with ``__call__(images) -> (N, D)``
            and ``.dim``; a :class:`~vbl_ros.model.extractor.DescriptorExtractor`).
        keyframe_map: the prior map, or ``None`` (then only loop candidates).
        config: thresholds and session policy.

    Raises:
        ModelMismatchError: the map was built with another model than the extractor's.
    """

    def __init__(self, extractor, keyframe_map: KeyframeMap | None, config: LocalizerConfig) -> None:
        self.extractor = extractor
        self.map = keyframe_map
        self.config = config
        dim = int(extractor.dim) if extractor is not None else (keyframe_map.dim if keyframe_map else 0)
        if dim < 1:
            raise ConfigError("the localizer needs an extractor or a map to know the descriptor dimension")
        fingerprint = getattr(extractor, "fingerprint", None)
        if keyframe_map is not None:
            from vbl_ros.errors import ModelMismatchError

            if keyframe_map.dim != dim:
                raise ModelMismatchError(
                    f"the map holds {keyframe_map.dim}-d descriptors but the model computes {dim}-d; "
                    "use the model the map was built with or rebuild the map"
                )
            if fingerprint is not None and keyframe_map.model_fingerprint != fingerprint:
                raise ModelMismatchError(
                    f"the map was built with model {keyframe_map.model_fingerprint[:16]}..., the model in "
                    f"use is {fingerprint[:16]}...; use the map's model or rebuild the map with this one"
                )
        self.dim = dim
        spacing = keyframe_map.spacing_m() if keyframe_map is not None else math.nan
        self.position_floor_m = (
            max(1.0, 0.5 * spacing) if math.isfinite(spacing) else max(1.0, config.cluster_radius_m / 3)
        )
        self.session = _SessionKeyframes(dim)
        self.loop_detector = LoopDetector(config.loop_config()) if config.loop_confirm_frames > 1 else None
        # The localizer searches one query at a time; FAISS's OpenMP threads only add overhead there
        # (benchmarks/README.md: exact search over 1M keyframes is 2.4x slower on 2 threads than on 1).
        import faiss

        faiss.omp_set_num_threads(1)
        if keyframe_map is not None:
            keyframe_map.prepare()  # index built now, not on the first frame
        self.filter: PlaceFilter | None = None
        if config.prior_mode == "filtered" and keyframe_map is not None and len(keyframe_map):
            fcfg = config.filter_config()
            yaws = quaternion_to_euler(keyframe_map.orientations())[:, 2]
            self.filter = PlaceFilter(keyframe_map.positions(), yaws, fcfg)
        self._last_kf_stamp: int | None = None
        self._last_kf_position: np.ndarray | None = None

    # ------------------------------------------------------------------ public
    def process(
        self,
        image_rgb: np.ndarray,
        stamp_ns: int,
        odom_position: np.ndarray | None = None,
        odom_orientation: np.ndarray | None = None,
    ) -> LocalizationResult:
        """Localize one ``(H, W, 3)`` uint8 RGB image taken at ``stamp_ns``.

        ``odom_position`` ``(3,)`` / ``odom_orientation`` ``(4,)`` x y z w: the robot's odometry pose at
        ``stamp_ns`` when known; session keyframes are then taken by distance and carry that pose.
        """
        t0 = time.perf_counter()
        descriptor = np.asarray(self.extractor([image_rgb]), dtype=np.float32)[0]
        descriptor_ms = (time.perf_counter() - t0) * 1e3
        return self.localize_descriptor(
            descriptor, stamp_ns, odom_position, odom_orientation, descriptor_ms=descriptor_ms
        )

    def localize_descriptor(
        self,
        descriptor: np.ndarray,
        stamp_ns: int,
        odom_position: np.ndarray | None = None,
        odom_orientation: np.ndarray | None = None,
        *,
        descriptor_ms: float = 0.0,
    ) -> LocalizationResult:
        """:meth:`process` after the descriptor: ``descriptor`` ``(D,)`` unit-L2 float32."""
        cfg = self.config
        stamp_ns = int(stamp_ns)
        desc = np.ascontiguousarray(np.asarray(descriptor, dtype=np.float32).reshape(1, self.dim))
        t0 = time.perf_counter()
        matches: tuple[Match, ...] = ()
        prior: PosePrior | None = None
        reason: str | None = None
        distinct = math.nan
        estimate: FilterEstimate | None = None
        if self.map is None:
            reason = "no map: loop-closure candidates only"
        elif len(self.map) == 0:
            reason = "the map is empty"
        else:
            scores, ids = self.map.search(desc, cfg.top_k * _SEARCH_FACTOR)
            valid = ids[0] >= 0
            scores, ids = scores[0][valid].astype(np.float64), ids[0][valid]
            matches = tuple(
                Match(rank=r + 1, score=float(s), keyframe=self.map.keyframe(int(i)))
                for r, (s, i) in enumerate(zip(scores[: cfg.top_k], ids[: cfg.top_k], strict=True))
            )
            if self.filter is None:
                prior, reason, distinct = self._prior(stamp_ns, scores, ids)
            else:  # the filter's prior; the frame's distinctiveness is still reported
                distinct = self._distinctiveness(scores, ids)[0]
                odometry = _planar_pose(odom_position, odom_orientation)
                estimate = self.filter.update(stamp_ns, ids, scores, odometry)
                prior, reason = self._filtered_prior(stamp_ns, estimate, scores, ids)
        loop = self._loop_candidates(desc, stamp_ns, odom_position)
        search_ms = (time.perf_counter() - t0) * 1e3
        self._maybe_add_session_keyframe(desc, stamp_ns, odom_position, odom_orientation)
        return LocalizationResult(
            stamp_ns=stamp_ns,
            pose_prior=prior,
            matches=matches,
            loop_candidates=loop,
            rejected_reason=reason,
            descriptor_ms=float(descriptor_ms),
            search_ms=float(search_ms),
            distinctiveness=float(distinct),
            filter_state=None if estimate is None else estimate.state,
            filter_spread_m=math.nan if estimate is None else estimate.spread_m,
        )

    def reset_session(self) -> None:
        """Forget this session's keyframes and the filter's belief (e.g. when time jumps back)."""
        self.session.reset()
        if self.filter is not None:
            self.filter.reset()
        if self.loop_detector is not None:
            self.loop_detector.reset()
        self._last_kf_stamp = None
        self._last_kf_position = None

    @property
    def loop_state(self) -> str:
        """The loop detector's state after the last frame: ``"single-frame"`` (``loop_confirm_frames``
        1, no detector), else :attr:`LoopDetector.state <vbl_ros.tracking.loops.LoopDetector.state>`
        (``"collecting"``, ``"searching"`` or ``"locked"``)."""
        return "single-frame" if self.loop_detector is None else self.loop_detector.state

    @property
    def session_keyframes(self) -> int:
        """How many keyframes this session holds (the loop candidates' pool)."""
        return len(self.session)

    # ------------------------------------------------------------------ internals
    def _distinctiveness(self, scores: np.ndarray, ids: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """The best match's margin over the best place elsewhere (more than ``cluster_radius_m`` from
        it), with each match's distance to it (m) and whether it is within that radius."""
        assert self.map is not None
        positions = self.map.positions()[ids]
        dist = np.linalg.norm(positions - positions[0], axis=1)
        inside = dist <= self.config.cluster_radius_m
        # If every retrieved keyframe is in the cluster, the lowest retrieved score bounds the best
        # outside score from above.
        outside_best = (
            float(scores[~inside].max())
            if (~inside).any()
            else float(scores[-1])
            if len(scores) > 1
            else -1.0
        )
        return float(scores[0]) - outside_best, dist, inside

    def _prior(
        self, stamp_ns: int, scores: np.ndarray, ids: np.ndarray
    ) -> tuple[PosePrior | None, str | None, float]:
        cfg = self.config
        assert self.map is not None
        best = float(scores[0])
        distinct, dist, inside = self._distinctiveness(scores, ids)
        if best < cfg.min_score:
            return None, f"best score {best:.3f} below min_score {cfg.min_score:.3f}", distinct
        if distinct < cfg.min_distinctiveness:
            return (
                None,
                f"ambiguous: best score {best:.3f} only {distinct:.3f} above a match "
                f"{dist[~inside].min() if (~inside).any() else 0.0:.0f} m away "
                f"(min_distinctiveness {cfg.min_distinctiveness:.3f})",
                distinct,
            )
        c_scores, c_ids = scores[inside], ids[inside]
        c_pos = self.map.positions()[c_ids]
        weights = np.exp((c_scores - best) / _WEIGHT_TEMPERATURE)
        weights /= weights.sum()
        mean = weights @ c_pos
        centred = c_pos - mean
        pos_cov = (weights[:, None] * centred).T @ centred + np.eye(3) * self.position_floor_m**2
        angles = quaternion_to_euler(self.map.orientations()[c_ids])
        ang_var = _circular_variance(angles, weights) + np.array(
            [_ROLL_PITCH_FLOOR_RAD**2, _ROLL_PITCH_FLOOR_RAD**2, _YAW_FLOOR_RAD**2]
        )
        q = (1.0 - best) / max(1e-6, 1.0 - cfg.min_score)
        inflation = 1.0 + 3.0 * q * q
        cov = np.zeros((6, 6))
        cov[:3, :3] = pos_cov * inflation
        cov[3:, 3:] = np.diag(ang_var) * inflation
        best_kf = self.map.keyframe(int(ids[0]))
        prior = PosePrior(
            stamp_ns=stamp_ns,
            position=(float(mean[0]), float(mean[1]), float(mean[2])),
            orientation=best_kf.orientation,
            covariance=tuple(float(v) for v in cov.reshape(-1)),
            score=best,
            keyframe_stamps_ns=tuple(int(s) for s in self.map.stamps_ns()[c_ids]),
        )
        return prior, None, distinct

    def _filtered_prior(
        self, stamp_ns: int, estimate: FilterEstimate, scores: np.ndarray, ids: np.ndarray
    ) -> tuple[PosePrior | None, str | None]:
        """The prior the filter's belief gives, or why there is none."""
        assert self.map is not None and self.filter is not None
        cfg = self.filter.config
        if not estimate.confident or estimate.position is None:
            return None, (
                f"filter {estimate.state}: {100 * estimate.mass:.0f} % of the belief within "
                f"{cfg.radius_m:g} m (min {100 * cfg.min_mass:.0f} %), spread {estimate.spread_m:.1f} m, "
                f"evidence {estimate.evidence:.1f} (confirmed at {self.filter.threshold:.1f}, 3x without "
                f"odometry, where it must also beat its best rival place {cfg.rival_margin:g}x), "
                f"{estimate.unsupported_frames} frames whose matches do not favour it"
            )
        kf = estimate.best_keyframe if estimate.best_keyframe >= 0 else int(ids[0])
        roll, pitch, _ = quaternion_to_euler(self.map.orientations()[kf])
        quat = rotation_to_quaternion(euler_to_rotation(float(roll), float(pitch), estimate.yaw_rad))
        cov = np.zeros((6, 6))
        cov[:2, :2] = np.asarray(estimate.covariance_xy).reshape(2, 2)
        cov[2, 2] = self.filter.config.covariance_floor_m**2
        cov[3, 3] = cov[4, 4] = _ROLL_PITCH_FLOOR_RAD**2
        cov[5, 5] = estimate.yaw_variance + _YAW_FLOOR_RAD**2
        prior = PosePrior(
            stamp_ns=stamp_ns,
            position=estimate.position,
            orientation=tuple(float(v) for v in quat),  # type: ignore[arg-type]
            covariance=tuple(float(v) for v in cov.reshape(-1)),
            score=float(scores[0]),
            keyframe_stamps_ns=(int(self.map.stamps_ns()[kf]),),
        )
        return prior, None

    def _loop_candidates(
        self, desc: np.ndarray, stamp_ns: int, odom_position: np.ndarray | None
    ) -> tuple[LoopCandidate, ...]:
        cfg = self.config
        cutoff = stamp_ns - int(cfg.loop_exclude_recent_s * 1e9)
        if self.loop_detector is not None:
            return self._confirmed_loop(desc, stamp_ns, cutoff, odom_position)
        if cfg.max_loop_candidates == 0 or len(self.session) == 0:
            return ()
        scores, ids = self.session.search_older_than(desc, cutoff, cfg.max_loop_candidates)
        out = []
        for s, i in zip(scores, ids, strict=True):
            if s < cfg.loop_min_score:
                break
            out.append(
                LoopCandidate(
                    rank=len(out) + 1,
                    score=float(s),
                    keyframe_stamp_ns=self.session.stamps[i],
                    position=self.session.positions[i],  # type: ignore[arg-type]
                    orientation=self.session.orientations[i],  # type: ignore[arg-type]
                )
            )
        return tuple(out)

    def _confirmed_loop(
        self, desc: np.ndarray, stamp_ns: int, cutoff: int, odom_position: np.ndarray | None
    ) -> tuple[LoopCandidate, ...]:
        """The loop confirmed through time (:class:`LoopDetector`), as at most one candidate."""
        assert self.loop_detector is not None
        session = self.session
        if stamp_ns < (session.stamps[-1] if session.stamps else stamp_ns):
            return ()  # time went back: the session restarts when this frame is added
        # all the session's keyframes: the older ones are the candidates, the younger ones show
        # show what the lines next to a candidate score (the contrast test)
        descriptors, stamps, positions, travelled = session.arrays(len(session))
        match = self.loop_detector.update(
            desc[0],
            stamp_ns,
            descriptors,
            stamps,
            odom_position=odom_position,
            keyframe_positions=positions,
            keyframe_travelled_m=travelled,
            eligible=session.eligible(cutoff),
            raw_keyframe_descriptors=session.raw_arrays(len(session)),
        )
        if match is None or self.config.max_loop_candidates == 0:
            return ()
        i = match.keyframe
        score = float(session.descriptor(i) @ desc[0])  # the cosine of the descriptors as they came
        if score < self.config.loop_min_score:
            return ()
        return (
            LoopCandidate(
                rank=1,
                score=score,
                keyframe_stamp_ns=session.stamps[i],
                position=session.positions[i],  # type: ignore[arg-type]
                orientation=session.orientations[i],  # type: ignore[arg-type]
            ),
        )

    def _maybe_add_session_keyframe(self, desc, stamp_ns, odom_position, odom_orientation) -> None:
        cfg = self.config
        if self._last_kf_stamp is not None and stamp_ns < self._last_kf_stamp:
            logger.warning(
                "time went back (%d < %d ns): starting a new session", stamp_ns, self._last_kf_stamp
            )
            self.reset_session()
        position = None if odom_position is None else np.asarray(odom_position, dtype=np.float64).reshape(3)
        if self._last_kf_stamp is None:
            due = True
        elif position is not None and self._last_kf_position is not None:
            due = float(np.linalg.norm(position - self._last_kf_position)) >= cfg.keyframe_distance_m
        else:
            due = (stamp_ns - self._last_kf_stamp) >= cfg.keyframe_interval_s * 1e9
        if not due:
            return
        orientation = (
            None if odom_orientation is None else np.asarray(odom_orientation, dtype=np.float64).reshape(4)
        )
        detector = self.loop_detector
        travelled = detector.travelled_m if detector is not None else 0.0
        loop_desc = detector.centred(desc[0]) if detector is not None else None
        self.session.add(desc, stamp_ns, position, orientation, travelled, loop_desc)
        self._last_kf_stamp = stamp_ns
        if position is not None:
            self._last_kf_position = position


def _planar_pose(
    position: np.ndarray | None, orientation: np.ndarray | None
) -> tuple[float, float, float] | None:
    """``(x, y, yaw)`` of an odometry pose, ``None`` when either part is missing."""
    if position is None or orientation is None:
        return None
    p = np.asarray(position, dtype=np.float64).reshape(3)
    yaw = float(quaternion_to_euler(np.asarray(orientation, dtype=np.float64).reshape(4))[2])
    return float(p[0]), float(p[1]), yaw
