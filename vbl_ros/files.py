"""Atomic file writes (a file is either its old self or complete, never half-written), with the
modes any new file or folder gets from the umask (``mkstemp``/``mkdtemp`` alone make them private, so
a node running as another user could not read a map or a model)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["file_mode", "temp_dir", "temp_file", "write_text_atomic"]


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def file_mode() -> int:
    """The mode a new file gets from ``open()`` here: ``0o666`` less the process's umask."""
    return 0o666 & ~_umask()


def temp_file(path: Path) -> tuple[int, str]:
    """``(fd, name)`` of a new temporary sibling of ``path`` (for an atomic write), with the umask's mode."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, file_mode())
    return fd, name


def temp_dir(path: Path) -> Path:
    """A new temporary sibling folder of ``path`` (for an atomic replace), with the umask's mode."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary sibling, fsync and rename.

    The file's mode follows the umask like any new file (``mkstemp`` alone would make it private).
    """
    path = Path(path)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
