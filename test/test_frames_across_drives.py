"""One geographic frame for every drive: drives whose origins lie hundreds of metres apart score the same.

A simulated town that no figure was tuned on (seed 3) is driven twice; the query drive is also
converted with its first INS rows dropped, which moves that bag's ``map`` origin along the route.
Scored against the map with the truth brought into the map's frame, both query bags give the same
recall and prior errors; scored in the query's own frame (the old behaviour) they do not.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

from vbl_ros.bags import read_odometry, read_utm_origin
from vbl_ros.errors import FrameMismatchError
from vbl_ros.evaluation import evaluate_localization, ground_truth, localize_bag
from vbl_ros.localizer import Localizer, LocalizerConfig

TRIM_S = 20.0  # INS rows dropped from the start of the far query drive


def _trim_ins(traversal: Path, out: Path, seconds: float) -> Path:
    """A copy of ``traversal`` whose ``gps/ins.csv`` starts ``seconds`` later."""
    shutil.copytree(traversal, out)
    lines = (traversal / "gps" / "ins.csv").read_text().splitlines()
    first = int(lines[1].split(",")[0])
    kept = [line for line in lines[1:] if int(line.split(",")[0]) >= first + seconds * 1e6]
    (out / "gps" / "ins.csv").write_text("\n".join([lines[0], *kept]) + "\n")
    return out


@pytest.fixture(scope="module")
def drives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from vbl_ros.mapping import MapConfig, build_map
    from vbl_ros.robotcar.convert import ConvertConfig, convert_robotcar
    from vbl_ros.sim.simulate import SimConfig, simulate

    root = tmp_path_factory.mktemp("drives")
    config = dataclasses.replace(
        SimConfig.preset("tiny"),
        seed=3,
        conditions=("overcast", "sun"),
        route_length_m=280.0,
        block_m=(50.0, 80.0),
        speed_mps=10.0,
        camera_hz=2.0,
        lms_hz=2.0,
    )
    map_trav, query_trav = simulate(root / "sim", config)
    sdk = root / "sim" / "sdk"
    far_trav = _trim_ins(query_trav, root / "far" / query_trav.name, TRIM_S)
    convert = ConvertConfig(side_modality=False, lidar_points=False)
    bags = {}
    for name, trav in (("map", map_trav), ("query", query_trav), ("far", far_trav)):
        bags[name] = convert_robotcar(
            trav,
            root / f"{name}_bag",
            extrinsics_dir=sdk / "extrinsics",
            models_dir=sdk / "models",
            config=convert,
        )
    bags["map_dir"] = build_map(bags["map"], root / "map", config=MapConfig(spacing_m=2.0, device="cpu"))
    return bags


def _score(localizer: Localizer, bag: Path, keep, map_origin, *, own_frame: bool = False):
    localizer.reset_session()
    results = localize_bag(localizer, bag, keep=keep)
    stamps = np.array([r.stamp_ns for r in results], dtype=np.int64)
    if own_frame:
        truth, _ = read_odometry(bag).interpolate(stamps)
    else:
        truth = ground_truth(bag, stamps, map_origin)
    return stamps, evaluate_localization(results, truth)


def test_drives_with_distant_origins_score_the_same(drives: dict[str, Path]) -> None:
    from vbl_ros.mapping import KeyframeMap
    from vbl_ros.model import DescriptorExtractor, default_model

    near, far = read_utm_origin(drives["query"]), read_utm_origin(drives["far"])
    assert near is not None and far is not None
    separation = float(np.hypot(far.easting - near.easting, far.northing - near.northing))
    assert separation >= 100.0, f"the trimmed drive's origin moved only {separation:.0f} m"

    extractor = DescriptorExtractor(default_model(), "cpu", num_threads=1)
    kmap = KeyframeMap.load(drives["map_dir"], expected_fingerprint=extractor.fingerprint)
    localizer = Localizer(extractor, kmap, LocalizerConfig())
    covered = read_odometry(drives["far"]).contains  # the frames both query bags have poses for

    stamps_near, near_report = _score(localizer, drives["query"], covered, kmap.utm_origin)
    stamps_far, far_report = _score(localizer, drives["far"], covered, kmap.utm_origin)
    assert len(stamps_near) >= 20 and np.array_equal(stamps_near, stamps_far)
    assert near_report.recall_at_1 == far_report.recall_at_1
    assert near_report.recall_at_1 >= 0.5, near_report.summary()
    np.testing.assert_allclose(near_report.top1_errors_m, far_report.top1_errors_m, atol=1e-6)
    np.testing.assert_allclose(near_report.errors_m, far_report.errors_m, atol=1e-6)

    # Scored in the far drive's own frame, as before this fix, the same answers look wrong.
    _, own = _score(localizer, drives["far"], covered, kmap.utm_origin, own_frame=True)
    assert np.nanmin(own.top1_errors_m) > 0.5 * separation
    assert own.recall_at_1 < near_report.recall_at_1


def test_truth_without_an_origin_is_refused(drives: dict[str, Path]) -> None:
    from vbl_ros.mapping import KeyframeMap

    kmap = KeyframeMap.load(drives["map_dir"])
    stamps = read_odometry(drives["query"]).stamps_ns[:3]
    with pytest.raises(FrameMismatchError, match="target frame's UTM origin is unknown"):
        ground_truth(drives["query"], stamps, None)
    other_zone = dataclasses.replace(kmap.utm_origin, zone="31U")
    with pytest.raises(FrameMismatchError, match="zone 30U and zone 31U"):
        ground_truth(drives["query"], stamps, other_zone)


def test_a_map_from_several_drives_keeps_the_first_drives_frame(
    drives: dict[str, Path], tmp_path: Path
) -> None:
    """The far drive's keyframes land on the map drive's route in the map drive's frame, whether the
    map is built from both bags at once or grown with the far bag afterwards."""
    from vbl_ros.mapping import KeyframeMap, MapConfig, build_map

    config = MapConfig(spacing_m=4.0, device="cpu")
    both = KeyframeMap.load(build_map([drives["map"], drives["far"]], tmp_path / "both", config=config))
    first = KeyframeMap.load(build_map(drives["map"], tmp_path / "grown", config=config))
    grown = KeyframeMap.load(build_map(drives["far"], tmp_path / "grown", config=config, add=True))
    map_origin = read_utm_origin(drives["map"])
    for kmap in (both, grown):
        assert kmap.utm_origin == map_origin
        own = kmap.positions()[: len(first)]
        np.testing.assert_allclose(own, first.positions())
        added = kmap.positions()[len(first) :]
        assert len(added) >= 10
        # each added keyframe lies on the map drive's route (lanes and INS noise: a few metres)
        gaps = np.linalg.norm(added[:, None, :2] - own[None, :, :2], axis=2).min(axis=1)
        assert gaps.max() < 5.0, f"far-drive keyframes off the route by up to {gaps.max():.0f} m"
        # and they are not where the far drive's own frame would put them
        far_own = read_odometry(drives["far"]).positions
        assert np.linalg.norm(far_own[0, :2] - added[0, :2]) > 50.0


def test_bags_whose_frames_cannot_be_related_are_refused_before_any_descriptor(
    drives: dict[str, Path], tmp_path: Path
) -> None:
    from bag_fixtures import write_line_bag

    from vbl_ros.cli import main
    from vbl_ros.mapping import build_map

    unreferenced = write_line_bag(
        tmp_path / "no_origin", length_m=20.0, camera_hz=2.0, with_origin=False
    ).path
    with pytest.raises(FrameMismatchError, match=r"no_origin.*UTM origin is unknown"):
        build_map([drives["map"], unreferenced], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
    assert main(["build-map", str(drives["map"]), str(unreferenced), "--out", str(tmp_path / "cli")]) == 2
    assert not (tmp_path / "cli").exists()
