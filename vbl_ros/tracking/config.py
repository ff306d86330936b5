"""Settings of the temporal pose filter (:class:`~vbl_ros.tracking.filter.PlaceFilter`), validated once."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vbl_ros.errors import ConfigError

__all__ = ["FilterConfig"]


@dataclass(frozen=True)
class FilterConfig:
    """How the particle filter over map places moves, weighs, re-seeds and reports its belief.

    Attributes:
        particles: particle count (fixed: the cost per frame does not depend on the map's size).
        radius_m: a prior is published when at least ``min_mass`` of the belief lies within this
            many metres of the estimate.
        min_mass: the belief's share within ``radius_m`` needed to start publishing priors (0.5 to 1).
        keep_mass: the share needed to keep publishing once tracking (<= ``min_mass``: hysteresis).
        confirm_frames: the fewest frames a hypothesis (an estimate that has not jumped) must have
            been followed before the filter may start tracking it, i.e. publishing priors.
        confirm_error: the error rate the confirmation accepts: a hypothesis is confirmed when its
            accumulated log likelihood ratio against a random place of the map reaches
            ``log((1 - confirm_error) / confirm_error)`` (Wald; three times that without odometry,
            where the estimate must also beat its best rival place by ``rival_margin``).
        hit_rate: the share of frames whose retrieved matches are assumed to hit the right place
            (a night-like, pessimistic value: each hit then counts less, each miss less too).
        score_contrast: weight of a match's score, standardised by its frame's retrieved scores,
            in its hit: ``exp(score_contrast * (z_j - z_max))`` (0 = every retrieved match alike).
        max_frames_unsupported: frames the filter may run on motion alone (its estimate not favoured
            by the frame's matches) before it calls itself lost and stops publishing.
        max_speed_mps: without odometry, the largest speed the motion prior allows.
        odometry_noise: with odometry, the standard deviation of each particle's motion as a share
            of the distance travelled (and of the heading change).
        heading_noise_deg_per_m: with odometry, heading noise per metre travelled (drift).
        kernel_m: standard deviation of a retrieved match's position kernel.
        kernel_yaw_deg: standard deviation of a match's heading kernel (a street driven the other
            way is another place).
        evidence_weight: tempering of each frame's calibrated log likelihood ratio (1 = trust it
            fully; below 1 because consecutive frames' retrieval errors are correlated).
        reset_min, reset_max: share of particles re-drawn around the current matches each frame;
            ``reset_min`` while the belief explains the matches, up to ``reset_max`` when it does
            not (augmented Monte Carlo localization: short- vs long-term average likelihood).
        covariance_scale: with odometry, the prior's position standard deviation is this many times
            the spread of the belief's particles near the estimate (calibrated on the tuning town's
            drives with a drifting odometry, 3 % scale error and 0.5 deg/m, so that 95 % ellipses hold
            about 95 % of the errors; with an exact odometry the errors are smaller and the ellipse loose).
        covariance_scale_no_odometry: the same without odometry.
        covariance_floor_m: floor (standard deviation, metres) of the prior's horizontal position
            covariance.
        max_gap_s: a gap between frames longer than this (or time going back) restarts the filter.
        seed: random seed (the same inputs and seed give the same outputs).
        rival_margin: without odometry, a hypothesis is confirmed only once it has beaten its best
            rival place by this factor in ``confirm_frames`` frames in a row: its support by the last
            ``rival_window`` frames' matches against that of the strongest match farther than
            ``radius_m + 2 kernel_m`` from it (>= 1; 1 = only "no rival does better").
        rival_window: frames of matches that make a place's support in that comparison.
    """

    particles: int = 500
    radius_m: float = 15.0
    min_mass: float = 0.8
    keep_mass: float = 0.6
    confirm_frames: int = 3
    confirm_error: float = 0.001
    hit_rate: float = 0.3
    score_contrast: float = 0.5
    max_frames_unsupported: int = 3
    max_speed_mps: float = 20.0
    odometry_noise: float = 0.05
    heading_noise_deg_per_m: float = 0.2
    kernel_m: float = 3.0
    kernel_yaw_deg: float = 30.0
    evidence_weight: float = 0.5
    reset_min: float = 0.01
    reset_max: float = 0.1
    covariance_scale: float = 0.85
    covariance_scale_no_odometry: float = 0.5
    covariance_floor_m: float = 0.1
    max_gap_s: float = 5.0
    seed: int = 0
    rival_margin: float = 2.0
    rival_window: int = 5

    def __post_init__(self) -> None:
        if not 10 <= self.particles <= 100_000:
            raise ConfigError(f"particles must be in [10, 100000], got {self.particles}; 500 is a good start")
        if not 0.5 <= self.min_mass <= 1.0:
            raise ConfigError(f"min_mass must be in [0.5, 1], got {self.min_mass}")
        if not 0.5 <= self.keep_mass <= self.min_mass:
            raise ConfigError(f"keep_mass must be in [0.5, min_mass={self.min_mass}], got {self.keep_mass}")
        if self.confirm_frames < 1 or self.max_frames_unsupported < 0:
            raise ConfigError(
                f"confirm_frames must be >= 1 and max_frames_unsupported >= 0, got {self.confirm_frames} "
                f"and {self.max_frames_unsupported}"
            )
        for name in (
            "radius_m",
            "max_speed_mps",
            "kernel_m",
            "kernel_yaw_deg",
            "max_gap_s",
            "covariance_scale",
            "covariance_scale_no_odometry",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        for name in ("confirm_error", "hit_rate"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ConfigError(f"{name} must be in (0, 1), got {value}")
        if not self.confirm_error < 0.5:
            raise ConfigError(
                f"confirm_error must be below 0.5, got {self.confirm_error}; 0.01 is a good start"
            )
        for name in ("odometry_noise", "heading_noise_deg_per_m", "covariance_floor_m", "score_contrast"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if not (math.isfinite(self.rival_margin) and self.rival_margin >= 1):
            raise ConfigError(f"rival_margin must be >= 1, got {self.rival_margin}; 2 is the tuned value")
        if not 1 <= self.rival_window <= 50:
            raise ConfigError(f"rival_window must be in [1, 50] frames, got {self.rival_window}")
        if not 0 < self.evidence_weight <= 1:
            raise ConfigError(f"evidence_weight must be in (0, 1], got {self.evidence_weight}")
        if not 0 <= self.reset_min <= self.reset_max <= 1:
            raise ConfigError(
                f"need 0 <= reset_min <= reset_max <= 1, got reset_min {self.reset_min}, reset_max {self.reset_max}"
            )
