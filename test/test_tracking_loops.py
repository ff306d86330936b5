"""Loop candidates confirmed through time, on synthetic drives with known answers (no images).

The drives run around a 400 m x 400 m square (1600 m) at 8 m/s with 4 frames/s. A frame's
descriptor is a shared "street look" (every place scores ~0.8 against every other), the place's own
component (smooth along the drive) and per-frame noise. The north side's places each look like a
random place of the east side, in no order (place components correlated 0.6; a true revisit seen under another
light keeps 0.8): single-frame scores ~0.9 for both: single-frame loop candidates fire there, a sequence never forms.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vbl_ros.errors import ConfigError, OutputExistsError
from vbl_ros.localizer import LocalizationResult, Localizer, LocalizerConfig
from vbl_ros.tracking import LoopConfig, LoopDetector
from vbl_ros.tracking.loops import COLLECTING, LOCKED, SEARCHING

DIM = 64
S = 1_000_000_000
SIDE_M = 400.0
LAP_M = 4 * SIDE_M
SPEED = 8.0
RATE_HZ = 4.0
ANCHOR_M = 6.0  # place components vary over this distance


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def square_xy(s: np.ndarray) -> np.ndarray:
    """Position after ``s`` metres around the square (east, north, west, south sides)."""
    s = np.mod(s, LAP_M)
    side, along = np.floor_divide(s, SIDE_M), np.mod(s, SIDE_M)
    x = np.select([side == 0, side == 1, side == 2], [along, SIDE_M, SIDE_M - along], 0.0)
    y = np.select([side == 0, side == 1, side == 2], [0.0, along, SIDE_M], SIDE_M - along)
    return np.stack([x, y, np.zeros_like(x)], axis=1)


class Town:
    """Place descriptors along the square, with look-alike places on the north side."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.common = unit(rng.normal(size=DIM))
        n = int(LAP_M / ANCHOR_M) + 1
        anchors = unit(rng.normal(size=(n, DIM)))
        # north side (400-800 m): each anchor looks like a random east-side anchor (0-400 m), never
        # the neighbour of the previous one's look-alike (so that no look-alike *sequence* forms)
        east = int(SIDE_M / ANCHOR_M)
        previous = -10
        for k in range(east, 2 * east):
            target = previous
            while abs(target - previous) <= 3:
                target = int(rng.integers(0, east))
            anchors[k] = unit(0.6 * anchors[target] + 0.8 * anchors[k])
            previous = target
        anchors[-1] = anchors[0]  # the square closes
        self.anchors = anchors

    def place(self, s: np.ndarray) -> np.ndarray:
        u = np.mod(s, LAP_M) / ANCHOR_M
        k = np.minimum(np.floor(u).astype(int), len(self.anchors) - 2)
        w = (u - k)[:, None]
        return unit((1 - w) * self.anchors[k] + w * self.anchors[k + 1])

    def frames(self, s: np.ndarray, rng: np.random.Generator, *, condition: float = 0.0) -> np.ndarray:
        """Descriptors at arc lengths ``s``; ``condition`` > 0 changes every place's look (another
        light): the same place then scores like a look-alike in a single frame."""
        own = self.place(s)
        if condition:
            own = unit(math.sqrt(1 - condition**2) * own + condition * unit(rng.normal(size=own.shape)))
        noise = unit(rng.normal(size=(len(s), DIM)))
        return unit(0.9 * self.common + 0.45 * own + 0.15 * noise)


def drive(
    town: Town, length_m: float, seed: int, *, condition_after_m: float = math.inf
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stamps, arc lengths and descriptors of a drive of ``length_m`` around the square; frames past
    ``condition_after_m`` are seen in another condition."""
    rng = np.random.default_rng(seed)
    s = np.arange(0.0, length_m, SPEED / RATE_HZ)
    stamps = (np.arange(len(s)) * S / RATE_HZ).astype(np.int64)
    desc = town.frames(s, rng)
    later = s >= condition_after_m
    desc[later] = town.frames(s[later], rng, condition=0.6)
    return stamps, s, desc


def fake_extractor() -> SimpleNamespace:
    return SimpleNamespace(dim=DIM, fingerprint="fp-test")


def replay(
    config: LocalizerConfig,
    stamps: np.ndarray,
    desc: np.ndarray,
    odometry: np.ndarray | None = None,
) -> list[LocalizationResult]:
    loc = Localizer(fake_extractor(), None, config)
    return [
        loc.localize_descriptor(
            desc[i], int(stamps[i]), odom_position=None if odometry is None else odometry[i]
        )
        for i in range(len(stamps))
    ]


def candidate_errors(results: list[LocalizationResult], stamps: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``(C, 2)`` frame index and distance (m) between the frame and each candidate's keyframe."""
    rows = []
    xy = square_xy(s)
    for i, r in enumerate(results):
        for c in r.loop_candidates:
            k = int(np.searchsorted(stamps, c.keyframe_stamp_ns))
            assert stamps[k] == c.keyframe_stamp_ns
            rows.append((i, float(np.linalg.norm(xy[k] - xy[i]))))
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


CONFIRMED = LocalizerConfig()  # the defaults: confirmed through time
SINGLE = replace(CONFIRMED, loop_confirm_frames=1)


def test_defaults_confirm_loops_through_time() -> None:
    assert CONFIRMED.loop_confirm_frames >= 2
    assert CONFIRMED.loop_config().confirm_frames == CONFIRMED.loop_confirm_frames


@pytest.mark.parametrize("with_odometry", [False, True])
def test_a_drive_without_revisits_gets_no_candidates_despite_look_alikes(with_odometry: bool) -> None:
    town = Town(seed=1)
    stamps, s, desc = drive(town, LAP_M - 100.0, seed=2)  # ends 100 m before its start
    odometry = square_xy(s) if with_odometry else None
    single = candidate_errors(replay(SINGLE, stamps, desc, odometry), stamps, s)
    north = (s[single[:, 0].astype(int)] >= SIDE_M) & (s[single[:, 0].astype(int)] < 2 * SIDE_M)
    assert len(single) and (single[:, 1] > 25.0).all()  # the look-alikes fool single frames ...
    assert north.sum() >= 50
    confirmed = candidate_errors(replay(CONFIRMED, stamps, desc, odometry), stamps, s)
    assert len(confirmed) == 0  # ... not sequences


@pytest.mark.parametrize("with_odometry", [False, True])
def test_a_revisit_is_confirmed_after_confirm_frames_and_points_at_the_first_visit(
    with_odometry: bool,
) -> None:
    town = Town(seed=3)
    # one lap, then the east side again in another condition (single-frame scores as low as the
    # look-alikes')
    stamps, s, desc = drive(town, LAP_M + SIDE_M, seed=4, condition_after_m=LAP_M)
    odometry = square_xy(s) if with_odometry else None
    results = replay(CONFIRMED, stamps, desc, odometry)
    errors = candidate_errors(results, stamps, s)
    assert len(errors) and (errors[:, 1] <= 25.0).all()  # every candidate at the right place
    # the first candidate comes as the drive closes the square (within 25 m of its start), once
    # the sequence spans enough frames
    first = next(i for i, r in enumerate(results) if r.loop_candidates)
    assert LAP_M - 25.0 <= s[first] <= LAP_M + 2 * CONFIRMED.loop_confirm_frames * SPEED / RATE_HZ
    second_lap = np.flatnonzero(s >= LAP_M)
    has = np.array([bool(results[i].loop_candidates) for i in second_lap])
    assert has.mean() >= 0.9
    (best,) = results[second_lap[-1]].loop_candidates
    assert best.rank == 1 and best.score >= CONFIRMED.loop_min_score
    assert (best.position is not None) == with_odometry


def test_a_single_look_alike_frame_is_rejected() -> None:
    town = Town(seed=5)
    stamps, _, desc = drive(town, LAP_M - 100.0, seed=6)
    target = 300  # a frame 75 s in the drive looks exactly like the keyframe of 30 s
    desc[target] = desc[int(np.searchsorted(stamps, 30 * S))]
    single = replay(SINGLE, stamps, desc)[target].loop_candidates
    assert single and single[0].keyframe_stamp_ns == 30 * S and single[0].score == pytest.approx(1.0)
    results = replay(CONFIRMED, stamps, desc)
    assert all(not r.loop_candidates for r in results)


def test_a_revisit_where_odometry_disagrees_is_rejected() -> None:
    town = Town(seed=3)
    stamps, s, desc = drive(town, LAP_M + SIDE_M, seed=4, condition_after_m=LAP_M)
    odometry = square_xy(s)
    # the odometry puts the second lap 400 m north of the first: farther than the allowance
    # (10 m + 10 % of the 1600 m driven since)
    odometry[s >= LAP_M, 1] += 400.0
    results = replay(CONFIRMED, stamps, desc, odometry)
    assert all(not r.loop_candidates for r in results)
    # within the allowance (60 m off after 1600 m), the revisit is confirmed
    odometry[s >= LAP_M, 1] -= 340.0
    results = replay(CONFIRMED, stamps, desc, odometry)
    assert np.mean([bool(r.loop_candidates) for r in results if r.stamp_ns >= stamps[s >= LAP_M][0]]) >= 0.9


def test_loop_config_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="confirm_frames"):
        LoopConfig(confirm_frames=1)
    with pytest.raises(ConfigError, match="keep_score"):
        LoopConfig(start_score=1.0, keep_score=2.0)
    with pytest.raises(ConfigError, match="max_speed_ratio"):
        LoopConfig(max_speed_ratio=0.5)
    with pytest.raises(ConfigError, match="loop_confirm_frames"):
        LocalizerConfig(loop_confirm_frames=0)
    with pytest.raises(ConfigError, match="odom_drift_m"):
        LocalizerConfig(loop_odom_drift_m=-1.0)
    with pytest.raises(ConfigError, match="start_contrast"):
        LocalizerConfig(loop_start_contrast=math.nan)
    with pytest.raises(ConfigError, match="contrast_min_s"):
        LoopConfig(contrast_min_s=30.0, contrast_max_s=20.0)
    ratios = LoopConfig(max_speed_ratio=2.0, num_speed_ratios=5).speed_ratios()
    assert (
        ratios[0] == pytest.approx(0.5)
        and ratios[2] == pytest.approx(1.0)
        and ratios[-1] == pytest.approx(2.0)
    )


def test_a_gap_in_the_frames_restarts_the_sequence() -> None:
    town = Town(seed=3)
    stamps, s, desc = drive(town, LAP_M + SIDE_M, seed=4, condition_after_m=LAP_M)
    detector = LoopDetector(LoopConfig())
    kf = np.arange(0, len(stamps), int(RATE_HZ))  # one keyframe a second
    revisit = np.flatnonzero(s >= LAP_M)
    eligible = kf[stamps[kf] <= stamps[revisit[0]] - 30 * S]

    def feed(i: int):
        return detector.update(desc[i], int(stamps[i]), desc[eligible], stamps[eligible])

    assert detector.state == COLLECTING
    matches = [feed(i) for i in revisit[:40]]
    assert matches[-1] is not None and matches[-1].locked and detector.state == LOCKED
    assert feed(revisit[40] + 20) is None  # 5 s later: the window starts again
    assert detector.state == COLLECTING


def test_the_detector_says_whether_it_collects_searches_or_is_locked() -> None:
    rng = np.random.default_rng(5)
    keyframes = unit(rng.normal(size=(20, DIM)))
    stamps = np.arange(20, dtype=np.int64) * S
    detector = LoopDetector(LoopConfig())
    states = []
    for i in range(LoopConfig().confirm_frames):  # unrelated frames: nothing to confirm
        detector.update(unit(rng.normal(size=DIM)), (100 + i) * S, keyframes, stamps)
        states.append(detector.state)
    assert states == [COLLECTING] * (LoopConfig().confirm_frames - 1) + [SEARCHING]
    for i in range(LoopConfig().confirm_frames):  # the keyframes again, one a second
        match = detector.update(keyframes[i], (108 + i) * S, keyframes, stamps)
    assert match is not None and match.keyframe == 7 and detector.state == LOCKED
    detector.reset()
    assert detector.state == COLLECTING


def test_a_looped_bag_gets_right_candidates_on_its_second_lap_only(tmp_path: Path) -> None:
    """Real bags end to end: two drives of one street (5 and 4 m/s) written into ONE bag by
    ``write_looped_bag``, its frames through a real (small) network and the localizer, its loop
    candidates scored by the evaluation routine against the bag's own odometry.

    The street is a blurred noise texture that the small 64x64 network barely tells apart (any two
    frames score > 0.85), so only about a third of the revisited frames are confirmed here; the
    recall on the demo's drives is measured by ``benchmarks/loop_closure.py`` (96 %). What this
    checks is that every candidate is right and none comes before the street is driven again."""
    from bag_fixtures import write_line_bag

    from vbl_ros.bags import read_camera_frames, read_odometry
    from vbl_ros.evaluation import evaluate_localization
    from vbl_ros.evaluation.looped import write_looped_bag
    from vbl_ros.model import DescriptorNet, ModelConfig
    from vbl_ros.model.extractor import DescriptorExtractor

    first = write_line_bag(tmp_path / "first", length_m=200.0, speed_mps=5.0, camera_hz=4.0, seed=0)
    second = write_line_bag(tmp_path / "second", length_m=200.0, speed_mps=4.0, camera_hz=4.0, seed=0)
    looped = write_looped_bag(first.path, second.path, tmp_path / "looped", gap_s=20.0)
    with pytest.raises(OutputExistsError):
        write_looped_bag(first.path, second.path, looped)
    frames = list(read_camera_frames(looped))
    stamps = np.array([f.stamp_ns for f in frames], dtype=np.int64)
    assert len(frames) == 161 + 201 and (np.diff(stamps) > 0).all()
    odometry = read_odometry(looped)
    first_end = int(stamps[160])
    assert (stamps[161] - first_end) / S == pytest.approx(20.0, abs=0.01)
    positions = odometry.interpolate(stamps)[0]
    assert positions[161] == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)  # back at the street's start
    net = DescriptorNet(ModelConfig(input_height=64, input_width=64))
    extractor = DescriptorExtractor(net, "cpu", num_threads=1, warmup=False)
    descriptors = np.concatenate(
        [extractor([f.image_rgb for f in frames[i : i + 32]]) for i in range(0, len(frames), 32)]
    )
    second_lap = stamps > first_end
    for odom in (None, positions):
        loc = Localizer(extractor, None, LocalizerConfig())
        results = [
            loc.localize_descriptor(descriptors[i], int(stamps[i]), None if odom is None else odom[i])
            for i in range(len(stamps))
        ]
        loop = evaluate_localization(results, positions, query_trajectory=odometry).per_frame.loop
        assert loop.wrong.sum() == 0 and loop.count[~second_lap].sum() == 0
        assert loop.revisit.sum() >= 195
        assert loop.best_correct[loop.revisit].mean() >= 0.2


def night_drive(
    town: Town, seed: int, *, place: float = 0.22, night_m: float = SIDE_M
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One lap in daylight, then ``night_m`` more at night: from then on every frame shares a night
    look (one vector added to all) and shows less of its place (``place`` instead of 0.45)."""
    rng = np.random.default_rng(seed)
    stamps, s, desc = drive(town, LAP_M + night_m, seed=seed)
    night = s >= LAP_M
    glow = unit(rng.normal(size=DIM))
    own = town.place(s[night])
    noise = unit(rng.normal(size=(int(night.sum()), DIM)))
    desc[night] = unit(0.9 * town.common + place * own + 0.15 * noise + 0.5 * glow)
    return stamps, s, desc


@pytest.mark.parametrize("seed", [11, 12])
def test_centring_removes_a_shared_condition_look_and_finds_the_revisit(seed: int) -> None:
    """Centred on the last frames' mean, the night's shared look is taken out of frames and
    keyframes alike: the revisit of the daylight lap is still found, at the right place only, and
    the published score is the cosine of the descriptors as they came."""
    town = Town(seed=seed)
    stamps, s, desc = night_drive(town, seed)
    centred = replace(CONFIRMED, loop_centre_frames=32)
    results = replay(centred, stamps, desc)
    errors = candidate_errors(results, stamps, s)
    assert len(errors) and (errors[:, 1] <= 25.0).all()
    second_lap = np.flatnonzero(s >= LAP_M)
    assert np.mean([bool(results[i].loop_candidates) for i in second_lap]) >= 0.8
    assert all(c.score >= CONFIRMED.loop_min_score for r in results for c in r.loop_candidates)


NO_CONTRAST = replace(CONFIRMED, loop_start_contrast=-100.0, loop_keep_contrast=-100.0)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_night_lap_confirms_none_of_its_own_keyframes_without_odometry(seed: int) -> None:
    """The failure seen on held-out looped drives (benchmarks/README.md, loop_closure.py): a long
    night lap that shows little of its places, whose frames resemble the lap's own earlier frames
    (one shared night look). Each frame's scores are standardised against the session's keyframes,
    nearly all of daylight, so the night lap's own keyframes (30 s old, other places) stand out and
    sequences of them were confirmed. The contrast test compares a sequence with the same lines
    shifted 2-20 s along the session: the night lap's own keyframes score alike all along (a
    light), a place stands out from its neighbours. Without odometry, no wrong candidate."""
    town = Town(seed=seed)
    stamps, s, desc = night_drive(town, seed, place=0.1, night_m=2 * SIDE_M)
    without = candidate_errors(replay(NO_CONTRAST, stamps, desc), stamps, s)
    assert (without[:, 1] > 25.0).sum() >= 100  # the night lap's own keyframes confirmed ...
    with_contrast = candidate_errors(replay(CONFIRMED, stamps, desc), stamps, s)
    assert (with_contrast[:, 1] <= 25.0).all()  # ... not with the contrast test (the default)
    centred = candidate_errors(replay(replace(CONFIRMED, loop_centre_frames=32), stamps, desc), stamps, s)
    assert len(centred) and (centred[:, 1] <= 25.0).all()  # centring finds the revisits


def test_centring_is_refused_on_one_frame() -> None:
    with pytest.raises(ConfigError, match="centre_frames must be 0"):
        LoopConfig(centre_frames=1)
    with pytest.raises(ConfigError, match="loop settings"):
        LocalizerConfig(loop_centre_frames=-1)


def test_a_locked_loop_never_steps_back_along_the_first_visit() -> None:
    """While locked, the keyframe followed never goes back in time (the robot does not reverse
    through the places it revisits), even when for a few seconds the images match the keyframe
    behind best. Stepping back within the lock's tolerance let a right lock drift 26-39 m behind
    the robot on the benchmark's town D night lap (benchmarks/README.md, loop_closure.py)."""
    rng = np.random.default_rng(0)
    common = unit(rng.normal(size=DIM))
    places = unit(rng.normal(size=(200, DIM)))
    keyframes = unit(0.8 * common + 0.6 * places)  # one a second, each place distinct
    keyframe_stamps = np.arange(200, dtype=np.int64) * S
    detector = LoopDetector(LoopConfig())
    followed = []  # (keyframe stamp, locked) of each match
    for i in range(120):  # 4 frames/s from keyframe 100 on, at the first visit's pace ...
        shown = 100.0 + i / 4 - (1.0 if 40 <= i < 56 else 0.0)  # ... 4 s of it showing 1 s behind
        frame = unit(0.8 * common + 0.6 * places[round(shown)] + 0.25 * unit(rng.normal(size=DIM)))
        match = detector.update(frame, (300 * S + i * S // 4), keyframes, keyframe_stamps)
        if match is not None:
            followed.append((int(keyframe_stamps[match.keyframe]), match.locked))
    steps = [b[0] - a[0] for a, b in itertools.pairwise(followed) if b[1]]
    assert len(steps) >= 80 and min(steps) >= 0
