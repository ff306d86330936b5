"""Loop-closure candidates confirmed through time: sequence matching over the session's own keyframes.

A single frame is weak evidence of a revisit: neighbouring streets look alike (on the demo's first
drive, which never revisits a place, the best session keyframe scores ~0.93 for most frames). A
robot does not teleport, so a real revisit shows as a *sequence*: the last ``confirm_frames``
frames match session keyframes whose stamps advance with the frames' own stamps (SeqSLAM).

Per frame, :meth:`LoopDetector.update`:

1. scores the last ``confirm_frames`` frames (those not separated by more than
   ``max_frame_gap_s``) against every eligible session keyframe and standardises each frame's
   scores by their own mean and standard deviation over those keyframes (a calibration against the
   session's own score statistics: a look-alike street everyone resembles gets no credit);
2. for each keyframe ``j`` and each speed ratio ``v`` (``speed_ratios()``, from ``1 / max_speed_ratio``
   to ``max_speed_ratio``), follows the line back in time that ends at ``j`` (frame ``f`` sees the
   keyframe nearest to ``stamp(j) - v * (t_now - t_f)``) and takes the lower quartile of the
   standardised scores along it (most frames must agree: a single look-alike place seen for a
   few frames does not make a sequence): the sequence score of ``j`` is the best over the ratios;
3. with odometry, drops keyframes farther from the current odometry position than
   ``odom_drift_m + odom_drift_fraction * (distance travelled since that keyframe)``;
4. keeps a *lock*: while a loop is locked, the keyframe is searched near where the lock predicts it
   (its stamp advances with the frames' stamps, within ``track_tolerance_s`` plus the time elapsed)
   and is kept while its sequence score reaches ``keep_score``; without a lock, the best keyframe
   starts one when its sequence score reaches ``start_score``.

Defaults are chosen by evidence (``benchmarks/loop_closure.py``, ``benchmarks/README.md``). Drives
through a place in the opposite direction are not matched (the images differ anyway).
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass

import numpy as np

from vbl_ros.errors import ConfigError

__all__ = ["LoopConfig", "LoopDetector", "SequenceMatch"]

logger = logging.getLogger(__name__)

_QUANTILE = 0.25  # the sequence score: this quantile of the standardised scores along a line


@dataclass(frozen=True)
class LoopConfig:
    """Settings of the :class:`LoopDetector`.

    Attributes:
        confirm_frames: consecutive frames a sequence spans (the window of frames matched).
        start_score: sequence score (lower quartile of the standardised scores along the line)
            that starts a loop.
        keep_score: sequence score that keeps a locked loop (``<= start_score``: hysteresis).
        max_speed_ratio: the revisit may be driven up to this many times faster or slower.
        track_tolerance_s: a locked loop's keyframe may be this far (in keyframe stamp) from where
            the lock predicts it, plus the time elapsed since the last frame.
        odom_drift_m, odom_drift_fraction: with odometry, a keyframe is a candidate only within
            ``odom_drift_m + odom_drift_fraction * distance travelled since it`` of the current
            odometry position.
        max_frame_gap_s: frames farther apart than this (or going back in time) break the sequence
            (it starts again).
        min_keyframes: eligible session keyframes needed before any statistics are taken.
        num_speed_ratios: speed ratios tried between ``1 / max_speed_ratio`` and ``max_speed_ratio``.
    """

    confirm_frames: int = 8
    start_score: float = 2.5
    keep_score: float = 0.5
    max_speed_ratio: float = 2.0
    track_tolerance_s: float = 2.0
    odom_drift_m: float = 10.0
    odom_drift_fraction: float = 0.1
    max_frame_gap_s: float = 3.0
    min_keyframes: int = 10
    num_speed_ratios: int = 5

    def __post_init__(self) -> None:
        if self.confirm_frames < 2:
            raise ConfigError(
                f"confirm_frames must be >= 2 for sequence matching, got {self.confirm_frames} "
                "(single-frame loop candidates need no LoopDetector)"
            )
        if not (math.isfinite(self.start_score) and math.isfinite(self.keep_score)):
            raise ConfigError("start_score and keep_score must be finite numbers")
        if self.keep_score > self.start_score:
            raise ConfigError(
                f"keep_score ({self.keep_score}) must not exceed start_score ({self.start_score})"
            )
        if not self.max_speed_ratio >= 1.0:
            raise ConfigError(f"max_speed_ratio must be >= 1, got {self.max_speed_ratio}")
        for name in ("track_tolerance_s", "odom_drift_m", "odom_drift_fraction"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if not self.max_frame_gap_s > 0:
            raise ConfigError(f"max_frame_gap_s must be > 0, got {self.max_frame_gap_s}")
        if self.min_keyframes < 2 or self.num_speed_ratios < 1:
            raise ConfigError("min_keyframes must be >= 2 and num_speed_ratios >= 1")

    def speed_ratios(self) -> np.ndarray:
        """The keyframe-time per frame-time slopes tried, geometrically spaced around 1."""
        if self.num_speed_ratios == 1:
            return np.ones(1)
        r = math.log(self.max_speed_ratio)
        return np.exp(np.linspace(-r, r, self.num_speed_ratios))


@dataclass(frozen=True)
class SequenceMatch:
    """A confirmed revisit: session keyframe ``keyframe`` (its index) matches the current frame.

    ``sequence_score`` is the mean standardised score along the best line; ``score`` the current
    frame's cosine similarity to the keyframe; ``locked`` whether it continues a lock.
    """

    keyframe: int
    score: float
    sequence_score: float
    locked: bool


class LoopDetector:
    """Confirms loop-closure candidates through time (see the module docstring).

    The caller owns the session keyframes and passes their arrays on each :meth:`update`; the
    detector keeps the last frames' descriptors, the odometry distance travelled and the lock.
    """

    def __init__(self, config: LoopConfig) -> None:
        self.config = config
        self._slopes = config.speed_ratios()
        self._frames: collections.deque[tuple[int, np.ndarray]] = collections.deque(
            maxlen=config.confirm_frames
        )
        self._lock: tuple[int, int] | None = None  # (keyframe stamp, frame stamp) of the last match
        self._last_position: np.ndarray | None = None
        self.travelled_m = 0.0

    def reset(self) -> None:
        """Forget the frames, the lock and the distance travelled (a new session)."""
        self._frames.clear()
        self._lock = None
        self._last_position = None
        self.travelled_m = 0.0

    def update(
        self,
        descriptor: np.ndarray,
        stamp_ns: int,
        keyframe_descriptors: np.ndarray,
        keyframe_stamps_ns: np.ndarray,
        *,
        odom_position: np.ndarray | None = None,
        keyframe_positions: np.ndarray | None = None,
        keyframe_travelled_m: np.ndarray | None = None,
    ) -> SequenceMatch | None:
        """The confirmed revisit of this frame, or ``None``.

        Args:
            descriptor: ``(D,)`` the frame's unit-L2 descriptor.
            stamp_ns: its stamp (stamps increase).
            keyframe_descriptors, keyframe_stamps_ns: ``(N, D)``, ``(N,)`` the *eligible* session
                keyframes (old enough to be a loop), in stamp order.
            odom_position: ``(3,)`` the robot's odometry position at ``stamp_ns`` (``None``: none).
            keyframe_positions, keyframe_travelled_m: ``(N, 3)`` (``nan`` rows: unknown) and
                ``(N,)`` the keyframes' odometry positions and distance travelled when taken;
                used with ``odom_position``.
        """
        cfg = self.config
        stamp_ns = int(stamp_ns)
        position = None if odom_position is None else np.asarray(odom_position, np.float64).reshape(3)
        if position is not None:
            if self._last_position is not None:
                self.travelled_m += float(np.linalg.norm(position - self._last_position))
            self._last_position = position
        if self._frames and not 0 < stamp_ns - self._frames[-1][0] <= cfg.max_frame_gap_s * 1e9:
            self._frames.clear()
            self._lock = None
        self._frames.append((stamp_ns, np.asarray(descriptor, np.float32).reshape(-1)))
        n = len(keyframe_stamps_ns)
        if len(self._frames) < cfg.confirm_frames or n < cfg.min_keyframes:
            self._lock = None
            return None
        kst = np.asarray(keyframe_stamps_ns, dtype=np.int64)
        scores = np.stack([d for _, d in self._frames]) @ np.asarray(keyframe_descriptors, np.float32).T
        z = (scores - scores.mean(axis=1, keepdims=True)) / (scores.std(axis=1, keepdims=True) + 1e-6)
        ago = np.array([stamp_ns - s for s, _ in self._frames], dtype=np.float64)  # (W,)
        rows = np.arange(len(ago))[:, None]
        sequence = np.full(n, -np.inf)
        for v in self._slopes:
            target = kst[None, :] - v * ago[:, None]  # (W, N) stamps the line visits
            right = np.clip(np.searchsorted(kst, target), 1, n - 1)
            nearest = np.where(
                np.abs(kst[right - 1] - target) <= np.abs(kst[right] - target), right - 1, right
            )
            sequence = np.maximum(sequence, np.quantile(z[rows, nearest], _QUANTILE, axis=0))
        if position is not None and keyframe_positions is not None and keyframe_travelled_m is not None:
            kp = np.asarray(keyframe_positions, np.float64)
            since = np.maximum(0.0, self.travelled_m - np.asarray(keyframe_travelled_m, np.float64))
            allowed = cfg.odom_drift_m + cfg.odom_drift_fraction * since
            far = np.linalg.norm(kp - position, axis=1) > allowed  # nan (unknown position): kept
            sequence[far] = -np.inf
        match = self._follow_lock(sequence, scores[-1], kst, stamp_ns)
        if match is None:
            best = int(np.argmax(sequence))
            if sequence[best] >= cfg.start_score:
                match = SequenceMatch(best, float(scores[-1, best]), float(sequence[best]), False)
        self._lock = None if match is None else (int(kst[match.keyframe]), stamp_ns)
        return match

    def _follow_lock(
        self, sequence: np.ndarray, current: np.ndarray, kst: np.ndarray, stamp_ns: int
    ) -> SequenceMatch | None:
        """The keyframe that continues the lock (near where it predicts it), if it holds."""
        if self._lock is None:
            return None
        kf_stamp, frame_stamp = self._lock
        elapsed = stamp_ns - frame_stamp
        near = np.abs(kst - (kf_stamp + elapsed)) <= self.config.track_tolerance_s * 1e9 + elapsed
        if not near.any():
            return None
        j = int(np.flatnonzero(near)[np.argmax(sequence[near])])
        if sequence[j] < self.config.keep_score:
            return None
        return SequenceMatch(j, float(current[j]), float(sequence[j]), True)
