"""Loop-closure candidates confirmed through time: sequence matching over the session's own keyframes.

A single frame is weak evidence of a revisit: neighbouring streets look alike (on the demo's first
drive, which never revisits a place, the best session keyframe scores ~0.93 for most frames). A
robot does not teleport, so a real revisit shows as a *sequence*: the last ``confirm_frames``
frames match session keyframes whose stamps advance with the frames' own stamps (SeqSLAM).

Per frame, :meth:`LoopDetector.update`:

1. scores the frame against every eligible session keyframe (one ``(N, D) x (D,)`` product) and
   keeps the mean and standard deviation of those scores: each frame's scores are standardised by
   them (a calibration against the session's own score statistics: a look-alike street that
   everything resembles gets no credit); the window is the last ``confirm_frames`` frames not
   separated by more than ``max_frame_gap_s``;
2. for each candidate keyframe ``j`` (the frame's ``candidates`` best, and those near a locked
   loop's prediction) and each speed ratio ``v`` (``speed_ratios()``, from ``1 / max_speed_ratio``
   to ``max_speed_ratio``), follows the line back in time that ends at ``j`` (frame ``f`` sees the
   keyframe nearest to ``stamp(j) - v * (t_now - t_f)``) and takes the lower quartile of the
   standardised scores along it (most frames must agree: a single look-alike place seen for a
   few frames does not make a sequence): the sequence score of ``j`` is the best over the ratios;
3. with odometry, drops keyframes farther from the current odometry position than
   ``odom_drift_m + odom_drift_fraction * (distance travelled since that keyframe)``;
4. computes each candidate's *contrast*: its sequence score minus the best sequence score of the
   same lines shifted ``contrast_min_s`` to ``contrast_max_s`` (2-20 s) along the session, either
   way (the keyframes next to the candidate's, in the same light but at other places, and the
   frames' own recent stretch when the candidate is young: every session keyframe is passed, the
   younger ones only for this). A place stands out from its neighbours; a light, a weather or a
   look-alike stretch does not. Without it, a lap in another light than most of the session's
   keyframes confirmed its *own* keyframes 30-60 s old (standardised against the other light's
   statistics, everything of its own light stands out), with it none did on the benchmark's
   held-out drives;
5. keeps a *lock*: while a loop is locked, the keyframe is searched near where the lock predicts it
   (its stamp advances with the frames' stamps, within ``track_tolerance_s`` plus the time elapsed,
   never back along the first visit, and since the lock started at a pace between
   ``1 / max_speed_ratio`` and ``max_speed_ratio`` of the frames', within ``track_tolerance_s``)
   and is kept while its sequence score reaches ``keep_score`` and the lock's mean contrast since
   it started stays at ``keep_contrast`` or more; without a lock, the best keyframe whose contrast
   reaches ``start_contrast`` starts one when its sequence score reaches ``start_score``.

With ``centre_frames`` > 0, every descriptor (frames and, through :meth:`LoopDetector.centred`,
the keyframes when they are taken) is first centred on the mean descriptor of the last
``centre_frames`` frames and L2-normalised again: the look shared by everything seen lately (the
light, the weather, the camera) is removed and what is left is what sets a place apart from its
surroundings (descriptor standardisation per sequence: Schubert, Neubert and Protzel, ICRA 2020).
A revisit in another condition then scores like one in the same condition. Centring also makes
look-alikes (and, at night, the lap's own keyframes) stand out where they did not, so when the
caller passes the keyframes' descriptors as they came (``raw_keyframe_descriptors``; the localizer
does), a centred loop starts only where those pass the contrast test as well (``start_contrast``).

The cost per frame is the one product over the eligible keyframes plus a fixed amount of work
(``candidates x num_speed_ratios x confirm_frames`` dot products, and for the candidates whose
sequence score reaches ``keep_score`` as many again per shifted line: 20 offsets). The standardisation needs a session whose keyframes show varied places: over a few dozen
keyframes of one look-alike street a true revisit stands out less (``min_keyframes`` only guards
against no statistics at all). Defaults are chosen by evidence (``benchmarks/loop_closure.py``, ``benchmarks/README.md``). Drives
through a place in the opposite direction are not matched (the images differ anyway).
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass

import numpy as np

from vbl_ros.errors import ConfigError

__all__ = ["COLLECTING", "LOCKED", "SEARCHING", "LoopConfig", "LoopDetector", "SequenceMatch"]

logger = logging.getLogger(__name__)

_QUANTILE = 0.25  # the sequence score: this quantile of the standardised scores along a line

#: :attr:`LoopDetector.state` values: too few frames in the window (or eligible keyframes) to
#: score a sequence; scoring sequences, none confirmed; a loop confirmed and followed
COLLECTING, SEARCHING, LOCKED = "collecting", "searching", "locked"


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
        candidates: keyframes examined per frame: the frame's best matches (and, while a loop is
            locked, the keyframes near where the lock predicts it).
        centre_frames: descriptors are centred on the mean of the last this many frames' (0: used
            as they are; see the module docstring).
        start_contrast: a loop starts only when its sequence score exceeds the best sequence score
            of the same lines shifted ``contrast_min_s``..``contrast_max_s`` along the session by
            this much.
        keep_contrast: a locked loop ends when its mean contrast since it started falls below this.
        contrast_min_s, contrast_max_s, contrast_step_s: the shifts (either way) of the lines a
            candidate's sequence is compared with.
        contrast_guard_s: a shifted line must end this long before the window's first frame (the
            frames' own recent stretch is their own place).
    """

    confirm_frames: int = 8
    start_score: float = 2.5
    keep_score: float = 0.5
    max_speed_ratio: float = 2.0
    track_tolerance_s: float = 1.0
    odom_drift_m: float = 10.0
    odom_drift_fraction: float = 0.1
    max_frame_gap_s: float = 3.0
    min_keyframes: int = 10
    num_speed_ratios: int = 5
    candidates: int = 20
    centre_frames: int = 0
    start_contrast: float = 1.3
    keep_contrast: float = 0.25
    contrast_min_s: float = 2.0
    contrast_max_s: float = 20.0
    contrast_step_s: float = 2.0
    contrast_guard_s: float = 5.0

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
        if self.centre_frames < 0 or self.centre_frames == 1:
            raise ConfigError(
                f"centre_frames must be 0 (off) or >= 2, got {self.centre_frames} "
                "(a frame centred on itself alone is a zero vector)"
            )
        if not (math.isfinite(self.start_contrast) and math.isfinite(self.keep_contrast)):
            raise ConfigError("start_contrast and keep_contrast must be finite numbers")
        if not (
            0 < self.contrast_min_s <= self.contrast_max_s
            and self.contrast_step_s > 0
            and self.contrast_guard_s >= 0
        ):
            raise ConfigError(
                "the contrast lines need 0 < contrast_min_s <= contrast_max_s, contrast_step_s > 0 and "
                f"contrast_guard_s >= 0, got {self.contrast_min_s}, {self.contrast_max_s}, "
                f"{self.contrast_step_s}, {self.contrast_guard_s}"
            )
        if self.min_keyframes < 2 or self.num_speed_ratios < 1 or self.candidates < 1:
            raise ConfigError("min_keyframes must be >= 2, num_speed_ratios and candidates >= 1")

    def speed_ratios(self) -> np.ndarray:
        """The keyframe-time per frame-time slopes tried, geometrically spaced around 1."""
        if self.num_speed_ratios == 1:
            return np.ones(1)
        r = math.log(self.max_speed_ratio)
        return np.exp(np.linspace(-r, r, self.num_speed_ratios))


@dataclass(frozen=True)
class SequenceMatch:
    """A confirmed revisit: session keyframe ``keyframe`` (its index) matches the current frame.

    ``sequence_score`` is the sequence score of the best line; ``score`` the current frame's
    cosine similarity to the keyframe (of the centred descriptors with ``centre_frames`` > 0);
    ``locked`` whether it continues a lock.
    """

    keyframe: int
    score: float
    sequence_score: float
    locked: bool


@dataclass(frozen=True)
class _Frame:
    """A frame of the window: its descriptor and its scores' mean and spread over the keyframes
    eligible when it came (centred, and as they came when the raw contrast test runs)."""

    stamp_ns: int
    descriptor: np.ndarray
    mean: float
    spread: float
    raw: np.ndarray | None = None
    raw_mean: float = math.nan
    raw_spread: float = 1.0


class LoopDetector:
    """Confirms loop-closure candidates through time (see the module docstring).

    The caller owns the session keyframes and passes their arrays on each :meth:`update` (each
    keyframe's descriptor as :meth:`centred` gave it when the keyframe was taken); the detector
    keeps the last frames' descriptors, the odometry distance travelled and the lock.
    :attr:`state` says what the last update did (:data:`COLLECTING`, :data:`SEARCHING` or
    :data:`LOCKED`).
    """

    def __init__(self, config: LoopConfig) -> None:
        self.config = config
        self._slopes = config.speed_ratios()
        self._frames: collections.deque[_Frame] = collections.deque(maxlen=config.confirm_frames)
        # the last centre_frames raw descriptors (their mean is taken out of every descriptor)
        self._recent: collections.deque[np.ndarray] = collections.deque(maxlen=max(config.centre_frames, 1))
        # (keyframe stamp, frame stamp) of the last match and of the match that started the lock
        self._lock: tuple[int, int, int, int] | None = None
        self._lock_contrast: list[float] = []  # the lock's contrast on each frame since it started
        self._last_position: np.ndarray | None = None
        self.travelled_m = 0.0
        self.state = COLLECTING

    def reset(self) -> None:
        """Forget the frames, the lock and the distance travelled (a new session)."""
        self._frames.clear()
        self._recent.clear()
        self._lock = None
        self._last_position = None
        self.travelled_m = 0.0
        self.state = COLLECTING

    def centred(self, descriptor: np.ndarray) -> np.ndarray:
        """``(D,)`` the descriptor as the detector compares it: centred on the mean of the last
        ``centre_frames`` frames given to :meth:`update` and L2-normalised (unchanged when
        ``centre_frames`` is 0). Keyframes are stored this way when they are taken."""
        desc = np.asarray(descriptor, np.float32).reshape(-1)
        if self.config.centre_frames == 0 or not self._recent:
            return desc
        v = desc - np.mean(np.stack(self._recent), axis=0)
        norm = float(np.linalg.norm(v))
        return (v / norm).astype(np.float32) if norm > 1e-6 else np.zeros_like(desc)

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
        eligible: int | None = None,
        raw_keyframe_descriptors: np.ndarray | None = None,
    ) -> SequenceMatch | None:
        """The confirmed revisit of this frame, or ``None``.

        Args:
            descriptor: ``(D,)`` the frame's unit-L2 descriptor (as it came, not centred).
            stamp_ns: its stamp (stamps increase).
            keyframe_descriptors, keyframe_stamps_ns: ``(N, D)``, ``(N,)`` the session's keyframes
                in stamp order, their descriptors as :meth:`centred` gave them when they were
                taken; the first ``eligible`` are old enough to be a loop (all when ``None``), the
                younger ones serve only the contrast's shifted lines.
            odom_position: ``(3,)`` the robot's odometry position at ``stamp_ns`` (``None``: none).
            keyframe_positions, keyframe_travelled_m: ``(N, 3)`` (``nan`` rows: unknown) and
                ``(N,)`` the keyframes' odometry positions and distance travelled when taken;
                used with ``odom_position``.
            eligible: how many of the keyframes (a prefix) may be loop candidates; the mean and
                spread of the frame's scores are taken over them.
            raw_keyframe_descriptors: ``(N, D)`` the keyframes' descriptors as they came; with
                ``centre_frames`` > 0, a loop then starts only where these (and the frame's
                descriptor as it came) pass the contrast test too.
        """
        cfg = self.config
        stamp_ns = int(stamp_ns)
        position = None if odom_position is None else np.asarray(odom_position, np.float64).reshape(3)
        if position is not None:
            if self._last_position is not None:
                self.travelled_m += float(np.linalg.norm(position - self._last_position))
            self._last_position = position
        if self._frames and not 0 < stamp_ns - self._frames[-1].stamp_ns <= cfg.max_frame_gap_s * 1e9:
            self._frames.clear()
            self._lock = None
        all_kd = np.asarray(keyframe_descriptors, np.float32)
        all_kst = np.asarray(keyframe_stamps_ns, dtype=np.int64)
        n = len(all_kst) if eligible is None else int(eligible)
        kd = all_kd[:n]
        if cfg.centre_frames:
            self._recent.append(np.asarray(descriptor, np.float32).reshape(-1))
        desc = self.centred(descriptor)
        # (N,) this frame's scores: its statistics, its best keyframes. einsum runs on this thread:
        # numpy's BLAS product spreads over threads from a few thousand rows and then waits for
        # busy cores (6-8 ms instead of 0.2 ms at 3600 keyframes on the shared 2-core machine)
        current = np.einsum("nd,d->n", kd, desc)
        enough = n >= cfg.min_keyframes
        mean, spread = (float(current.mean()), float(current.std()) + 1e-6) if enough else (math.nan, 1.0)
        frame = _Frame(stamp_ns, desc, mean, spread)
        raw_kd = None
        if raw_keyframe_descriptors is not None and cfg.centre_frames and enough:
            # centred: the descriptors as they came are kept too, for the raw contrast test
            raw_kd = np.asarray(raw_keyframe_descriptors, np.float32)
            raw = np.asarray(descriptor, np.float32).reshape(-1)
            raw_current = np.einsum("nd,d->n", raw_kd[:n], raw)
            frame = _Frame(
                stamp_ns, desc, mean, spread, raw, float(raw_current.mean()), float(raw_current.std()) + 1e-6
            )
        self._frames.append(frame)
        if len(self._frames) < cfg.confirm_frames or not enough:
            self._lock = None
            self.state = COLLECTING
            return None
        kst = all_kst[:n]
        candidates = self._candidates(current, kst, stamp_ns)
        sequence = self._sequence_scores(candidates, kd, kst, stamp_ns)
        if position is not None and keyframe_positions is not None and keyframe_travelled_m is not None:
            kp = np.asarray(keyframe_positions, np.float64)[candidates]
            since = np.maximum(
                0.0, self.travelled_m - np.asarray(keyframe_travelled_m, np.float64)[candidates]
            )
            allowed = cfg.odom_drift_m + cfg.odom_drift_fraction * since
            far = np.linalg.norm(kp - position, axis=1) > allowed  # nan (unknown position): kept
            sequence[far] = -np.inf
        # the contrast is needed where a loop may start, and for the keyframe that may continue the lock
        near = self._near_lock(kst, stamp_ns)[candidates]
        continues = np.zeros(len(candidates), dtype=bool)
        if near.any():
            continues[np.flatnonzero(near)[np.argmax(sequence[near])]] = True
        needed = (sequence >= cfg.start_score) | (continues & (sequence >= cfg.keep_score))
        contrast = self._contrast(needed, candidates, kst, all_kd, all_kst, stamp_ns)
        match = self._follow_lock(candidates, sequence, contrast, current, kst, stamp_ns)
        if match is None:
            started = np.where(contrast >= cfg.start_contrast, sequence, -np.inf)
            if raw_kd is not None and all(f.raw is not None for f in self._frames):
                # centred, a loop starts only where the descriptors as they came pass the contrast too
                maybe = started >= cfg.start_score
                raw_contrast = self._contrast(maybe, candidates, kst, raw_kd, all_kst, stamp_ns, raw=True)
                started = np.where(raw_contrast >= cfg.start_contrast, started, -np.inf)
            best = int(np.argmax(started))
            if started[best] >= cfg.start_score:
                j = int(candidates[best])
                match = SequenceMatch(j, float(current[j]), float(sequence[best]), False)
                self._lock_contrast = [float(contrast[best])]
        if match is None:
            self._lock = None
        else:
            kf = int(kst[match.keyframe])
            start = self._lock[2:] if match.locked and self._lock is not None else (kf, stamp_ns)
            self._lock = (kf, stamp_ns, *start)
        self.state = SEARCHING if match is None else LOCKED
        return match

    def _candidates(self, current: np.ndarray, kst: np.ndarray, stamp_ns: int) -> np.ndarray:
        """Keyframe indices examined: the frame's ``candidates`` best, and those near the lock."""
        k = min(self.config.candidates, len(current))
        chosen = np.argpartition(-current, k - 1)[:k]
        if self._lock is not None:
            chosen = np.concatenate([chosen, np.flatnonzero(self._near_lock(kst, stamp_ns))])
        return np.unique(chosen)

    def _near_lock(self, kst: np.ndarray, stamp_ns: int) -> np.ndarray:
        """``(N,)`` the keyframes where the lock predicts the loop now (``False`` without a lock)."""
        if self._lock is None:
            return np.zeros(len(kst), dtype=bool)
        kf_stamp, frame_stamp, kf_start, frame_start = self._lock
        tolerance = self.config.track_tolerance_s * 1e9
        elapsed = stamp_ns - frame_stamp
        # each frame: near the prediction, never back along the first visit (the robot does not
        # reverse through the places it revisits); since the lock started: at a speed ratio the
        # sequences allow (a lock may not stall on one place while the frames move on)
        step = (np.abs(kst - (kf_stamp + elapsed)) <= tolerance + elapsed) & (kst >= kf_stamp)
        since, advance, r = stamp_ns - frame_start, kst - kf_start, self.config.max_speed_ratio
        return step & (advance >= since / r - tolerance) & (advance <= since * r + tolerance)

    def _sequence_scores(
        self, candidates: np.ndarray, kd: np.ndarray, kst: np.ndarray, stamp_ns: int
    ) -> np.ndarray:
        """``(C,)`` the sequence score of each candidate keyframe (best over the speed ratios)."""
        return self._line_scores(kd, kst, kst[candidates], stamp_ns)[0].max(axis=-1)

    def _line_scores(
        self, kd: np.ndarray, kst: np.ndarray, ends: np.ndarray, stamp_ns: int, raw: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(..., V)`` the sequence score of the lines ending at keyframe stamps ``ends`` (any
        shape) per speed ratio, and ``(..., V, W)`` the stamps of the keyframes each line visits."""
        frames = list(self._frames)
        ago = np.array([stamp_ns - f.stamp_ns for f in frames], dtype=np.float64)  # (W,)
        target = ends[..., None, None] - self._slopes[:, None] * ago[None, :]
        n = len(kst)
        right = np.clip(np.searchsorted(kst, target), 1, n - 1)
        nearest = np.where(np.abs(kst[right - 1] - target) <= np.abs(kst[right] - target), right - 1, right)
        window = np.stack([f.raw if raw else f.descriptor for f in frames])  # (W, D)
        scores = np.einsum("...wd,wd->...w", kd[nearest], window)
        mean = np.array([f.raw_mean if raw else f.mean for f in frames])
        spread = np.array([f.raw_spread if raw else f.spread for f in frames])
        z = (scores - mean) / spread
        return np.quantile(z, _QUANTILE, axis=-1), kst[nearest]

    def _contrast(
        self,
        needed: np.ndarray,
        candidates: np.ndarray,
        kst: np.ndarray,
        all_kd: np.ndarray,
        all_kst: np.ndarray,
        stamp_ns: int,
        raw: bool = False,
    ) -> np.ndarray:
        """``(C,)`` each candidate's contrast: its sequence score minus the best sequence score of
        the same lines shifted ``contrast_min_s`` to ``contrast_max_s`` along the session, either
        way, for the ``needed`` candidates (``-inf`` for the others, and where no shifted line
        can be compared with); of the descriptors as the detector compares them, or with ``raw``
        of the descriptors as they came (``all_kd`` then the keyframes' raw descriptors).

        A shifted line counts when the session has a keyframe near each of its times and when it
        ends ``contrast_guard_s`` before the window's first frame (the frames' own stretch is their
        own place); it may use keyframes too young to be loop candidates."""
        cfg = self.config
        contrast = np.full(len(needed), -np.inf)
        live = np.flatnonzero(needed)
        if len(live) == 0:
            return contrast
        steps = np.arange(cfg.contrast_min_s, cfg.contrast_max_s + 1e-9, cfg.contrast_step_s)
        offsets = (np.concatenate([-steps[::-1], steps]) * 1e9).astype(np.int64)  # (O,)
        ends = kst[candidates[live]][:, None] + offsets[None, :]  # (L, O)
        shifted, visited = self._line_scores(all_kd, all_kst, ends, stamp_ns, raw)  # (L, O, V), (L, O, V, W)
        own = self._line_scores(all_kd, all_kst, kst[candidates[live]], stamp_ns, raw)[0].max(axis=-1)
        ago = np.array([stamp_ns - f.stamp_ns for f in self._frames], dtype=np.float64)
        target = ends[..., None, None] - self._slopes[:, None] * ago[None, :]
        present = np.abs(visited - target) <= cfg.max_frame_gap_s * 1e9
        before = visited <= self._frames[0].stamp_ns - cfg.contrast_guard_s * 1e9
        valid = (present & before).all(axis=-1)  # (L, O, V)
        contrast[live] = own - np.where(valid, shifted, -np.inf).max(axis=(1, 2))
        return contrast

    def _follow_lock(
        self,
        candidates: np.ndarray,
        sequence: np.ndarray,
        contrast: np.ndarray,
        current: np.ndarray,
        kst: np.ndarray,
        stamp_ns: int,
    ) -> SequenceMatch | None:
        """The keyframe that continues the lock (near where it predicts it), if it holds: its
        sequence score reaches ``keep_score`` and the lock's mean contrast since it started stays
        at ``keep_contrast`` or more."""
        near = self._near_lock(kst, stamp_ns)[candidates]
        if not near.any():
            return None
        best = int(np.flatnonzero(near)[np.argmax(sequence[near])])
        if sequence[best] < self.config.keep_score:
            return None
        self._lock_contrast.append(float(contrast[best]))
        if float(np.mean(self._lock_contrast)) < self.config.keep_contrast:
            return None
        j = int(candidates[best])
        return SequenceMatch(j, float(current[j]), float(sequence[best]), True)
