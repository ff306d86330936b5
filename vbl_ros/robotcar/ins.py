"""Parsers of RobotCar's ``gps/ins.csv``, ``gps/gps.csv`` and ``vo/vo.csv``.

Each file has a header line and one row per measurement; times are integer microseconds. Rows are
returned column-wise as numpy arrays in frozen dataclasses. A malformed row raises
:class:`~vbl_ros.errors.RobotCarFormatError` naming the file and line.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vbl_ros.errors import MissingDataError, RobotCarFormatError

__all__ = [
    "INS_COLUMNS",
    "GPS_COLUMNS",
    "VO_COLUMNS",
    "INS_GOOD_STATUS",
    "InsData",
    "GpsData",
    "VoData",
    "read_ins",
    "read_gps",
    "read_vo",
]

INS_COLUMNS = (
    "timestamp",
    "ins_status",
    "latitude",
    "longitude",
    "altitude",
    "northing",
    "easting",
    "down",
    "utm_zone",
    "velocity_north",
    "velocity_east",
    "velocity_down",
    "roll",
    "pitch",
    "yaw",
)
GPS_COLUMNS = (
    "timestamp",
    "num_satellites",
    "latitude",
    "longitude",
    "altitude",
    "latitude_sigma",
    "longitude_sigma",
    "altitude_sigma",
    "northing",
    "easting",
    "down",
    "utm_zone",
)
VO_COLUMNS = ("source_timestamp", "destination_timestamp", "x", "y", "z", "roll", "pitch", "yaw")
INS_GOOD_STATUS = "INS_SOLUTION_GOOD"


def _int(text: str) -> int:
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _str(text: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError("empty text")
    return text


def _read_table(
    path: Path,
    columns: Sequence[str],
    parsers: Sequence[Callable[[str], object]],
    *,
    check_names: bool,
    what: str,
) -> list[list[object]]:
    """Rows of a CSV file with a header, each parsed column by column; errors name file and line."""
    if not path.is_file():
        raise MissingDataError(
            f"{path}: {what} not found; pass a RobotCar traversal folder whose {path.parent.name}/ "
            f"chunk was downloaded and extracted"
        )
    rows: list[list[object]] = []
    with path.open("r", newline="", encoding="ascii", errors="replace") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            raise RobotCarFormatError(path, f"the file is empty; expected a header {','.join(columns)}", 1)
        names = [name.strip().lower() for name in header]
        if len(names) != len(columns) or (check_names and tuple(names) != tuple(columns)):
            raise RobotCarFormatError(
                path, f"unexpected header {','.join(header)!r}; expected {','.join(columns)}", 1
            )
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(columns):
                raise RobotCarFormatError(
                    path,
                    f"expected {len(columns)} comma-separated values, got {len(fields)}; "
                    "the file is truncated or corrupt: fix or remove this row",
                    line,
                )
            row: list[object] = []
            for name, parse, text in zip(columns, parsers, fields, strict=True):
                try:
                    row.append(parse(text))
                except ValueError as err:
                    raise RobotCarFormatError(
                        path, f"column {name}: cannot read {text!r} ({err}); fix or remove this row", line
                    ) from err
            if rows and row[0] < rows[-1][0]:  # type: ignore[operator]
                raise RobotCarFormatError(
                    path,
                    f"timestamp {row[0]} goes backwards (previous {rows[-1][0]}); the file is corrupt",
                    line,
                )
            rows.append(row)
    if not rows:
        raise RobotCarFormatError(path, f"the file holds a header but no {what} row; download it again")
    return rows


def _column(rows: list[list[object]], index: int, dtype: type) -> np.ndarray:
    return np.asarray([row[index] for row in rows], dtype=dtype)


@dataclass(frozen=True)
class InsData:
    """``gps/ins.csv``: NovAtel INS poses (NED, radians) of the INS sensor, one per row."""

    path: Path
    times_us: np.ndarray  # (N,) int64
    status: tuple[str, ...]
    latitude: np.ndarray  # (N,) degrees
    longitude: np.ndarray
    altitude: np.ndarray  # metres
    northing: np.ndarray  # metres, UTM
    easting: np.ndarray
    down: np.ndarray
    utm_zone: tuple[str, ...]
    velocity_ned: np.ndarray  # (N, 3) m/s
    rpy: np.ndarray  # (N, 3) roll, pitch, yaw in radians

    def __len__(self) -> int:
        return int(self.times_us.size)

    @property
    def good(self) -> np.ndarray:
        """Boolean mask of the rows whose status is ``INS_SOLUTION_GOOD``."""
        return np.asarray([s == INS_GOOD_STATUS for s in self.status], dtype=bool)

    def select(self, mask: np.ndarray) -> InsData:
        """The rows where ``mask`` is true."""
        index = np.flatnonzero(mask)
        return InsData(
            path=self.path,
            times_us=self.times_us[index],
            status=tuple(self.status[i] for i in index),
            latitude=self.latitude[index],
            longitude=self.longitude[index],
            altitude=self.altitude[index],
            northing=self.northing[index],
            easting=self.easting[index],
            down=self.down[index],
            utm_zone=tuple(self.utm_zone[i] for i in index),
            velocity_ned=self.velocity_ned[index],
            rpy=self.rpy[index],
        )


def read_ins(path: Path | str) -> InsData:
    """Read ``gps/ins.csv`` (the whole file: about 15 MB per hour, small enough)."""
    path = Path(path)
    parsers = [_int, _str] + [_float] * 6 + [_str] + [_float] * 6
    rows = _read_table(path, INS_COLUMNS, parsers, check_names=True, what="INS file ins.csv")
    return InsData(
        path=path,
        times_us=_column(rows, 0, np.int64),
        status=tuple(str(r[1]) for r in rows),
        latitude=_column(rows, 2, float),
        longitude=_column(rows, 3, float),
        altitude=_column(rows, 4, float),
        northing=_column(rows, 5, float),
        easting=_column(rows, 6, float),
        down=_column(rows, 7, float),
        utm_zone=tuple(str(r[8]) for r in rows),
        velocity_ned=np.stack([_column(rows, i, float) for i in (9, 10, 11)], axis=1),
        rpy=np.stack([_column(rows, i, float) for i in (12, 13, 14)], axis=1),
    )


@dataclass(frozen=True)
class GpsData:
    """``gps/gps.csv``: GPS fixes (degrees, metres) with their standard deviations."""

    path: Path
    times_us: np.ndarray  # (N,) int64
    num_satellites: np.ndarray  # (N,) int
    latitude: np.ndarray
    longitude: np.ndarray
    altitude: np.ndarray
    sigma: np.ndarray  # (N, 3) latitude, longitude, altitude sigmas in metres
    northing: np.ndarray
    easting: np.ndarray
    down: np.ndarray
    utm_zone: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.times_us.size)


def _satellites(text: str) -> int:
    value = float(text)
    if not np.isfinite(value) or value < 0 or value != int(value):
        raise ValueError("expected a non-negative whole number")
    return int(value)


def read_gps(path: Path | str) -> GpsData:
    """Read ``gps/gps.csv`` (12 columns; the header's names are not checked, only its width)."""
    path = Path(path)
    parsers = [_int, _satellites] + [_float] * 9 + [_str]
    rows = _read_table(path, GPS_COLUMNS, parsers, check_names=False, what="GPS file gps.csv")
    return GpsData(
        path=path,
        times_us=_column(rows, 0, np.int64),
        num_satellites=_column(rows, 1, np.int64),
        latitude=_column(rows, 2, float),
        longitude=_column(rows, 3, float),
        altitude=_column(rows, 4, float),
        sigma=np.stack([_column(rows, i, float) for i in (5, 6, 7)], axis=1),
        northing=_column(rows, 8, float),
        easting=_column(rows, 9, float),
        down=_column(rows, 10, float),
        utm_zone=tuple(str(r[11]) for r in rows),
    )


@dataclass(frozen=True)
class VoData:
    """``vo/vo.csv``: relative poses (vehicle frame) from each destination frame to its source frame."""

    path: Path
    source_us: np.ndarray  # (N,) int64
    destination_us: np.ndarray  # (N,) int64
    xyzrpy: np.ndarray  # (N, 6)

    def __len__(self) -> int:
        return int(self.source_us.size)


def read_vo(path: Path | str) -> VoData:
    """Read ``vo/vo.csv``."""
    path = Path(path)
    parsers = [_int, _int] + [_float] * 6
    rows = _read_table(path, VO_COLUMNS, parsers, check_names=True, what="visual odometry file vo.csv")
    return VoData(
        path=path,
        source_us=_column(rows, 0, np.int64),
        destination_us=_column(rows, 1, np.int64),
        xyzrpy=np.stack([_column(rows, i, float) for i in range(2, 8)], axis=1),
    )
