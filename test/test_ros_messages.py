"""Conversions of vbl_ros.ros.messages and parameter handling of vbl_ros.ros.params, without DDS traffic."""

from __future__ import annotations

import math
import re

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image, PointField
from visualization_msgs.msg import Marker

from vbl_ros.errors import BadFrameError, ConfigError
from vbl_ros.images import mosaic
from vbl_ros.localizer import LocalizationResult, LocalizerConfig, LoopCandidate, Match, PosePrior
from vbl_ros.mapping import Keyframe
from vbl_ros.ros import messages

STAMP_NS = 1_418_381_798_086_434_123  # a RobotCar-like stamp: too large for a float to keep exact


def _result(*, prior: bool = True, loops: int = 2, with_pose: bool = True) -> LocalizationResult:
    keyframes = [
        Keyframe(STAMP_NS - (i + 1) * 10**9, (10.0 * i, 5.0, 0.0), (0.0, 0.0, 0.0, 1.0)) for i in range(3)
    ]
    matches = tuple(Match(rank=i + 1, score=0.9 - 0.1 * i, keyframe=kf) for i, kf in enumerate(keyframes))
    pose_prior = PosePrior(
        stamp_ns=STAMP_NS,
        position=(1.0, 2.0, 3.0),
        orientation=(0.0, 0.0, 0.6, 0.8),
        covariance=tuple(float(v) for v in np.diag([4, 4, 4, 0.1, 0.1, 0.2]).reshape(-1)),
        score=0.9,
        keyframe_stamps_ns=(keyframes[0].stamp_ns,),
    )
    candidates = tuple(
        LoopCandidate(
            rank=i + 1,
            score=0.95 - 0.05 * i,
            keyframe_stamp_ns=STAMP_NS - (100 + i) * 10**9 - 7,
            position=(float(i), -1.0, 0.5) if with_pose else None,
            orientation=(0.0, 0.0, 0.0, 1.0) if with_pose else None,
        )
        for i in range(loops)
    )
    return LocalizationResult(
        stamp_ns=STAMP_NS,
        pose_prior=pose_prior if prior else None,
        matches=matches,
        loop_candidates=candidates,
        rejected_reason=None if prior else "best score below min_score",
        descriptor_ms=30.0,
        search_ms=1.0,
    )


def test_stamps_round_trip_exactly() -> None:
    stamp = messages.ns_to_stamp(STAMP_NS)
    assert (stamp.sec, stamp.nanosec) == (1_418_381_798, 86_434_123)
    assert messages.stamp_to_ns(stamp) == STAMP_NS


def test_pose_prior_message_carries_image_stamp_pose_and_covariance() -> None:
    msg = messages.pose_prior_to_msg(_result(), "map")
    assert messages.stamp_to_ns(msg.header.stamp) == STAMP_NS and msg.header.frame_id == "map"
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    assert (p.x, p.y, p.z) == (1.0, 2.0, 3.0) and (q.x, q.y, q.z, q.w) == (0.0, 0.0, 0.6, 0.8)
    assert np.array(msg.pose.covariance).reshape(6, 6)[5, 5] == pytest.approx(0.2)
    assert messages.pose_prior_to_msg(_result(prior=False), "map") is None


@pytest.mark.parametrize("with_pose", [True, False])
def test_loop_candidate_table_round_trips(with_pose: bool) -> None:
    result = _result(loops=3, with_pose=with_pose)
    msg = messages.loop_candidates_to_msg(result, "odom")
    assert messages.stamp_to_ns(msg.header.stamp) == STAMP_NS and msg.header.frame_id == "odom"
    assert (msg.height, msg.width, msg.point_step) == (1, 3, 72) and len(msg.data) == 3 * 72
    assert msg.is_dense == with_pose
    fields = {f.name: (f.offset, f.datatype) for f in msg.fields}
    assert fields["score"] == (56, PointField.FLOAT32) and fields["stamp_nanosec"] == (68, PointField.UINT32)
    rows = messages.loop_candidates_from_msg(msg)
    for row, cand in zip(rows, result.loop_candidates, strict=True):
        assert row.rank == cand.rank and row.keyframe_stamp_ns == cand.keyframe_stamp_ns
        assert row.score == pytest.approx(cand.score, abs=1e-6)
        assert row.position == cand.position and row.orientation == cand.orientation


def test_empty_loop_candidate_table() -> None:
    msg = messages.loop_candidates_to_msg(_result(loops=0), "odom")
    assert msg.width == 0 and messages.loop_candidates_from_msg(msg) == []


def test_markers_replace_previous_draw_matches_and_links_to_the_prior() -> None:
    markers = messages.markers_to_msg(_result(), "map", sphere_diameter=3.0).markers
    assert markers[0].action == Marker.DELETEALL
    spheres = [m for m in markers if m.type == Marker.SPHERE]
    assert len(spheres) == 3 and spheres[0].scale.x == 3.0
    assert spheres[0].color.r < spheres[2].color.r  # less red = higher score
    assert len({m.id for m in markers}) == len(markers)
    (links,) = [m for m in markers if m.type == Marker.LINE_LIST]
    assert len(links.points) == 6 and (links.points[0].x, links.points[0].y) == (1.0, 2.0)
    no_prior = messages.markers_to_msg(_result(prior=False), "map").markers
    assert not [m for m in no_prior if m.type == Marker.LINE_LIST]


def test_raw_images_decode_through_vbl_images() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    msg = Image(height=6, width=8, encoding="rgb8", step=24, data=rgb.tobytes())
    assert np.array_equal(messages.image_to_rgb(msg), rgb)
    bayer = Image(height=6, width=8, encoding="bayer_gbrg8", step=8, data=mosaic(rgb).tobytes())
    assert messages.image_to_rgb(bayer).shape == (6, 8, 3)
    with pytest.raises(BadFrameError, match="unsupported image encoding"):
        messages.image_to_rgb(Image(height=6, width=8, encoding="nv12", step=8, data=bytes(48)))
    with pytest.raises(BadFrameError, match="needs 144 bytes"):
        messages.image_to_rgb(Image(height=6, width=8, encoding="rgb8", step=24, data=bytes(10)))


def test_compressed_images_decode_and_corrupt_data_is_a_bad_frame() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    assert np.array_equal(messages.compressed_to_rgb(CompressedImage(format="png", data=png)), rgb)
    with pytest.raises(BadFrameError, match="corrupt"):
        messages.compressed_to_rgb(CompressedImage(format="png", data=png[:20]))


def test_odometry_pose() -> None:
    msg = Odometry()
    msg.pose.pose.position.x, msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = 3.0, 0.6, 0.8
    assert messages.odometry_to_pose(msg) == ((3.0, 0.0, 0.0), (0.0, 0.0, 0.6, 0.8))


def test_diagnostics_message() -> None:
    msg = messages.diagnostics_to_msg(
        name="vbl: /localize",
        hardware_id="cpu",
        level=DiagnosticStatus.WARN,
        message="1 bad frame",
        values={"latency_p50_ms": 41.23456, "frames_bad": 1, "latency_p95_ms": math.nan},
        stamp=messages.ns_to_stamp(STAMP_NS),
    )
    (status,) = msg.status
    assert status.level == DiagnosticStatus.WARN and status.name == "vbl: /localize"
    assert {kv.key: kv.value for kv in status.values} == {
        "latency_p50_ms": "41.235",
        "frames_bad": "1",
        "latency_p95_ms": "nan",
    }


# --- parameters ----------------------------------------------------------------------------------


def test_every_parameter_is_described_and_every_config_field_is_a_parameter() -> None:
    from vbl_ros.ros.params import parameter_table

    table = {name: (ptype, default, description) for name, ptype, default, description in parameter_table()}
    for name in LocalizerConfig.__dataclass_fields__:
        assert name in table
        assert table[name][1] == getattr(LocalizerConfig(), name)
    assert all(len(description) > 10 for _, _, description in table.values())
    assert table["device"][:2] == ("string", "auto") and table["min_score"][0] == "double"


@pytest.fixture
def make_node():
    import rclpy
    from rclpy.context import Context
    from ros_helpers import unique_domain_id

    context = Context()
    rclpy.init(context=context, domain_id=unique_domain_id())
    nodes = []

    def make(**overrides):
        from rclpy.node import Node
        from rclpy.parameter import Parameter

        node = Node(
            "localize",
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=context)


def test_parameters_build_the_frozen_config(make_node) -> None:
    from vbl_ros.ros.params import declare_and_read

    node = make_node(top_k=3, min_score=0.5, device="cpu", image_transport="compressed")
    params, config = declare_and_read(node)
    assert config == LocalizerConfig(top_k=3, min_score=0.5)
    assert params.device == "cpu" and params.image_transport == "compressed" and params.map == ""
    descriptor = node.describe_parameter("min_score")
    assert descriptor.read_only and "cosine similarity" in descriptor.description
    assert "one of auto, cpu, cuda" in node.describe_parameter("device").additional_constraints


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"device": "tpu"}, "parameter 'device' is 'tpu'"),
        ({"image_transport": "theora"}, "parameter 'image_transport'"),
        ({"top_k": 0}, "top_k must be >= 1"),
        ({"min_score": 1}, "parameter 'min_score' must be a double"),
        ({"model": "/nonexistent.pt"}, "parameter 'model'"),
        ({"map_frame": " "}, "parameter 'map_frame' is empty"),
        ({"diagnostics_period": 0.0}, "'diagnostics_period' must be > 0"),
    ],
)
def test_invalid_parameters_are_refused_with_the_parameter_named(make_node, overrides, message) -> None:
    from vbl_ros.ros.params import declare_and_read

    with pytest.raises(ConfigError, match=re.escape(message)):
        declare_and_read(make_node(**overrides))


def test_unknown_parameter_is_reported(make_node) -> None:
    from vbl_ros.ros.params import declare_and_read, unknown_overrides

    node = make_node(top_kk=3)
    declare_and_read(node)
    assert unknown_overrides(node) == ["top_kk"]


def test_every_parameter_is_documented_in_ros_interface_md() -> None:
    from pathlib import Path

    from vbl_ros.ros.params import parameter_table

    doc = (Path(__file__).resolve().parents[1] / "docs" / "ros_interface.md").read_text()
    missing = [name for name, *_ in parameter_table() if f"| `{name}` |" not in doc]
    assert not missing, f"docs/ros_interface.md lacks parameters {missing}"
