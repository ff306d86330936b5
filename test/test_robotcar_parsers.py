"""RobotCar file parsers on small files in the real formats, including every bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from robotcar_fixtures import make_traversal, test_image

from vbl_ros.errors import ImageDecodeError, MissingDataError, RobotCarFormatError
from vbl_ros.robotcar.images import read_image
from vbl_ros.robotcar.ins import INS_COLUMNS, read_gps, read_ins, read_vo
from vbl_ros.robotcar.lidar import read_scan, scan_points
from vbl_ros.robotcar.timestamps import read_timestamps, us_to_ns, us_to_stamp

INS_HEADER = ",".join(INS_COLUMNS)
INS_ROW = (
    "1418132462123457,INS_SOLUTION_GOOD,51.760,-1.258,110.5,5735000.25,620000.75,-110.5,30U,"
    "1.0,2.0,0.1,0.01,0.02,1.5"
)


@pytest.fixture(scope="module")
def traversal(tmp_path_factory: pytest.TempPathFactory):
    return make_traversal(tmp_path_factory.mktemp("parsers"), n_images=3, duration_s=3.0)


# --- time ------------------------------------------------------------------------------------------


def test_time_conversion_is_microseconds_times_1000() -> None:
    assert us_to_ns(1_418_132_462_123_457) == 1_418_132_462_123_457_000
    assert us_to_stamp(1_418_132_462_123_457) == (1_418_132_462, 123_457_000)
    assert us_to_stamp(1_000_000) == (1, 0)
    assert us_to_stamp(999_999) == (0, 999_999_000)


def test_timestamps_file(tmp_path: Path) -> None:
    path = tmp_path / "stereo.timestamps"
    path.write_text("1418132462123457 1\n1418132462185957 1\n\n1418132462248457 2\n")
    stamps = read_timestamps(path)
    assert stamps.times_us.tolist() == [1418132462123457, 1418132462185957, 1418132462248457]
    assert stamps.times_us.dtype == np.int64
    assert stamps.chunks.tolist() == [1, 1, 2]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("1418132462123457 1\nabc 1\n", 2),
        ("1418132462123457 1\n1418132462123457 1 extra\n", 2),
        ("1418132462123457 1\n1418132462000000 1\n", 2),
    ],
)
def test_timestamps_bad_line_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "stereo.timestamps"
    path.write_text(text)
    with pytest.raises(RobotCarFormatError, match=f"stereo.timestamps:{line}:") as info:
        read_timestamps(path)
    assert info.value.line == line


def test_timestamps_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"stereo.timestamps"):
        read_timestamps(tmp_path / "stereo.timestamps")
    (tmp_path / "stereo.timestamps").write_text("")
    with pytest.raises(RobotCarFormatError, match="no frame"):
        read_timestamps(tmp_path / "stereo.timestamps")


# --- ins.csv, gps.csv, vo.csv ---------------------------------------------------------------------


def test_ins_csv(tmp_path: Path) -> None:
    path = tmp_path / "ins.csv"
    bad = INS_ROW.replace("1418132462123457", "1418132462143457").replace("INS_SOLUTION_GOOD", "INS_BAD_GPS")
    path.write_text(f"{INS_HEADER}\n{INS_ROW}\n{bad}\n")
    ins = read_ins(path)
    assert len(ins) == 2
    assert ins.times_us.tolist() == [1418132462123457, 1418132462143457]
    assert ins.good.tolist() == [True, False]
    assert ins.northing[0] == 5735000.25 and ins.easting[0] == 620000.75 and ins.down[0] == -110.5
    assert ins.utm_zone == ("30U", "30U")
    np.testing.assert_allclose(ins.velocity_ned[0], [1.0, 2.0, 0.1])
    np.testing.assert_allclose(ins.rpy[0], [0.01, 0.02, 1.5])
    assert len(ins.select(ins.good)) == 1


def test_fixture_files_parse(traversal) -> None:
    ins = read_ins(traversal.root / "gps" / "ins.csv")
    assert tuple(ins.times_us.tolist()) == traversal.ins_times_us
    gps = read_gps(traversal.root / "gps" / "gps.csv")
    assert tuple(gps.times_us.tolist()) == traversal.gps_times_us
    assert gps.sigma.shape == (len(gps), 3) and gps.num_satellites.min() >= 7
    vo = read_vo(traversal.root / "vo" / "vo.csv")
    assert len(vo) == len(traversal.image_times_us) - 1
    assert vo.xyzrpy.shape == (len(vo), 6)


@pytest.mark.parametrize(
    ("content", "line", "match"),
    [
        (f"{INS_HEADER}\n{INS_ROW}\n{INS_ROW.rsplit(',', 1)[0]}\n", 3, "expected 15"),
        (f"{INS_HEADER}\n{INS_ROW.replace('5735000.25', 'north')}\n", 2, "column northing"),
        (f"{INS_HEADER}\n{INS_ROW.replace('5735000.25', 'nan')}\n", 2, "column northing"),
        (f"{INS_HEADER}\n{INS_ROW.replace('1418132462123457', '14181324621.5')}\n", 2, "column timestamp"),
        (f"{INS_HEADER}\n{INS_ROW.replace(',30U,', ',,')}\n", 2, "column utm_zone"),
        ("timestamp,latitude\n" + INS_ROW + "\n", 1, "unexpected header"),
        ("", 1, "empty"),
    ],
)
def test_ins_malformed_names_file_and_line(tmp_path: Path, content: str, line: int, match: str) -> None:
    path = tmp_path / "ins.csv"
    path.write_text(content)
    with pytest.raises(RobotCarFormatError, match=match) as info:
        read_ins(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}:")


def test_ins_header_only_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "ins.csv"
    with pytest.raises(MissingDataError, match=r"ins.csv"):
        read_ins(path)
    path.write_text(INS_HEADER + "\n")
    with pytest.raises(RobotCarFormatError, match=r"no INS file ins.csv row"):
        read_ins(path)


def test_ins_time_going_back(tmp_path: Path) -> None:
    earlier = INS_ROW.replace("1418132462123457", "1418132462000000")
    path = tmp_path / "ins.csv"
    path.write_text(f"{INS_HEADER}\n{INS_ROW}\n{earlier}\n")
    with pytest.raises(RobotCarFormatError, match="goes backwards") as info:
        read_ins(path)
    assert info.value.line == 3


def test_gps_and_vo_malformed(tmp_path: Path) -> None:
    gps = tmp_path / "gps.csv"
    gps.write_text("timestamp,num_satellites,a,b,c,d,e,f,g,h,i,utm_zone\n1,seven,1,2,3,4,5,6,7,8,9,30U\n")
    with pytest.raises(RobotCarFormatError, match="num_satellites") as info:
        read_gps(gps)
    assert info.value.line == 2
    vo = tmp_path / "vo.csv"
    vo.write_text("source_timestamp,destination_timestamp,x,y,z,roll,pitch,yaw\n2,1,0.1,0,0,0,0\n")
    with pytest.raises(RobotCarFormatError, match=r"vo.csv:2:"):
        read_vo(vo)


# --- images ---------------------------------------------------------------------------------------


def _write_png(path: Path, image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    path.write_bytes(buffer.tobytes())
    return buffer.tobytes()


def test_read_image_keeps_original_bytes(tmp_path: Path) -> None:
    raw = test_image(32, 24, 0)
    data = _write_png(tmp_path / "1.png", raw)
    image = read_image(tmp_path / "1.png", expected_size=(32, 24))
    assert image.png == data
    np.testing.assert_array_equal(image.mosaic, raw)
    assert (image.width, image.height) == (32, 24)


def test_read_image_bad_inputs(tmp_path: Path) -> None:
    data = _write_png(tmp_path / "ok.png", test_image(32, 24, 0))
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match=r"truncated.png: truncated"):
        read_image(tmp_path / "truncated.png")
    (tmp_path / "text.png").write_bytes(b"hello")
    with pytest.raises(ImageDecodeError, match="not a PNG"):
        read_image(tmp_path / "text.png")
    corrupt = bytearray(data)
    corrupt[40:60] = b"\x00" * 20
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    with pytest.raises(ImageDecodeError, match=r"corrupt.png"):
        read_image(tmp_path / "corrupt.png")
    with pytest.raises(ImageDecodeError, match=r"ok.png: image is 32x24 .* first image is 64x48"):
        read_image(tmp_path / "ok.png", expected_size=(64, 48))
    _write_png(tmp_path / "colour.png", np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match="single-channel"):
        read_image(tmp_path / "colour.png")
    with pytest.raises(MissingDataError, match=r"absent.png"):
        read_image(tmp_path / "absent.png")


# --- LIDAR ----------------------------------------------------------------------------------------


def test_read_scan(tmp_path: Path) -> None:
    values = np.array([[1.0, 2.0, 30.0], [4.0, -5.0, 60.0], [np.nan, 0.0, 1.0]])
    path = tmp_path / "1.bin"
    path.write_bytes(values.astype("<f8").tobytes())
    scan = read_scan(path)
    np.testing.assert_array_equal(scan[:2], values[:2])
    points, reflectance = scan_points(scan)
    assert points.shape == (4, 2)
    np.testing.assert_array_equal(points[2], 0.0)
    np.testing.assert_array_equal(points[3], 1.0)
    np.testing.assert_array_equal(reflectance, [30.0, 60.0])


def test_read_scan_bad_inputs(tmp_path: Path) -> None:
    path = tmp_path / "1.bin"
    path.write_bytes(b"\x00" * 30)
    with pytest.raises(RobotCarFormatError, match=r"1.bin: 30 bytes"):
        read_scan(path)
    with pytest.raises(MissingDataError):
        read_scan(tmp_path / "2.bin")
    (tmp_path / "3.bin").write_bytes(b"")
    assert read_scan(tmp_path / "3.bin").shape == (0, 3)
