"""The middleware settings the ``localize`` process runs with: its Fast DDS profile and the check of it.

Default Fast DDS loses camera frames above ~0.5 MB from a best-effort publisher on the same
computer: they travel through the *publisher's* 512 KiB shared-memory segment in 64 KiB fragments,
and a best-effort reader cannot have a lost fragment sent again (docs/ros_interface.md, "Large
camera frames"). The packaged profile ``config/fastdds_large_frames.xml`` changes only this node's
side: its data locators are UDP (so publishers send frames to it over UDP, whatever their own
settings) with a 4 MiB socket receive buffer, which holds a 1920x1080 rgb8 frame's burst. The
kernel caps that buffer at ``net.core.rmem_max``; :func:`socket_buffer_problem` says when it does.

The launch file sets ``FASTDDS_DEFAULT_PROFILES_FILE`` for the node's process only, and
:func:`profile_env` does the same for the demo, the tests and the benchmarks; the process that
publishes the frames keeps the middleware's defaults.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = [
    "FASTDDS_PROFILE",
    "PROFILE_VARIABLE",
    "profile_env",
    "receive_buffer_bytes",
    "socket_buffer_problem",
]

#: The packaged Fast DDS profile, relative to the package's share folder (and the source checkout).
FASTDDS_PROFILE = "config/fastdds_large_frames.xml"
#: The environment variable Fast DDS reads its default XML profiles from.
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
_RMEM_MAX = Path("/proc/sys/net/core/rmem_max")


def profile_env(profile: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """``{PROFILE_VARIABLE: profile}``, or ``{}`` when ``environ`` (default: this process's) sets the
    variable already: a robot-wide profile (or an empty value: none) is kept, as the launch file keeps it."""
    environ = dict(os.environ) if environ is None else environ
    if PROFILE_VARIABLE in environ:
        return {}
    return {PROFILE_VARIABLE: str(profile)}


def receive_buffer_bytes(profile: Path) -> int:
    """The largest UDP ``receiveBufferSize`` a Fast DDS XML profile asks for (0 when none)."""
    try:
        root = ET.parse(profile).getroot()
    except (OSError, ET.ParseError):
        return 0
    sizes = [
        int(element.text)
        for element in root.iter()
        if element.tag.rsplit("}", 1)[-1] == "receiveBufferSize" and (element.text or "").strip().isdigit()
    ]
    return max(sizes, default=0)


def socket_buffer_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why the node's Fast DDS profile will not get the receive buffer it asks for, or ``None``.

    Compares the profile named by ``FASTDDS_DEFAULT_PROFILES_FILE`` with the kernel's
    ``net.core.rmem_max`` (Linux); ``None`` when no profile is set, it asks for no size, or the
    limit is unknown.
    """
    environ = dict(os.environ) if environ is None else environ
    path = environ.get(PROFILE_VARIABLE)
    if not path or not _RMEM_MAX.is_file():
        return None
    wanted = receive_buffer_bytes(Path(path))
    limit = int(_RMEM_MAX.read_text().split()[0])
    if wanted <= limit:
        return None
    return (
        f"the Fast DDS profile {path} asks for {wanted}-byte UDP receive buffers but the kernel allows "
        f"{limit} (net.core.rmem_max): large frames from best-effort publishers will be lost; raise it "
        f"with `sudo sysctl -w net.core.rmem_max={wanted}` (and in /etc/sysctl.d/ to keep it)"
    )
