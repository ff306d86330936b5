"""Atomic writes and folder replaces that an interrupted run cannot leave half-done, early checks of
output locations, and file modes that follow the umask (``mkstemp``/``mkdtemp`` alone make them
private, so a node running as another user could not read a map or a model).

Temporary siblings are named ``.NAME.tmp-PID-...`` and a folder being replaced is moved aside to
``.NAME.old-PID-NS``: the process id tells a leftover of a killed run (its process is gone) from
the work of a running one, so :func:`recover_dir` can restore or clean what a kill left behind.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vbl_ros.errors import OutputError

__all__ = [
    "FAULT_ENV",
    "check_output",
    "file_mode",
    "fsync_path",
    "output_error",
    "recover_dir",
    "replace_dir",
    "temp_dir",
    "temp_file",
    "tree_size",
    "write_file_atomic",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

#: Tests set this to a fault point's name (``replace-before-swap``, ``replace-between-renames``) to
#: have the process killed (SIGKILL) exactly there, as a power cut or ``kill -9`` would.
FAULT_ENV = "VBL_FAULT"

_PID = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-")
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
_WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on the device: free some space or choose another output location",
    errno.EDQUOT: "disk quota exceeded: free some space or choose another output location",
    errno.EFBIG: "file size limit reached (ulimit -f) or no space left: raise the limit or choose another "
    "output location",
    errno.EACCES: "permission denied: fix the permissions, or choose a folder you can write to",
    errno.EPERM: "operation not permitted: fix the permissions, or choose a folder you can write to",
    errno.EROFS: "read-only file system: choose an output location on a writable file system",
}


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def file_mode() -> int:
    """The mode a new file gets from ``open()`` here: ``0o666`` less the process's umask."""
    return 0o666 & ~_umask()


def _fault_point(name: str) -> None:
    """Kill this process here if a test asked for it (:data:`FAULT_ENV`); nothing otherwise."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(path: Path, kind: str) -> list[Path]:
    """Siblings ``.NAME.<kind>-*`` of ``path`` left by processes that are gone (newest first).

    Names without a process id (written by older versions of vbl) count as left over.
    """
    found = []
    for sibling in path.parent.glob(f".{_glob_escape(path.name)}.{kind}-*"):
        match = _PID.match(sibling.name)
        if match and match["name"] == path.name and _pid_alive(int(match["pid"])):
            continue
        found.append(sibling)
    return sorted(found, key=_stamp, reverse=True)


def _stamp(path: Path) -> int:
    """The time stamp ending an ``.old-PID-NS`` name (0 for other names)."""
    last = path.name.rsplit("-", 1)[-1]
    return int(last) if last.isdigit() else 0


def _glob_escape(name: str) -> str:
    """``name`` with the glob's special characters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def temp_file(path: Path) -> tuple[int, str]:
    """``(fd, name)`` of a new temporary sibling of ``path`` (for an atomic write), with the umask's mode.

    Temporary siblings of ``path`` left by a killed process are removed first.
    """
    for stale in _leftovers(path, "tmp"):
        logger.warning("%s: removing %s, left by an interrupted write", path, stale.name)
        _remove(stale)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, file_mode())
    return fd, name


def temp_dir(path: Path) -> Path:
    """A new temporary sibling folder of ``path`` (for an atomic replace), with the umask's mode."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def replace_dir(tmp: Path, path: Path) -> None:
    """Put the complete folder ``tmp`` (from :func:`temp_dir`) at ``path``, replacing what is there.

    An existing ``path`` is renamed aside to ``.NAME.old-PID-NS``, ``tmp`` renamed in, and the old
    folder deleted. A kill at any point leaves the old folder at ``path`` or aside, where
    :func:`recover_dir` (which every reader of maps calls) puts it back.
    """
    _fault_point("replace-before-swap")
    old: Path | None = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}-{time.time_ns()}"
        os.rename(path, old)
        _fault_point("replace-between-renames")
    try:
        os.rename(tmp, path)
    except BaseException:  # an error (not a kill) between the renames: the old folder goes back now
        if old is not None:
            os.rename(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_dir(path: Path | str, marker: str) -> list[str]:
    """Undo what an interrupted :func:`replace_dir` of ``path`` left; return what was done (log lines).

    - ``path`` missing and a complete old folder (holding ``marker``) aside: the old one is put back;
    - old folders aside while ``path`` exists (the replace had finished): deleted;
    - temporary folders of killed processes (never complete, even if they hold ``marker``): deleted.

    Leftovers of processes that still run (a replace in progress) are not touched.
    """
    path = Path(path).absolute()
    if not path.parent.is_dir():
        return []
    done = []
    olds = _leftovers(path, "old")
    if not path.exists():
        complete = [o for o in olds if (o / marker).is_file()]
        if complete:
            os.rename(complete[0], path)
            olds.remove(complete[0])
            done.append(
                f"{path}: a replace was interrupted; restored the previous version from {complete[0].name}"
            )
    for stale in olds:
        _remove(stale)
        done.append(f"{path}: removed {stale.name}, the previous version left by a finished replace")
    for stale in _leftovers(path, "tmp"):
        _remove(stale)
        done.append(f"{path}: removed {stale.name}, an incomplete temporary copy left by an interrupted run")
    for line in done:
        logger.warning("%s", line)
    return done


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entries to disk (a folder: the renames and new names inside it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except IsADirectoryError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: Path | str, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(f)`` on a temporary sibling of ``path`` opened for binary writing, fsync it and
    rename it to ``path``: ``path`` is either its old self or complete, never half-written.

    The file's mode follows the umask like any new file (``mkstemp`` alone would make it private).
    """
    path = Path(path)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`write_file_atomic`)."""
    write_file_atomic(path, lambda f: f.write(text.encode("utf-8")))


def check_output(path: Path | str, need_bytes: int = 0, what: str = "output") -> None:
    """Check, before the long work, that ``path`` can be created: its nearest existing folder is
    writable (tried for real: root ignores modes, not read-only mounts) and has ``need_bytes`` free.

    Raises:
        OutputError: the location cannot be written or has too little space.
    """
    path = Path(path).absolute()
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{path}: cannot create the {what}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = _WRITE_ERRNOS.get(err.errno or 0, err.strerror or str(err))
        raise OutputError(f"{path}: cannot write the {what} in {folder}: {reason}") from err
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise OutputError(
            f"{path}: the {what} needs about {_size(need_bytes)}, {folder} has {_size(free)} free: "
            "free some space or choose another output location"
        )


def output_error(err: BaseException, path: Path | str | None = None) -> OutputError | None:
    """The named error for a write (to ``path``, if the error does not name a file) that failed on
    permission, read-only file system or full disk, found in ``err`` or the errors it was raised
    from (torch wraps them); ``None`` for other errors."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError):
            reason = _WRITE_ERRNOS.get(seen.errno or 0)
            if reason is None and seen.errno is None and _SHORT_WRITE.search(f"{seen}"):
                reason = _WRITE_ERRNOS[errno.ENOSPC]  # numpy's tofile reports a short write without errno
            if reason is not None:
                where = seen.filename if seen.filename is not None else (path or "an output file")
                return OutputError(f"{where}: {reason}")
        seen = seen.__cause__ or seen.__context__
    return None


def tree_size(paths: list[Path]) -> int:
    """Bytes of the files under ``paths`` (files or folders; missing ones count 0)."""
    total = 0
    for p in paths:
        p = Path(p)
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"
