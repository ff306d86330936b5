"""The temporal pose filter: a particle filter over map places fed by each frame's retrieved matches.

Design (Monte Carlo localization on a keyframe map, with sensor resetting and a sequential test):

- **State**: a fixed number of particles ``(x, y, yaw)`` in the map's frame with weights. The count
  does not depend on the map: the filter only ever looks at the frame's retrieved matches (and the
  map's keyframes near them), so its cost per frame is bounded whatever the map's size.
- **Motion step**: with odometry, each particle moves by the odometry's body-frame displacement and
  heading change since the previous frame, applied in the particle's own heading, with noise
  proportional to the motion (``odometry_noise`` of the distance and of the turn, plus
  ``heading_noise_deg_per_m`` of drift). Without odometry, a bounded speed prior: each particle also
  carries a speed, drawn uniformly in ``[0, max_speed_mps]`` when it is (re)drawn and changing by a
  random acceleration (2 m/s^2) each frame, clipped to that range; it moves along its heading, the
  heading diffusing (10 deg per frame). Headings and speeds that agree with the sequence of matches
  survive the measurement step: the filter learns the speed and direction from retrieval alone.
- **Measurement step: hits against the frame's own chance level.** Scores are not comparable across
  conditions (at night every score is low, a wrong place in daylight scores higher than the right
  one at night), so the filter does not read them on an absolute scale. Each retrieved match ``j``
  (the localizer's top ``4 * top_k``) is a kernel around its keyframe (position ``kernel_m``, heading
  ``kernel_yaw_deg``: a street driven the other way is another place), weighed by its score
  standardised by the frame's own retrieved scores (local contrast normalisation, as SeqSLAM):
  ``weight_j = exp(score_contrast * (z_j - z_max))``. A pose's *hit* ``h = max_j weight_j k_j`` in
  [0, 1] says how much a match landed there. Two hypotheses: the robot is there (then the frame's
  matches hit it with probability ``hit_rate``, a pessimistic, night-like value: at night the right
  place is among the 20 matches in about 60 % of frames and first in about 20 %), or it is at a
  random place of the map, which the matches hit with the frame's **chance level** ``c``: the mean
  hit over the map's keyframes (computed on the keyframes near the matches, at most 256 of them;
  at least 0.05, since retrieval errors are not spread evenly over the map). A frame whose matches
  are scattered over many places has a high chance level and says little; one whose matches agree
  says much. The pose's likelihood ratio is ``miss + (hit - miss) h`` with ``hit = hit_rate / c``,
  ``miss = (1 - hit_rate) / (1 - c)``: its mean over the map is 1, a hit counts for, a miss
  against. Its log, tempered by ``evidence_weight`` (consecutive frames' retrieval errors are
  correlated), re-weighs the particles.
- **Sensor resetting** (augmented MCL): after each frame's estimate a share of particles is
  re-drawn around the current matches (a match chosen with probability ~ its weight), to be judged
  by the following frames, not by the frame that placed them. The share is ``reset_min`` while the
  belief explains the frame's matches as well as it usually does and rises towards ``reset_max`` as
  it explains them worse: ``1 - fast / slow``, the short- over the long-term average of the belief's
  mean hit (Thrun et al., Probabilistic Robotics 8.3.5); it is ``reset_max`` when the filter has run
  too long without support. So a kidnapped robot re-localizes from retrieval alone.
- **Output**: the estimate is the weighted mean of the particles within ``radius_m`` of the densest
  particle (two mean-shift steps); ``mass`` is the weight within ``radius_m`` of it, ``spread_m``
  the RMS distance of all particles to their mean.
- **Confirmation: a sequential test of the tracked hypothesis** ("the robot is within ``radius_m`` of
  the estimate") against "it is at a random place of the map". Each frame's log likelihood ratio of
  the hypothesis is the log of the predicted belief's mean likelihood ratio inside the radius; the
  frame *supports* the estimate when it is positive. They are summed as Page's CUSUM
  (``max(0, sum)``, capped at 1.5 thresholds so that a loss shows in time) from the moment the
  hypothesis appeared; an estimate that moves farther than ``radius_m`` plus the motion allowed
  since the last frame (the belief's mass went over to another place) is a new hypothesis whose sum
  starts at zero. The filter starts ``tracking`` (from ``initializing``, or from ``lost``) when the
  sum reaches Wald's threshold ``log((1 - confirm_error) / confirm_error)`` (three times that
  without odometry, whose motion prior lets a hypothesis chase the matches), the belief is
  concentrated (mass >= ``min_mass``), the frame supports it and it has been followed for
  ``confirm_frames`` frames. Many weak but consistent hits confirm a place as surely as a few strong
  ones: at night, where the right place is rarely the first match, the sum still grows. It stays
  tracking while the belief stays concentrated (mass >= ``keep_mass``), the sum is positive and the
  estimate was supported within the last ``max_frames_unsupported`` frames (it bridges frames where
  retrieval fails, on odometry or the speed prior), and is ``lost`` otherwise. A prior is offered
  only while tracking.
- **Without odometry, the estimate must also beat its best rival place.** The test above weighs
  the estimate against a *random* place. With odometry that is enough: a look-alike street does not
  move the way the odometry says. Without it, the speed prior lets the belief chase any sequence
  of matches, and in an aliased town at night a look-alike place, or a belief that drifts slowly off
  the right street, can gather as much evidence against chance as the right place does (town_d's
  night drive, benchmarks/README.md). So without odometry a hypothesis is confirmed only when, in
  ``confirm_frames`` frames in a row, the last ``rival_window`` frames' matches support it at
  least ``rival_margin`` times as much as they support its strongest rival: each of the current
  frame's matches farther than ``radius_m + 2 kernel_m`` from the estimate. A place's support is
  the sum over those frames of the frame's best ``weight_j exp(-d_j^2 / 2 radius_m^2)`` (its
  matches within about ``radius_m``). The rival is re-chosen every frame among the places the
  matches point to, so the estimate is compared with the best competing place, wherever it is, not
  with one tracked alternative. Where the right place is among the matches nearly as often as a
  look-alike, neither is confirmed; where it is matched clearly more often (daylight, snow), the
  margin is 2-3 and confirmation costs a few frames. The rule gates confirmation only; a tracked
  estimate is kept or lost as above. With odometry it is not applied (on the tuning and held-out
  drives with odometry the filter published no wrong prior without it).
- **Covariance**: the particles' spread within the radius times ``covariance_scale`` (with odometry)
  or ``covariance_scale_no_odometry``, plus a floor. The particles stay spread over the match
  kernels while their mean is much more precise; the scales are calibrated on the tuning town's
  drives (95 % ellipses holding about 95 % of the errors, with a drifting odometry). Yaw = the
  particles' circular mean.

Everything random comes from one generator seeded by ``FilterConfig.seed`` (reset by :meth:`reset`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from vbl_ros.tracking.config import FilterConfig

__all__ = ["FilterEstimate", "PlaceFilter", "TRACKING_STATES"]

logger = logging.getLogger(__name__)

TRACKING_STATES = ("initializing", "tracking", "lost")
_RESET_AVERAGE = 0.3  # short-term average of the belief's support (augmented MCL)
_MIN_NOISE_M = 0.05  # odometry noise floor per frame (keeps the particles from collapsing)
_MIN_NOISE_RAD = math.radians(0.3)
_FREE_HEADING_NOISE_RAD = math.radians(10.0)  # heading diffusion per frame without odometry
_SPEED_NOISE_MPS2 = 2.0  # without odometry, each particle's speed changes by ~N(0, 2 m/s^2 * dt)
_MODE_CANDIDATES = 16  # heaviest particles tried as the belief's densest place
_SLOW_AVERAGE = 0.02  # long-term average of the belief's support (augmented MCL)
_REACH_KERNELS = 3.0  # a match's hit is negligible beyond this many kernel_m (grid cell size)
_MIN_SCORE_SPREAD = 1e-4  # floor of a frame's score standard deviation
_MIN_CHANCE = 0.05  # floor of a frame's chance hit rate (retrieval errors are not spread evenly)
_NO_ODOMETRY_THRESHOLD = 3.0  # without odometry the motion prior constrains less: three times the evidence
_CHANCE_SAMPLE = 256  # at most this many keyframes near the matches are scored for the chance level
_NEIGHBOUR_CELLS = np.array([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)])
_EVIDENCE_CAP = 1.5  # the accumulated evidence is capped at this many thresholds
_RIVAL_GAP_KERNELS = 2.0  # rival places lie farther than radius_m + this many kernel_m from the estimate


def _wrap(angle: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(angle) + math.pi) % (2 * math.pi) - math.pi


@dataclass(frozen=True)
class FilterEstimate:
    """The filter's belief after one frame.

    Attributes:
        state: ``initializing``, ``tracking`` or ``lost``.
        position: the estimate (map frame, metres); ``None`` before the first match.
        yaw_rad: its heading (circular mean of the particles near it).
        covariance_xy: ``(2, 2)`` row-major position covariance (particles near it + floor), m^2.
        yaw_variance: heading variance (rad^2).
        mass: the belief's share within ``radius_m`` of the estimate.
        spread_m: RMS distance of all particles to their mean.
        unsupported_frames: frames since a strong match was near the estimate.
        best_keyframe: id of the retrieved keyframe nearest the estimate (-1: none).
        evidence: the estimate's accumulated log likelihood ratio against a random place.
    """

    state: str
    position: tuple[float, float, float] | None
    yaw_rad: float
    covariance_xy: tuple[float, float, float, float]
    yaw_variance: float
    mass: float
    spread_m: float
    unsupported_frames: int
    best_keyframe: int
    evidence: float = 0.0

    @property
    def confident(self) -> bool:
        """Whether a prior should be published: tracking, with a position."""
        return self.state == "tracking" and self.position is not None


class _KeyframeGrid:
    """The map's keyframes hashed into square cells, to find those near a few points at a cost that
    does not grow with the map (the occupied cells' sorted keys, binary search)."""

    def __init__(self, xy: np.ndarray, cell_m: float) -> None:
        self.cell = float(cell_m)
        ij = np.floor(xy / self.cell).astype(np.int64)
        self.origin = ij.min(axis=0) - 1 if len(ij) else np.zeros(2, np.int64)
        self.rows = int(ij[:, 1].max() - self.origin[1] + 2) if len(ij) else 1
        keys = self._keys(ij)
        self.order = np.argsort(keys, kind="stable")
        # one entry per occupied cell (a small array, searched without cache misses on large maps)
        self.cell_keys, self.cell_start, self.cell_count = np.unique(
            keys[self.order], return_index=True, return_counts=True
        )

    def _keys(self, ij: np.ndarray) -> np.ndarray:
        return (ij[:, 0] - self.origin[0]) * self.rows + (ij[:, 1] - self.origin[1])

    def near(self, points: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
        """The keyframes in the 3 x 3 cells around each point (each once): their count, and their ids,
        or at most ``limit`` of them evenly spread over the list when there are more."""
        ij = np.floor(points / self.cell).astype(np.int64)
        cells = np.unique(self._keys((ij[:, None, :] + _NEIGHBOUR_CELLS[None]).reshape(-1, 2)))
        at = np.minimum(np.searchsorted(self.cell_keys, cells), len(self.cell_keys) - 1)
        found = at[self.cell_keys[at] == cells]
        lo, counts = self.cell_start[found], self.cell_count[found]
        total = int(counts.sum())
        # positions in the concatenated runs [lo, lo + count) of the sorted keyframes
        if total > limit:
            wanted = np.arange(limit) * (total - 1) // (limit - 1)
        else:
            wanted = np.arange(total)
        ends = np.cumsum(counts)
        run = np.searchsorted(ends, wanted, side="right")
        return self.order[lo[run] + wanted - (ends - counts)[run]], total


class PlaceFilter:
    """Particle filter over the places of a keyframe map (see the module docstring).

    Args:
        map_positions: ``(N, 3)`` keyframe positions in the map's frame.
        map_yaws: ``(N,)`` keyframe headings (rad).
        config: the filter's settings.
    """

    def __init__(
        self,
        map_positions: np.ndarray,
        map_yaws: np.ndarray,
        config: FilterConfig,
    ) -> None:
        self.positions = np.asarray(map_positions, dtype=np.float64).reshape(-1, 3)
        self.yaws = np.asarray(map_yaws, dtype=np.float64).reshape(-1)
        if len(self.yaws) != len(self.positions):
            raise ValueError(f"{len(self.positions)} keyframe positions but {len(self.yaws)} headings")
        self.config = config
        self._grid = _KeyframeGrid(self.positions[:, :2], _REACH_KERNELS * config.kernel_m)
        # Wald's threshold on the accumulated log likelihood ratio: right with probability 1 - confirm_error
        self.threshold = math.log((1.0 - config.confirm_error) / config.confirm_error)
        self.reset()

    def reset(self) -> None:
        """Forget the belief (the next frame with matches starts it anew)."""
        n = self.config.particles
        self._rng = np.random.default_rng(self.config.seed)
        self._xy = np.zeros((n, 2))
        self._yaw = np.zeros(n)
        self._speed = np.zeros(n)
        self._w = np.full(n, 1.0 / n)
        self._started = False
        self._unsupported = 0
        self._evidence = 0.0  # the tracked hypothesis's accumulated log likelihood ratio (CUSUM)
        self._hypothesis_frames = 0
        self._tracking = self._ever_tracked = False
        self._last_centre: np.ndarray | None = None
        self._moved_m = 0.0  # how far the motion step allowed the robot to move this frame
        self._support_fast = self._support_slow = math.nan  # set by the first frame's support
        self._last_stamp: int | None = None
        self._last_odom: np.ndarray | None = None
        self._z = 0.0
        self._recent: list[tuple[np.ndarray, np.ndarray]] = []  # the last frames' (match xy, weight)
        self._rival_frames = 0  # consecutive frames in which the estimate beat its best rival

    # ------------------------------------------------------------------ public
    def update(
        self,
        stamp_ns: int,
        match_ids: np.ndarray,
        match_scores: np.ndarray,
        odometry: tuple[float, float, float] | np.ndarray | None = None,
    ) -> FilterEstimate:
        """One frame: motion since the last frame, then the frame's retrieved matches.

        Args:
            stamp_ns: the frame's stamp.
            match_ids: ``(K,)`` retrieved map keyframe ids, best first (may be empty).
            match_scores: ``(K,)`` their scores.
            odometry: the robot's odometry pose ``(x, y, yaw)`` at ``stamp_ns`` in any fixed frame
                (only differences between frames are used), or ``None``.
        """
        cfg = self.config
        stamp_ns = int(stamp_ns)
        ids = np.asarray(match_ids, dtype=np.int64).reshape(-1)
        scores = np.asarray(match_scores, dtype=np.float64).reshape(-1)
        keep = (ids >= 0) & np.isfinite(scores)
        ids, scores = ids[keep], scores[keep]
        odom = None if odometry is None else np.asarray(odometry, dtype=np.float64).reshape(3)
        if self._last_stamp is not None:
            gap_s = (stamp_ns - self._last_stamp) * 1e-9
            if not 0 < gap_s <= cfg.max_gap_s:
                logger.info("frame gap of %.2f s: restarting the filter", gap_s)
                self.reset()
        dt = 0.0 if self._last_stamp is None else (stamp_ns - self._last_stamp) * 1e-9
        self._last_stamp = stamp_ns

        m_xy = self.positions[ids, :2]
        m_yaw = self.yaws[ids]
        weight = self._match_weights(scores)
        if len(ids):
            self._recent = [*self._recent[len(self._recent) + 1 - cfg.rival_window :], (m_xy, weight)]
        hit, miss = self._hit_ratios(m_xy, m_yaw, weight)

        reset_share = 0.0
        fresh = not self._started
        if fresh:
            if len(ids) == 0:
                self._last_odom = odom
                return self._empty_estimate()
            self._draw_around_matches(np.arange(cfg.particles), m_xy, m_yaw, weight)
            self._w[:] = 1.0 / cfg.particles
            self._started, self._unsupported = True, 0
            self._support_fast = self._support_slow = math.nan
            reset_share = 1.0
        else:
            self._move(odom, dt)
        self._last_odom = odom

        prior_w = self._w.copy()
        log_l = np.zeros(cfg.particles)
        if len(ids):
            h = self._hits(self._xy, self._yaw, m_xy, m_yaw, weight)
            log_l = cfg.evidence_weight * np.log(miss + (hit - miss) * h)
            support = float(self._w @ h)  # in [0, 1]: how well the belief explains the frame
            if math.isnan(self._support_slow):
                self._support_fast = self._support_slow = support
            self._support_fast += _RESET_AVERAGE * (support - self._support_fast)
            self._support_slow += _SLOW_AVERAGE * (support - self._support_slow)
            w = self._w * np.exp(log_l - log_l.max())
            self._w = w / w.sum()
            if not fresh:
                decline = max(0.0, 1.0 - self._support_fast / max(self._support_slow, 1e-12))
                reset_share = cfg.reset_min + (cfg.reset_max - cfg.reset_min) * decline
                if self._unsupported >= cfg.max_frames_unsupported:
                    reset_share = cfg.reset_max

        estimate = self._estimate(m_xy, ids, prior_w, log_l, fresh)
        if 1.0 / float(self._w @ self._w) < 0.5 * cfg.particles:
            self._resample()
        # sensor resetting after the estimate: the new particles are judged by the next frames
        count = 0 if fresh else round(reset_share * cfg.particles)
        if count:
            chosen = self._rng.choice(cfg.particles, size=count, replace=False)
            self._draw_around_matches(chosen, m_xy, m_yaw, weight)
            self._w[chosen] = 1.0 / cfg.particles
            self._w /= self._w.sum()
        return estimate

    # ------------------------------------------------------------------ measurement
    def _match_weights(self, scores: np.ndarray) -> np.ndarray:
        """``(K,)`` in (0, 1]: each match's weight from its score standardised by the frame's own
        retrieved scores (local contrast normalisation), ``exp(score_contrast * (z_j - z_max))``."""
        if len(scores) == 0:
            return np.zeros(0)
        centred = scores - scores.mean()
        spread = max(math.sqrt(float(centred @ centred) / len(scores)), _MIN_SCORE_SPREAD)
        return np.exp(self.config.score_contrast * (scores - scores.max()) / spread)

    def _hits(
        self, xy: np.ndarray, yaw: np.ndarray, m_xy: np.ndarray, m_yaw: np.ndarray, weight: np.ndarray
    ) -> np.ndarray:
        """``(P,)`` in [0, 1]: how much a retrieved match lands at each pose, ``max_j weight_j k_j``.

        ``log(weight_j k_j) = a |p - m_j|^2 + b (cos(yaw - yaw_j) - 1) + log weight_j`` expands into
        one ``(P, 4) @ (4, K)`` product plus per-pose and per-match terms (positions taken relative
        to the first match, so that the expansion loses no precision on large maps)."""
        cfg = self.config
        a = -0.5 / cfg.kernel_m**2
        b = 1.0 / math.radians(cfg.kernel_yaw_deg) ** 2
        origin = m_xy[0]
        p = xy - origin
        m = m_xy - origin
        left = np.empty((len(p), 4))
        left[:, :2] = p
        np.cos(yaw, out=left[:, 2])
        np.sin(yaw, out=left[:, 3])
        right = np.empty((4, len(m)))
        right[:2] = (-2.0 * a) * m.T
        right[2] = b * np.cos(m_yaw)
        right[3] = b * np.sin(m_yaw)
        per_match = a * (m * m).sum(axis=1) - b + np.log(weight)
        best = (left @ right + per_match).max(axis=1)
        # max_j weight_j k_j = exp(max_j (log weight_j + log k_j)): one exponential per pose
        return np.exp(np.minimum(best + a * (p * p).sum(axis=1), 0.0))

    def _hit_ratios(self, m_xy: np.ndarray, m_yaw: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
        """The likelihood ratios ``(hit, miss)`` of a pose whose hit is 1 and 0, right vs random place.

        A random place of the map is hit (on average) by ``chance`` = the mean hit over the map's
        keyframes (only those near a match can be hit): this frame's own chance level. The right
        place is hit with probability ``hit_rate``. A pose with hit ``h`` has the ratio
        ``miss + (hit - miss) h``, whose mean over the map's keyframes is 1."""
        if len(m_xy) == 0:
            return 1.0, 1.0
        # a dense map: the mean hit over an even subsample of the keyframes near the matches (bounded cost)
        near, count = self._grid.near(m_xy, _CHANCE_SAMPLE)
        hits = self._hits(self.positions[near, :2], self.yaws[near], m_xy, m_yaw, weight)
        total = float(hits.mean()) * count if count else 0.0
        chance = min(max(total / len(self.positions), _MIN_CHANCE), 1.0)
        p = self.config.hit_rate
        if chance >= p:  # the matches cover the map: no evidence
            return 1.0, 1.0
        return p / chance, (1.0 - p) / (1.0 - chance)

    # ------------------------------------------------------------------ motion
    def _move(self, odom: np.ndarray | None, dt: float) -> None:
        cfg, rng, n = self.config, self._rng, self.config.particles
        if odom is not None and self._last_odom is not None:
            prev = self._last_odom
            c, s = math.cos(prev[2]), math.sin(prev[2])
            dx, dy = odom[0] - prev[0], odom[1] - prev[1]
            forward, left = c * dx + s * dy, -s * dx + c * dy
            turn = float(_wrap(odom[2] - prev[2]))
            dist = math.hypot(forward, left)
            self._moved_m = dist
            sd = cfg.odometry_noise * dist + _MIN_NOISE_M
            f = forward + rng.normal(0.0, sd, n)
            lft = left + rng.normal(0.0, sd, n)
            sd_yaw = cfg.odometry_noise * abs(turn) + math.radians(cfg.heading_noise_deg_per_m) * dist
            cy, sy = np.cos(self._yaw), np.sin(self._yaw)
            self._xy[:, 0] += cy * f - sy * lft
            self._xy[:, 1] += sy * f + cy * lft
            self._yaw = _wrap(self._yaw + turn + rng.normal(0.0, sd_yaw + _MIN_NOISE_RAD, n))
        else:
            dt = max(dt, 0.0)
            self._moved_m = cfg.max_speed_mps * dt
            self._speed = np.clip(
                self._speed + rng.normal(0.0, _SPEED_NOISE_MPS2 * dt, n), 0, cfg.max_speed_mps
            )
            self._yaw = _wrap(self._yaw + rng.normal(0.0, _FREE_HEADING_NOISE_RAD, n))
            self._xy[:, 0] += self._speed * dt * np.cos(self._yaw)
            self._xy[:, 1] += self._speed * dt * np.sin(self._yaw)

    def _draw_around_matches(
        self, which: np.ndarray, m_xy: np.ndarray, m_yaw: np.ndarray, weight: np.ndarray
    ) -> None:
        cfg, rng = self.config, self._rng
        cumulative = np.cumsum(weight)
        j = np.minimum(np.searchsorted(cumulative, rng.random(len(which)) * cumulative[-1]), len(weight) - 1)
        self._xy[which] = m_xy[j] + rng.normal(0.0, cfg.kernel_m, (len(which), 2))
        self._yaw[which] = _wrap(m_yaw[j] + rng.normal(0.0, math.radians(cfg.kernel_yaw_deg), len(which)))
        self._speed[which] = rng.uniform(0.0, cfg.max_speed_mps, len(which))

    def _resample(self) -> None:
        n = self.config.particles
        positions = (self._rng.random() + np.arange(n)) / n
        idx = np.minimum(np.searchsorted(np.cumsum(self._w), positions), n - 1)
        self._xy, self._yaw, self._speed = (
            self._xy[idx].copy(),
            self._yaw[idx].copy(),
            self._speed[idx].copy(),
        )
        self._w = np.full(n, 1.0 / n)

    # ------------------------------------------------------------------ output
    def _estimate(
        self,
        m_xy: np.ndarray,
        ids: np.ndarray,
        prior_w: np.ndarray,
        log_l: np.ndarray,
        fresh: bool,
    ) -> FilterEstimate:
        cfg = self.config
        xy, w, r2 = self._xy, self._w, cfg.radius_m**2
        x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])

        def squared_distances(cx: np.ndarray | float, cy: np.ndarray | float) -> np.ndarray:
            dx, dy = np.subtract(cx, x), np.subtract(cy, y)  # in place below: fewer temporaries
            dx *= dx
            dy *= dy
            dx += dy
            return dx

        def within(c: np.ndarray) -> np.ndarray:
            return np.flatnonzero(squared_distances(c[0], c[1]) <= r2)

        # the densest place: among the heaviest particles, the one with most weight within the radius
        top = np.argpartition(w, len(w) - _MODE_CANDIDATES)[-_MODE_CANDIDATES:]
        near = squared_distances(x[top, None], y[top, None]) <= r2
        centre = xy[top[int(np.argmax(near @ w))]]
        for _ in range(2):
            inside = within(centre)
            w_in = w[inside]
            centre = (w_in @ xy[inside]) / w_in.sum()
        inside = within(centre)
        w_in = w[inside]
        mass = float(w_in.sum())
        wi = w_in / w_in.sum()
        dx, dy = x[inside] - centre[0], y[inside] - centre[1]
        wdx = wi * dx
        cxy = float(wdx @ dy)
        spread_cov = np.array([[float(wdx @ dx), cxy], [cxy, float((wi * dy) @ dy)]])
        scale = cfg.covariance_scale if self._last_odom is not None else cfg.covariance_scale_no_odometry
        cov = scale**2 * spread_cov + np.eye(2) * self.config.covariance_floor_m**2
        yaw_in = self._yaw[inside]
        c_mean, s_mean = float(wi @ np.cos(yaw_in)), float(wi @ np.sin(yaw_in))
        yaw = math.atan2(s_mean, c_mean)
        yaw_var = -2.0 * math.log(min(1.0, max(math.hypot(c_mean, s_mean), 1e-12)))
        mean_x, mean_y = float(w @ x), float(w @ y)
        # RMS distance to the mean, about the first particle (no precision lost far from the origin)
        ox, oy = x - x[0], y - y[0]
        spread_sq = float(w @ (ox * ox + oy * oy)) - (mean_x - x[0]) ** 2 - (mean_y - y[0]) ** 2
        spread = math.sqrt(max(spread_sq, 0.0))

        best_kf = -1
        if len(ids):
            d = np.linalg.norm(m_xy - centre, axis=1)
            nearest = int(np.argmin(d))
            if d[nearest] <= cfg.radius_m:
                best_kf = int(ids[nearest])
                self._z = float(self.positions[best_kf, 2])
        # this frame's log likelihood ratio of "the robot is within radius_m of the estimate" against
        # "it is at a random place of the map": the predicted belief there, weighed by the frame
        prior_inside = prior_w[inside]
        if fresh or prior_inside.sum() <= 0:
            ratio = 0.0
        else:
            top_l = float(log_l[inside].max())
            ratio = top_l + math.log(float(prior_inside @ np.exp(log_l[inside] - top_l)) / prior_inside.sum())
        supported = ratio > 0
        # a belief that moved to another place than the motion allows is a new hypothesis: its
        # evidence starts from zero
        if (
            self._last_centre is not None
            and np.hypot(*(centre - self._last_centre)) > cfg.radius_m + self._moved_m
        ):
            self._tracking, self._evidence, self._hypothesis_frames = False, 0.0, 0
            self._rival_frames = 0
        self._last_centre = centre.copy()
        self._hypothesis_frames += 1
        # without odometry: the estimate must beat its best rival place, confirm_frames in a row
        # (it gates confirmation only: not computed while tracking, counted anew after a loss)
        if self._tracking:
            self._rival_frames = 0
        elif self._last_odom is None and len(ids):
            beats = self._rival_margin(centre, m_xy) >= cfg.rival_margin
            self._rival_frames = self._rival_frames + 1 if beats else 0
        rival_ok = self._last_odom is not None or self._rival_frames >= cfg.confirm_frames
        # Page's CUSUM of the hypothesis's log likelihood ratios, capped so that a loss shows in time
        threshold = self.threshold * (1 if self._last_odom is not None else _NO_ODOMETRY_THRESHOLD)
        self._evidence = min(max(0.0, self._evidence + ratio), _EVIDENCE_CAP * threshold)
        self._unsupported = 0 if supported else self._unsupported + 1
        if self._tracking:
            self._tracking = (
                mass >= cfg.keep_mass
                and self._evidence > 0
                and self._unsupported <= cfg.max_frames_unsupported
            )
        else:
            self._tracking = (
                mass >= cfg.min_mass
                and self._evidence >= threshold
                and supported
                and self._hypothesis_frames >= cfg.confirm_frames
                and rival_ok
            )
        if self._tracking:
            self._ever_tracked = True
        state = "tracking" if self._tracking else "lost" if self._ever_tracked else "initializing"
        return FilterEstimate(
            state=state,
            position=(float(centre[0]), float(centre[1]), self._z),
            yaw_rad=yaw,
            covariance_xy=tuple(float(v) for v in cov.reshape(-1)),  # type: ignore[arg-type]
            yaw_variance=yaw_var,
            mass=mass,
            spread_m=spread,
            unsupported_frames=self._unsupported,
            best_keyframe=best_kf,
            evidence=self._evidence,
        )

    def _rival_margin(self, centre: np.ndarray, m_xy: np.ndarray) -> float:
        """How much more the last ``rival_window`` frames' matches support the estimate than its best
        rival: ``support(centre) / max support(rival)``, over the rivals = this frame's matches farther
        than ``radius_m + 2 kernel_m`` from the estimate (``inf`` when there is none). A place's
        support is the sum over those frames of the frame's best ``weight_j exp(-d_j^2 / 2 radius_m^2)``."""
        cfg = self.config
        gap = cfg.radius_m + _RIVAL_GAP_KERNELS * cfg.kernel_m
        far = ((m_xy - centre) ** 2).sum(axis=1) > gap**2
        if not far.any():
            return math.inf
        places = np.vstack([centre[None], m_xy[far]])
        xy = np.concatenate([frame_xy for frame_xy, _ in self._recent])
        weight = np.concatenate([frame_w for _, frame_w in self._recent])
        starts = np.cumsum([0] + [len(frame_w) for _, frame_w in self._recent[:-1]])
        d2 = (places[:, None, 0] - xy[None, :, 0]) ** 2 + (places[:, None, 1] - xy[None, :, 1]) ** 2
        kernel = np.exp(d2 * (-0.5 / cfg.radius_m**2)) * weight
        support = np.maximum.reduceat(kernel, starts, axis=1).sum(axis=1)  # best per frame, summed
        return float(support[0] / max(float(support[1:].max()), 1e-300))

    def _empty_estimate(self) -> FilterEstimate:
        nan = math.nan
        return FilterEstimate("initializing", None, nan, (nan,) * 4, nan, 0.0, nan, 0, -1, 0.0)
