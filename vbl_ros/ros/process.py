"""Starting the ``localize`` node as its own process, exactly as ``ros2 launch`` would.

That includes the environment the launch file gives the node: the packaged Fast DDS profile
(:mod:`vbl_ros.ros.middleware`) unless one is set already.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from vbl_ros.ros.middleware import FASTDDS_PROFILE, profile_env

__all__ = ["find_share_file", "localize_command", "ros_env", "start_localize", "stop_process"]


def find_share_file(relative: str) -> Path:
    """A file of the package's share folder (``config/localize.yaml``, ``launch/...``).

    Looks in the ament index (a colcon workspace or ROS install), then ``<prefix>/share/vbl``,
    then the source checkout next to this module.
    """
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory("vbl")) / relative)
        except (PackageNotFoundError, OSError):  # not in a workspace: AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    candidates.append(Path(sys.prefix) / "share" / "vbl" / relative)
    candidates.append(Path(__file__).resolve().parents[2] / relative)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{relative} not found in {[str(c) for c in candidates]}")


def _ros_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value == "":
        return "''"
    return str(value)


def localize_command(
    *,
    params_file: Path | None = None,
    parameters: dict[str, object] | None = None,
    remappings: dict[str, str] | None = None,
) -> list[str]:
    """The command line of the installed ``localize`` executable with ROS arguments."""
    executable = shutil.which("localize", path=str(Path(sys.executable).parent)) or shutil.which("localize")
    command = [executable] if executable else [sys.executable, "-m", "vbl_ros.ros.localize_node"]
    command.append("--ros-args")
    if params_file is not None:
        command += ["--params-file", str(params_file)]
    for name, value in (parameters or {}).items():
        command += ["-p", f"{name}:={_ros_value(value)}"]
    for source, target in (remappings or {}).items():
        command += ["-r", f"{source}:={target}"]
    return command


def ros_env(domain_id: int, *, fastdds_profile: bool = True) -> dict[str, str]:
    """The environment of the ``localize`` process on ``domain_id``, discovery kept on this host.

    With ``fastdds_profile`` (the launch file's default), the packaged Fast DDS profile for large
    frames unless this process's environment names one already.
    """
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        RMW_IMPLEMENTATION=os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
        ROS_AUTOMATIC_DISCOVERY_RANGE=os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
        RCUTILS_LOGGING_BUFFERED_STREAM="0",
        PYTHONUNBUFFERED="1",
    )
    if fastdds_profile:
        env.update(profile_env(find_share_file(FASTDDS_PROFILE), env))
    return env


def start_localize(
    command: list[str], *, domain_id: int, log_path: Path | None = None, fastdds_profile: bool = True
) -> subprocess.Popen[bytes]:
    """Start the node in its own process group on ``ROS_DOMAIN_ID=domain_id`` (environment:
    :func:`ros_env`)."""
    env = ros_env(domain_id, fastdds_profile=fastdds_profile)
    output = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL
    return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    """Ctrl-C the process (SIGINT, as a terminal would) and wait; kill it if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
