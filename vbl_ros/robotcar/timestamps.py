"""RobotCar ``<sensor>.timestamps`` files and time conversion.

A timestamps file has one line per frame, ``<unix_us> <chunk>``, space separated, no header.
RobotCar times are integer microseconds since the Unix epoch; ROS times are nanoseconds:
``ns = us * 1000``, ``sec = us // 1_000_000``, ``nanosec = (us % 1_000_000) * 1000``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vbl_ros.errors import MissingDataError, RobotCarFormatError

__all__ = ["Timestamps", "read_timestamps", "us_to_ns", "us_to_stamp"]


def us_to_ns(us: int) -> int:
    """Bag time in nanoseconds of a RobotCar time in microseconds."""
    return int(us) * 1000


def us_to_stamp(us: int) -> tuple[int, int]:
    """``(sec, nanosec)`` of a ROS ``builtin_interfaces/Time`` for a RobotCar time in microseconds."""
    us = int(us)
    return us // 1_000_000, (us % 1_000_000) * 1000


@dataclass(frozen=True)
class Timestamps:
    """The frames of one sensor: times (int64 microseconds, non-decreasing) and download chunks."""

    path: Path
    times_us: np.ndarray
    chunks: np.ndarray

    def __len__(self) -> int:
        return int(self.times_us.size)


def read_timestamps(path: Path | str) -> Timestamps:
    """Read a ``<sensor>.timestamps`` file.

    Raises:
        MissingDataError: the file does not exist.
        RobotCarFormatError: a line is not ``<integer us> <integer chunk>``, times go backwards,
            or the file holds no frame.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            f"{path}: timestamps file not found; pass a RobotCar traversal folder that holds it "
            "(download the sensor's chunks, or leave that sensor out of the conversion)"
        )
    times: list[int] = []
    chunks: list[int] = []
    with path.open("r", encoding="ascii", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) > 2:
                raise RobotCarFormatError(
                    path,
                    f"expected '<unix_us> <chunk>', got {line.strip()!r}; fix or remove this line",
                    number,
                )
            try:
                time_us = int(fields[0])
                chunk = int(fields[1]) if len(fields) == 2 else 0
            except ValueError as err:
                raise RobotCarFormatError(
                    path,
                    f"expected integers '<unix_us> <chunk>', got {line.strip()!r}; fix or remove this line",
                    number,
                ) from err
            if times and time_us < times[-1]:
                raise RobotCarFormatError(
                    path,
                    f"time {time_us} us goes backwards (previous {times[-1]} us); the file is corrupt",
                    number,
                )
            times.append(time_us)
            chunks.append(chunk)
    if not times:
        raise RobotCarFormatError(path, "the file lists no frame; download the sensor's data again")
    return Timestamps(path=path, times_us=np.asarray(times, dtype=np.int64), chunks=np.asarray(chunks))
