"""Named exceptions of vbl.

Every error a user can cause derives from :class:`VblError`; its message says what was wrong
(naming the file and line where there is one) and what to do about it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "VblError",
    "ConfigError",
    "RobotCarFormatError",
    "MissingDataError",
    "OutputExistsError",
    "ImageDecodeError",
    "PoseRangeError",
    "FrameMismatchError",
    "ModelError",
    "ModelMismatchError",
    "MapError",
    "BadFrameError",
    "ReportError",
    "ExportError",
    "RuntimeUnavailableError",
    "BagError",
    "OutputError",
]


class VblError(Exception):
    """Base class of every error vbl raises on bad input."""


class ConfigError(VblError):
    """A configuration value or file is invalid."""


class RobotCarFormatError(VblError):
    """A RobotCar file does not follow the dataset's format."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line


class MissingDataError(VblError):
    """A file or folder that is required is absent."""


class OutputExistsError(VblError):
    """An output path exists already; vbl never overwrites silently."""


class ImageDecodeError(VblError):
    """An image could not be decoded or has the wrong size or encoding."""


class PoseRangeError(VblError):
    """A time lies outside the range covered by the poses."""


class FrameMismatchError(VblError):
    """Positions of two drives (or a drive and a map) cannot be brought into one geographic frame."""


class ModelError(VblError):
    """A model file is missing, corrupt or inconsistent."""


class ModelMismatchError(VblError):
    """A map was built with another model than the one in use."""


class MapError(VblError):
    """A keyframe map is missing, corrupt or inconsistent."""


class BadFrameError(VblError):
    """A camera frame cannot be used (unknown encoding, wrong size, corrupt data)."""


class ReportError(VblError):
    """An evaluation ``report.json`` is missing, not JSON, or of another schema or version."""


class ExportError(VblError):
    """A model could not be exported, or the exported network disagrees with the original."""


class RuntimeUnavailableError(VblError):
    """An inference runtime is not installed, or cannot run on the requested device."""


class BagError(VblError):
    """A bag cannot be read: not a bag, or a damaged or truncated storage file."""


class OutputError(VblError):
    """An output cannot be written: no permission, a read-only file system, or no space left."""
