"""Localizer on random unit-norm descriptors: priors when confident, nothing when ambiguous, loops."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

from vbl_ros.errors import ModelMismatchError
from vbl_ros.geometry.rotations import quaternion_to_euler
from vbl_ros.localizer import Localizer, LocalizerConfig
from vbl_ros.mapping import Keyframe, KeyframeMap

DIM = 64
S = 1_000_000_000


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def make_map(descriptors: np.ndarray, positions: np.ndarray, yaws: np.ndarray | None = None) -> KeyframeMap:
    kmap = KeyframeMap.create(DIM, "fp-test", None, "flat")
    yaws = np.zeros(len(positions)) if yaws is None else yaws
    kfs = [
        Keyframe(stamp_ns=i * S, position=tuple(map(float, p)), orientation=yaw_quat(float(y)))
        for i, (p, y) in enumerate(zip(positions, yaws, strict=True))
    ]
    kmap.add(unit(descriptors), kfs)
    return kmap


def fake_extractor(dim: int = DIM, fingerprint: str = "fp-test"):
    return SimpleNamespace(dim=dim, fingerprint=fingerprint, __call__=None)


def line_map(n: int = 200, spacing: float = 5.0, seed: int = 0) -> tuple[KeyframeMap, np.ndarray]:
    rng = np.random.default_rng(seed)
    desc = unit(rng.normal(size=(n, DIM)))
    pos = np.stack([np.arange(n) * spacing, np.zeros(n), np.zeros(n)], axis=1)
    return make_map(desc, pos), desc


def test_confident_match_publishes_a_prior_near_the_keyframe() -> None:
    kmap, desc = line_map()
    loc = Localizer(fake_extractor(), kmap, LocalizerConfig(min_score=0.6, min_distinctiveness=0.05))
    rng = np.random.default_rng(1)
    query = unit(desc[50] + 0.02 * rng.normal(size=DIM))
    result = loc.localize_descriptor(query, 7 * S)
    assert result.rejected_reason is None
    prior = result.pose_prior
    assert prior is not None
    assert np.linalg.norm(np.array(prior.position) - [250.0, 0, 0]) < 1.0
    assert prior.score > 0.95 and result.matches[0].keyframe.stamp_ns == 50 * S
    assert len(result.matches) == 5 and [m.rank for m in result.matches] == [1, 2, 3, 4, 5]
    cov = np.array(prior.covariance).reshape(6, 6)
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    # floor from the 5 m spacing: sigma >= 2.5 m
    assert cov[0, 0] >= 2.5**2 and cov[5, 5] >= math.radians(10) ** 2
    assert prior.stamp_ns == 7 * S and 50 * S in prior.keyframe_stamps_ns


def test_low_score_publishes_nothing() -> None:
    kmap, _ = line_map()
    loc = Localizer(fake_extractor(), kmap, LocalizerConfig(min_score=0.6))
    query = unit(np.random.default_rng(5).normal(size=DIM))  # unrelated: cosine ~ 0.1-0.4
    result = loc.localize_descriptor(query, 0)
    assert result.pose_prior is None and "min_score" in (result.rejected_reason or "")
    assert len(result.matches) == 5  # matches are still reported


def test_ambiguous_places_publish_nothing() -> None:
    kmap_desc = unit(np.random.default_rng(2).normal(size=(100, DIM)))
    kmap_desc[80] = kmap_desc[10]  # the same appearance 350 m away
    pos = np.stack([np.arange(100) * 5.0, np.zeros(100), np.zeros(100)], axis=1)
    loc = Localizer(fake_extractor(), make_map(kmap_desc, pos), LocalizerConfig(min_distinctiveness=0.02))
    result = loc.localize_descriptor(kmap_desc[10], 0)
    assert result.pose_prior is None
    assert "ambiguous" in (result.rejected_reason or "")
    assert result.distinctiveness < 0.02


def _cluster_map(offset_m: float, neighbour_score: float) -> tuple[KeyframeMap, np.ndarray]:
    """A best keyframe at x=500 with two look-alikes at +-offset_m and unrelated keyframes elsewhere."""
    rng = np.random.default_rng(3)
    base = unit(rng.normal(size=DIM))
    other = unit(rng.normal(size=DIM) - (rng.normal(size=DIM) @ base) * base)
    look_alike = unit(neighbour_score * base + math.sqrt(1 - neighbour_score**2) * other)
    far = unit(rng.normal(size=(50, DIM)))
    desc = np.vstack([base, look_alike, look_alike, far])
    pos = np.array([[500.0, 0, 0], [500 + offset_m, 0, 0], [500 - offset_m, 0, 0]])
    pos = np.vstack([pos, np.stack([np.arange(50) * 5.0, np.full(50, 100.0), np.zeros(50)], axis=1)])
    yaws = np.concatenate([[0.0, 0.3, -0.3], np.zeros(50)])
    return make_map(desc, pos, yaws), base


def test_covariance_grows_with_the_spread_of_the_cluster() -> None:
    config = LocalizerConfig(cluster_radius_m=15.0)
    covs = []
    for offset in (1.0, 12.0):
        kmap, query = _cluster_map(offset, 0.99)
        loc = Localizer(fake_extractor(), kmap, config)
        prior = loc.localize_descriptor(query, 0).pose_prior
        assert prior is not None
        assert len(prior.keyframe_stamps_ns) == 3
        covs.append(np.array(prior.covariance).reshape(6, 6))
    assert covs[1][0, 0] > 2 * covs[0][0, 0]
    assert covs[0][1, 1] == pytest.approx(covs[1][1, 1])  # no spread across the line
    assert covs[0][5, 5] > math.radians(10) ** 2  # heading spread of the matches (+-0.3 rad)


def test_covariance_grows_as_the_score_falls() -> None:
    kmap, desc = line_map()
    loc = Localizer(fake_extractor(), kmap, LocalizerConfig(min_score=0.5, min_distinctiveness=0.05))
    rng = np.random.default_rng(4)
    noise = unit(rng.normal(size=DIM))
    variances = []
    for score in (0.99, 0.8):
        query = unit(score * desc[100] + math.sqrt(1 - score**2) * noise)
        prior = loc.localize_descriptor(query, 0).pose_prior
        assert prior is not None
        variances.append(prior.covariance[0])
    assert variances[1] > 1.3 * variances[0]


def test_loop_candidates_exclude_the_recent_window_and_rank_by_score() -> None:
    rng = np.random.default_rng(6)
    desc = unit(rng.normal(size=(120, DIM)))
    loc = Localizer(
        fake_extractor(),
        None,
        LocalizerConfig(loop_exclude_recent_s=30.0, loop_min_score=0.8, loop_confirm_frames=1),
    )
    for t in range(100):  # one frame a second: every frame becomes a session keyframe
        result = loc.localize_descriptor(desc[t], t * S)
        assert result.pose_prior is None and "no map" in (result.rejected_reason or "")
    # The robot sees place 10 again at t=100 s, and also looks like place 90 (10 s ago: excluded).
    query = unit(desc[10] + desc[90] * 0.99)
    result = loc.localize_descriptor(query, 100 * S)
    stamps = [c.keyframe_stamp_ns for c in result.loop_candidates]
    assert stamps == [10 * S]
    assert result.loop_candidates[0].rank == 1 and result.loop_candidates[0].position is None
    # An exact revisit of 5 s-old frame gives nothing; of a 60 s-old frame, a candidate with score 1.
    assert loc.localize_descriptor(desc[96], 101 * S).loop_candidates == ()
    best = loc.localize_descriptor(desc[41], 102 * S).loop_candidates
    assert best[0].keyframe_stamp_ns == 41 * S and best[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(a.score >= b.score for a, b in itertools.pairwise(best))


def test_session_keyframes_by_distance_carry_odometry_poses() -> None:
    rng = np.random.default_rng(7)
    desc = unit(rng.normal(size=(200, DIM)))
    loc = Localizer(
        fake_extractor(),
        None,
        LocalizerConfig(keyframe_distance_m=5.0, loop_min_score=0.9, loop_confirm_frames=1),
    )
    # 10 frames/s at 1 m/s: one keyframe every 5 m = every 50 frames
    for i in range(200):
        loc.localize_descriptor(
            desc[i],
            i * S // 10,
            odom_position=np.array([i * 0.1, 0, 0]),
            odom_orientation=np.array(yaw_quat(0.1)),
        )
    assert len(loc.session) == 4  # at 0, 5, 10, 15 m
    result = loc.localize_descriptor(desc[50], 200 * S)
    (cand,) = result.loop_candidates
    assert cand.keyframe_stamp_ns == 5 * S and cand.position == pytest.approx((5.0, 0.0, 0.0))
    assert cand.orientation == pytest.approx(yaw_quat(0.1))


def test_time_going_back_starts_a_new_session() -> None:
    loc = Localizer(fake_extractor(), None, LocalizerConfig())
    d = unit(np.ones(DIM))
    loc.localize_descriptor(d, 100 * S)
    loc.localize_descriptor(d, 200 * S)
    loc.localize_descriptor(d, 5 * S)
    assert len(loc.session) == 1


def test_a_map_of_another_model_is_refused() -> None:
    kmap, _ = line_map(10)
    with pytest.raises(ModelMismatchError, match="rebuild"):
        Localizer(fake_extractor(fingerprint="other"), kmap, LocalizerConfig())
    with pytest.raises(ModelMismatchError):
        Localizer(fake_extractor(dim=32, fingerprint="fp-test"), kmap, LocalizerConfig())


def test_process_extracts_then_localizes() -> None:
    kmap, desc = line_map()

    class Extractor:
        dim = DIM
        fingerprint = "fp-test"

        def __call__(self, images):
            assert images[0].shape == (8, 8, 3)
            return desc[[20]]

    loc = Localizer(Extractor(), kmap, LocalizerConfig())
    result = loc.process(np.zeros((8, 8, 3), np.uint8), 3 * S)
    assert result.pose_prior is not None and result.pose_prior.position[0] == pytest.approx(100.0, abs=0.5)
    assert result.descriptor_ms >= 0 and result.search_ms >= 0


def test_quaternion_to_euler() -> None:
    assert quaternion_to_euler(np.array(yaw_quat(0.5)))[2] == pytest.approx(0.5)
    assert np.allclose(quaternion_to_euler(np.array([0, 0, 0, 1.0])), 0)
