"""The ROS packaging: a real `colcon build` installs what `ros2 launch vbl ...` needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COLCON = Path(sys.executable).with_name("colcon")


def test_package_xml_is_format_3_and_names_vbl() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "vbl"
    assert root.find("export/build_type").text == "ament_python"
    depends = {element.text for element in root.iter("exec_depend")}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "nav_msgs", "launch_ros"} <= depends


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not COLCON.exists():
        pytest.skip(f"colcon is not installed next to {sys.executable}; run scripts/setup.sh")
    workspace = tmp_path_factory.mktemp("ws")
    source = workspace / "src" / "vbl"
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for relative in tracked:
        if (REPO / relative).is_file():
            target = source / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, target)
    result = subprocess.run(
        [str(COLCON), "build", "--base-paths", "src"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return workspace / "install" / "vbl"


def test_colcon_installs_resource_index_package_xml_launch_and_config(colcon_install: Path) -> None:
    share = colcon_install / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "vbl").is_file()
    assert (share / "vbl" / "package.xml").read_text() == (REPO / "package.xml").read_text()
    assert (share / "vbl" / "launch" / "localize.launch.py").is_file()
    assert (share / "vbl" / "config" / "localize.yaml").is_file()


def test_colcon_installs_executables_where_ros2_run_looks(colcon_install: Path) -> None:
    for executable in ("localize", "vbl"):
        path = colcon_install / "lib" / "vbl" / executable
        assert path.is_file(), f"{path} missing"
        assert path.stat().st_mode & 0o111, f"{path} is not executable"
    packages = list((colcon_install / "lib").glob("python3*/site-packages/vbl_ros/ros/localize_node.py"))
    assert packages, "vbl_ros.ros is not installed"


def test_colcon_installed_localize_runs_from_the_install_space(colcon_install: Path, tmp_path: Path) -> None:
    """The executable `ros2 run vbl localize` would start imports vbl_ros from the install space and
    refuses a bad parameter with the node's own message (exit status 2)."""
    site = next((colcon_install / "lib").glob("python3*/site-packages"))
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.update(ROS_DOMAIN_ID="97", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    where = subprocess.run(
        [sys.executable, "-c", "import vbl_ros; print(vbl_ros.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(site)), where
    result = subprocess.run(
        [sys.executable, str(colcon_install / "lib" / "vbl" / "localize"), "--ros-args", "-p", "device:=tpu"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "parameter 'device' is 'tpu'" in result.stdout + result.stderr
