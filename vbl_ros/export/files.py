"""Atomic writes of exported files: a temporary file beside the target, fsync, rename (no torch)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from vbl_ros.errors import OutputExistsError
from vbl_ros.files import fsync_path, temp_file

__all__ = ["write_atomically"]


def write_atomically(out: Path, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``out``, fsync it and rename it to ``out``.

    An interrupted export never leaves a file at ``out`` that looks whole.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; choose another --out or --overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = temp_file(out)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(out.parent)
    return out
