"""``convert_robotcar``: a synthetic traversal -> a real bag, read back with rosbags and with mcap."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import robotcar_fixtures as fx
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from vbl_ros.bags import utm_origin_from_metadata
from vbl_ros.errors import (
    ConfigError,
    ImageDecodeError,
    MissingDataError,
    OutputExistsError,
    RobotCarFormatError,
)
from vbl_ros.images import demosaic
from vbl_ros.robotcar import convert as convert_module
from vbl_ros.robotcar.convert import ConvertConfig, convert_robotcar, convert_robotcar_report

QUIET = ConvertConfig(progress=False)
TOPICS = {
    "/map/utm_origin",
    "/tf_static",
    "/ins/odometry",
    "/gps/fix",
    "/lms_front/points",
    "/stereo/centre/image_raw/compressed",
    "/stereo/centre/camera_info",
    "/stereo/centre/depth",
    "/stereo/centre/reflectance",
}


def _stamp_ns(message) -> int:
    return message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec


def _read_rosbags(bag: Path) -> dict[str, list[tuple[int, object]]]:
    out: dict[str, list[tuple[int, object]]] = defaultdict(list)
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        for connection, timestamp, raw in reader.messages():
            out[connection.topic].append((timestamp, reader.deserialize(raw, connection.msgtype)))
    return out


@pytest.fixture(scope="module")
def traversal(tmp_path_factory: pytest.TempPathFactory) -> fx.FixtureTraversal:
    return fx.make_traversal(tmp_path_factory.mktemp("traversal"))


@pytest.fixture(scope="module")
def converted(traversal: fx.FixtureTraversal, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("bags") / "run"
    report = convert_robotcar_report(
        traversal.root, out, extrinsics_dir=traversal.extrinsics, models_dir=traversal.models, config=QUIET
    )
    return report, _read_rosbags(out)


def test_report_and_bag_folder(traversal, converted) -> None:
    report, _ = converted
    assert report.out_bag.is_dir() and (report.out_bag / "metadata.yaml").is_file()
    assert (report.out_bag / "run.mcap").is_file()
    assert not report.out_bag.with_name("run.partial").exists()
    assert report.missing_files == {}
    assert report.images_without_pose == 0
    assert report.message_counts["/stereo/centre/depth"] == len(traversal.image_times_us)
    assert report.start_us == traversal.ins_times_us[0]


def test_every_topic_round_trips_through_rosbags_with_us_times_1000(traversal, converted) -> None:
    _, messages = converted
    assert set(messages) == TOPICS
    expected = {
        "/ins/odometry": traversal.ins_times_us,
        "/gps/fix": traversal.gps_times_us,
        "/lms_front/points": traversal.scan_times_us,
        "/stereo/centre/image_raw/compressed": traversal.image_times_us,
        "/stereo/centre/camera_info": traversal.image_times_us,
        "/stereo/centre/depth": traversal.image_times_us,
        "/stereo/centre/reflectance": traversal.image_times_us,
    }
    for topic, times_us in expected.items():
        stamps = [timestamp for timestamp, _ in messages[topic]]
        assert stamps == [t * 1000 for t in times_us], topic
        assert all(_stamp_ns(m) == t for t, m in messages[topic]), topic
    # the first image: 1418132463124157 us -> sec 1418132463, nanosec 124157000
    first = messages["/stereo/centre/image_raw/compressed"][0][1]
    assert traversal.image_times_us[0] == 1418132463124157
    assert (first.header.stamp.sec, first.header.stamp.nanosec) == (1418132463, 124157000)
    assert messages["/stereo/centre/image_raw/compressed"][0][0] == 1418132463124157000


def test_every_topic_round_trips_through_the_mcap_reader(traversal, converted) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    report, rosbags_messages = converted
    counts: dict[str, int] = defaultdict(int)
    with (report.out_bag / "run.mcap").open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, channel, message, ros_msg in reader.iter_decoded_messages(log_time_order=True):
            topic = channel.topic
            counts[topic] += 1
            header = getattr(ros_msg, "header", None)
            if header is not None:
                assert header.stamp.sec * 10**9 + header.stamp.nanosec == message.log_time, topic
            if topic == "/stereo/centre/depth" and counts[topic] == 1:
                assert ros_msg.encoding == "32FC1"
                assert (ros_msg.width, ros_msg.height) == (traversal.width, traversal.height)
            if topic == "/map/utm_origin":
                assert ros_msg.header.frame_id == "utm_30U"
                assert ros_msg.point.x == report.utm_origin.easting
    assert dict(counts) == {topic: len(msgs) for topic, msgs in rosbags_messages.items()}


def test_images_are_the_original_png_bytes_with_camera_info(traversal, converted) -> None:
    _, messages = converted
    for (_, image), t in zip(
        messages["/stereo/centre/image_raw/compressed"], traversal.image_times_us, strict=True
    ):
        assert image.format == "bayer_gbrg8; png compressed bayer_gbrg8"
        assert image.header.frame_id == "stereo_centre_optical"
        assert bytes(image.data) == (traversal.root / "stereo" / "centre" / f"{t}.png").read_bytes()
    info = messages["/stereo/centre/camera_info"][0][1]
    assert (info.width, info.height) == (traversal.width, traversal.height)
    np.testing.assert_allclose(info.k, traversal.model.matrix.ravel())
    assert info.header.frame_id == "stereo_centre_optical"


def test_depth_and_reflectance_match_the_known_ground(traversal, converted) -> None:
    """Flat ground 1.6 m below the camera: a point at depth z lands on row cy + fy * 1.6 / z (+-0.5 px),
    and its reflectance (the along-track world coordinate) equals speed * (t - t0) + z."""
    _, messages = converted
    model = traversal.model
    for (timestamp, depth_msg), (_, refl_msg) in zip(
        messages["/stereo/centre/depth"], messages["/stereo/centre/reflectance"], strict=True
    ):
        assert depth_msg.encoding == refl_msg.encoding == "32FC1"
        depth = np.frombuffer(depth_msg.data, np.float32).reshape(depth_msg.height, depth_msg.width)
        reflectance = np.frombuffer(refl_msg.data, np.float32).reshape(refl_msg.height, refl_msg.width)
        rows, cols = np.nonzero(depth > 0)
        assert rows.size > 500
        z = depth[rows, cols].astype(float)
        assert z.max() <= 100.0
        np.testing.assert_array_less(
            np.abs(model.cy + model.fy * fx.GROUND_BELOW_CAMERA_M / z - rows), 0.5 + 1e-3
        )
        travelled = fx.SPEED_MPS * (timestamp // 1000 - fx.T0_US) / 1e6
        np.testing.assert_allclose(reflectance[rows, cols], travelled + z, atol=2e-3)
        assert (reflectance[depth == 0] == 0).all()


def test_odometry_is_base_link_in_the_local_enu_map(traversal, converted) -> None:
    report, messages = converted
    origin = report.utm_origin
    first_ins = fx.vehicle_pose(traversal.ins_times_us[0]) @ fx.extrinsic("ins")
    assert origin.northing == pytest.approx(first_ins[0, 3])
    assert origin.easting == pytest.approx(first_ins[1, 3])
    assert origin.up == pytest.approx(-first_ins[2, 3])
    heading = np.array([np.sin(fx.YAW_RAD), np.cos(fx.YAW_RAD), 0.0])  # NED yaw 0.3 -> ENU
    for timestamp, odom in messages["/ins/odometry"][::50]:
        assert odom.header.frame_id == "map" and odom.child_frame_id == "base_link"
        vehicle = fx.vehicle_pose(timestamp // 1000)
        expected = [
            vehicle[1, 3] - origin.easting,
            vehicle[0, 3] - origin.northing,
            -vehicle[2, 3] - origin.up,
        ]
        p = odom.pose.pose.position
        np.testing.assert_allclose([p.x, p.y, p.z], expected, atol=1e-6)
        q = odom.pose.pose.orientation
        from vbl_ros.geometry.rotations import quaternion_to_rotation

        rotation = quaternion_to_rotation(np.array([q.x, q.y, q.z, q.w]))
        np.testing.assert_allclose(rotation @ [1, 0, 0], heading, atol=1e-6)
        np.testing.assert_allclose(rotation @ [0, 0, 1], [0, 0, 1], atol=1e-6)
        v = odom.twist.twist.linear
        np.testing.assert_allclose([v.x, v.y, v.z], [fx.SPEED_MPS, 0, 0], atol=1e-6)


def test_utm_origin_static_transforms_gps_and_points(traversal, converted) -> None:
    report, messages = converted
    ((t_origin, origin_msg),) = messages["/map/utm_origin"]
    assert t_origin == min(t for msgs in messages.values() for t, _ in msgs)
    assert (origin_msg.point.x, origin_msg.point.y, origin_msg.point.z) == (
        report.utm_origin.easting,
        report.utm_origin.northing,
        report.utm_origin.up,
    )
    assert utm_origin_from_metadata(report.out_bag) == report.utm_origin
    ((_, tf),) = messages["/tf_static"]
    children = {t.child_frame_id: t for t in tf.transforms}
    assert set(children) == {"ins", "lms_front", "stereo_centre_optical"}
    assert all(t.header.frame_id == "base_link" for t in tf.transforms)
    camera = children["stereo_centre_optical"].transform.rotation
    from vbl_ros.geometry.rotations import quaternion_to_rotation

    rotation = quaternion_to_rotation(np.array([camera.x, camera.y, camera.z, camera.w]))
    np.testing.assert_allclose(rotation @ [0, 0, 1], [1, 0, 0], atol=1e-9)  # optical z = forward
    np.testing.assert_allclose(rotation @ [1, 0, 0], [0, -1, 0], atol=1e-9)  # optical x = right
    lidar = children["lms_front"].transform.translation
    np.testing.assert_allclose([lidar.x, lidar.y, lidar.z], [1.7589, -0.2268, -1.0411])
    fix = messages["/gps/fix"][0][1]
    assert fix.latitude == pytest.approx(51.76) and fix.position_covariance_type == 2
    np.testing.assert_allclose(np.diag(np.reshape(fix.position_covariance, (3, 3))), [0.36, 0.64, 2.25])
    cloud = messages["/lms_front/points"][0][1]
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity"] and cloud.point_step == 16
    points = np.frombuffer(cloud.data, np.float32).reshape(-1, 4)
    scan = np.fromfile(traversal.root / "lms_front" / f"{traversal.scan_times_us[0]}.bin", "<f8").reshape(
        -1, 3
    )
    np.testing.assert_allclose(points[:, [0, 1, 3]], scan, rtol=1e-6)
    assert (points[:, 2] == 0).all() and cloud.header.frame_id == "lms_front"


@pytest.mark.parametrize("encoding", ["bayer_gbrg8", "rgb8"])
def test_raw_image_encodings_in_sqlite3(traversal, tmp_path: Path, encoding: str) -> None:
    config = ConvertConfig(
        progress=False,
        storage="sqlite3",
        image_encoding=encoding,
        side_modality=False,
        lidar_points=False,
        gps=False,
    )
    out = convert_robotcar(
        traversal.root,
        tmp_path / "bag",
        extrinsics_dir=traversal.extrinsics,
        models_dir=traversal.models,
        config=config,
    )
    messages = _read_rosbags(out)
    assert set(messages) == {
        "/map/utm_origin",
        "/tf_static",
        "/ins/odometry",
        "/stereo/centre/image_raw",
        "/stereo/centre/camera_info",
    }
    t0 = traversal.image_times_us[0]
    timestamp, image = messages["/stereo/centre/image_raw"][0]
    assert timestamp == _stamp_ns(image) == t0 * 1000
    mosaic = fx.test_image(traversal.width, traversal.height, 0)
    if encoding == "bayer_gbrg8":
        assert image.encoding == "bayer_gbrg8" and image.step == traversal.width
        np.testing.assert_array_equal(np.frombuffer(image.data, np.uint8).reshape(mosaic.shape), mosaic)
    else:
        assert image.encoding == "rgb8" and image.step == 3 * traversal.width
        rgb = np.frombuffer(image.data, np.uint8).reshape(traversal.height, traversal.width, 3)
        np.testing.assert_array_equal(rgb, demosaic(mosaic, "gbrg"))


def _convert(root: Path, out: Path, traversal: fx.FixtureTraversal, config: ConvertConfig = QUIET):
    return convert_robotcar_report(
        root, out, extrinsics_dir=traversal.extrinsics, models_dir=traversal.models, config=config
    )


def test_missing_chunks_are_skipped_counted_and_reported(traversal, tmp_path: Path) -> None:
    root = fx.copy_traversal(traversal, tmp_path)
    (root / "stereo" / "centre" / f"{traversal.image_times_us[2]}.png").unlink()
    for t in traversal.scan_times_us[100:103]:
        (root / "lms_front" / f"{t}.bin").unlink()
    (root / "gps" / "gps.csv").unlink()
    report = _convert(root, tmp_path / "bag", traversal)
    assert report.missing_files == {"stereo/centre": 1, "lms_front": 3, "gps": 1}
    assert report.message_counts["/stereo/centre/image_raw/compressed"] == len(traversal.image_times_us) - 1
    assert report.message_counts["/stereo/centre/depth"] == len(traversal.image_times_us) - 1
    assert report.message_counts["/lms_front/points"] == len(traversal.scan_times_us) - 3
    assert "/gps/fix" not in report.message_counts
    assert "stereo/centre: 1" in report.summary()


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not out.with_name(out.name + ".partial").exists()


def test_missing_ins_and_empty_folder(traversal, tmp_path: Path) -> None:
    root = fx.copy_traversal(traversal, tmp_path)
    (root / "gps" / "ins.csv").unlink()
    with pytest.raises(MissingDataError, match=r"gps/ins\.csv: INS file ins\.csv not found"):
        _convert(root, tmp_path / "bag", traversal)
    _assert_nothing_written(tmp_path / "bag")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingDataError, match="the folder is empty"):
        _convert(empty, tmp_path / "bag", traversal)
    with pytest.raises(MissingDataError, match="traversal folder not found"):
        _convert(tmp_path / "absent", tmp_path / "bag", traversal)
    _assert_nothing_written(tmp_path / "bag")


def test_malformed_ins_row_names_file_and_line(traversal, tmp_path: Path) -> None:
    root = fx.copy_traversal(traversal, tmp_path)
    path = root / "gps" / "ins.csv"
    lines = path.read_text().splitlines()
    lines[5] = lines[5].replace("INS_SOLUTION_GOOD,", "INS_SOLUTION_GOOD,x")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RobotCarFormatError, match=r"ins\.csv:6: column latitude"):
        _convert(root, tmp_path / "bag", traversal)
    _assert_nothing_written(tmp_path / "bag")


def test_truncated_or_wrong_size_png_fails_and_leaves_no_bag(traversal, tmp_path: Path) -> None:
    root = fx.copy_traversal(traversal, tmp_path)
    path = root / "stereo" / "centre" / f"{traversal.image_times_us[3]}.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(ImageDecodeError, match=rf"{path.name}: truncated"):
        _convert(root, tmp_path / "bag", traversal)
    _assert_nothing_written(tmp_path / "bag")
    import cv2

    cv2.imwrite(str(path), fx.test_image(traversal.width // 2, traversal.height // 2, 0))
    with pytest.raises(
        ImageDecodeError, match=rf"{path.name}: image is 80x60 but the traversal's first image"
    ):
        _convert(root, tmp_path / "bag", traversal)
    _assert_nothing_written(tmp_path / "bag")


def test_existing_output_or_stale_partial_is_refused(traversal, tmp_path: Path) -> None:
    (tmp_path / "bag").mkdir()
    with pytest.raises(OutputExistsError, match="exists already"):
        _convert(traversal.root, tmp_path / "bag", traversal)
    assert (tmp_path / "bag").is_dir() and not any((tmp_path / "bag").iterdir())
    (tmp_path / "other.partial").mkdir()
    with pytest.raises(OutputExistsError, match="interrupted conversion"):
        _convert(traversal.root, tmp_path / "other", traversal)


def test_an_interrupted_conversion_leaves_no_bag(traversal, tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = convert_module.read_image

    def interrupt_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(convert_module, "read_image", interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        _convert(traversal.root, tmp_path / "bag", traversal)
    _assert_nothing_written(tmp_path / "bag")


def test_models_that_do_not_fit_the_images_and_bad_config(traversal, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(traversal.models, models)
    (models / "stereo_narrow_left.txt").write_text(fx.stereo_narrow_left().to_text())  # 1280x960 model
    with pytest.raises(ConfigError, match="principal point"):
        convert_robotcar(
            traversal.root,
            tmp_path / "bag",
            extrinsics_dir=traversal.extrinsics,
            models_dir=models,
            config=QUIET,
        )
    _assert_nothing_written(tmp_path / "bag")
    with pytest.raises(ConfigError, match="image_encoding"):
        ConvertConfig(image_encoding="jpeg")
    with pytest.raises(ConfigError, match="unknown RobotCar camera"):
        ConvertConfig(cameras=("stereo/middle",))
    with pytest.raises(ConfigError, match="not converted"):
        ConvertConfig(cameras=("stereo/left",))
    assert ConvertConfig(image_encoding="bayer_gbrg8").image_encoding == "bayer"


def test_extra_cameras_on_request(traversal, tmp_path: Path) -> None:
    """stereo/left and the rear mono camera (RGGB, its own timestamps and model) convert on request."""
    import cv2

    from vbl_ros.images import mosaic

    root = fx.copy_traversal(traversal, tmp_path)
    models = tmp_path / "models"
    shutil.copytree(traversal.models, models)
    (models / "stereo_wide_left.txt").write_text(traversal.model.to_text())
    (models / "mono_rear.txt").write_text(traversal.model.to_text())
    shutil.copytree(root / "stereo" / "centre", root / "stereo" / "left")
    rear_times = [t + 30_000 for t in traversal.image_times_us[::2]]
    (root / "mono_rear").mkdir()
    (root / "mono_rear.timestamps").write_text("".join(f"{t} 1\n" for t in rear_times))
    for i, t in enumerate(rear_times):
        rgb = np.dstack([fx.test_image(traversal.width, traversal.height, 100 + i + c) for c in range(3)])
        cv2.imwrite(str(root / "mono_rear" / f"{t}.png"), mosaic(rgb, "rggb"))

    out = tmp_path / "bag"
    config = ConvertConfig(
        cameras=("stereo/centre", "stereo/left", "mono_rear"),
        depth_cameras=("stereo/centre", "mono_rear"),
        lidar_points=False,
        progress=False,
    )
    convert_robotcar(root, out, extrinsics_dir=traversal.extrinsics, models_dir=models, config=config)
    messages = _read_rosbags(out)
    n = len(traversal.image_times_us)
    assert len(messages["/stereo/left/image_raw/compressed"]) == n
    assert len(messages["/stereo/left/camera_info"]) == n
    assert "/stereo/left/depth" not in messages
    rear = messages["/mono_rear/image_raw/compressed"]
    assert [stamp for stamp, _ in rear] == [t * 1000 for t in rear_times]
    assert rear[0][1].format.startswith("bayer_rggb8")
    assert rear[0][1].header.frame_id == "mono_rear_optical"
    assert len(messages["/mono_rear/depth"]) == len(rear_times)
    info = messages["/mono_rear/camera_info"][0][1]
    assert info.k[0] == pytest.approx(traversal.model.fx) and info.width == traversal.width
