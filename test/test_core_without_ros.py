"""The core of vbl_ros never imports ROS: every module but vbl_ros.ros imports with ROS absent."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    ROS = ("rclpy", "rosidl_runtime_py", "sensor_msgs", "geometry_msgs", "nav_msgs", "std_msgs",
           "diagnostic_msgs", "visualization_msgs", "builtin_interfaces", "launch", "launch_ros",
           "rosbag2_py", "cv_bridge")

    class BlockRos(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ROS:
                raise ImportError(f"ROS is unavailable in this test: {name}")
            return None

    sys.meta_path.insert(0, BlockRos())
    import vbl_ros
    imported = []
    for module in pkgutil.walk_packages(vbl_ros.__path__, "vbl_ros."):
        if module.name == "vbl_ros.ros" or module.name.startswith("vbl_ros.ros."):
            continue
        importlib.import_module(module.name)
        imported.append(module.name)
    leaked = sorted(name for name in sys.modules if name.split(".")[0] in ROS)
    assert not leaked, leaked
    print(len(imported), " ".join(imported))
    """
)


def test_every_core_module_imports_without_ros() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    count, *names = result.stdout.split()
    assert int(count) >= 5
    assert "vbl_ros.images" in names and "vbl_ros.robotcar.calibration" in names


def test_the_ros_layer_does_import_rclpy() -> None:
    """The check above would be vacuous if the ROS layer did not exist or did not use ROS."""
    result = subprocess.run(
        [sys.executable, "-c", "import vbl_ros.ros.localize_node, sys; print('rclpy' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
