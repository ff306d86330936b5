"""The core's ``logging`` records reach a ROS logger (:mod:`vbl_ros.ros.log_bridge`), in this process.

test_node.py checks the same in the node's own process: a core warning in its ROS log output.
"""

from __future__ import annotations

import logging

import pytest

rclpy = pytest.importorskip("rclpy")


@pytest.fixture
def ros_logger():
    from rclpy.context import Context
    from ros_helpers import unique_domain_id

    context = Context()
    rclpy.init(context=context, domain_id=unique_domain_id())
    node = rclpy.create_node("bridge_test", context=context)
    yield node.get_logger()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def test_core_records_are_printed_by_the_ros_logger_with_their_severity(ros_logger, capfd) -> None:
    from vbl_ros.ros.log_bridge import forward_core_logs, stop_forwarding

    handler = forward_core_logs(ros_logger)
    try:
        logging.getLogger("vbl_ros.localizer").warning("time went back (%d < %d ns)", 1, 2)
        logging.getLogger("vbl_ros.keyframe_map").info("loaded a map")
        logging.getLogger("vbl_ros.keyframe_map").debug("not shown at the default level")
        logging.getLogger("vbl_ros.model").error("a failure")
        logging.getLogger("somebody_else").warning("not the core's")
    finally:
        stop_forwarding(handler)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "[bridge_test." in line]
    assert any(
        line.startswith("[WARN]") and "[bridge_test.vbl_ros.localizer]: time went back (1 < 2 ns)" in line
        for line in lines
    ), err
    assert any(line.startswith("[INFO]") and "loaded a map" in line for line in lines), err
    assert any(line.startswith("[ERROR]") and "a failure" in line for line in lines), err
    assert "not shown" not in err and not any("not the core's" in line for line in lines)


def test_forwarding_follows_the_ros_level_and_is_undone(ros_logger, capfd) -> None:
    from rclpy.logging import LoggingSeverity

    from vbl_ros.ros.log_bridge import forward_core_logs, stop_forwarding

    core = logging.getLogger("vbl_ros")
    level, propagate = core.level, core.propagate
    ros_logger.set_level(LoggingSeverity.DEBUG)
    handler = forward_core_logs(ros_logger)
    try:
        assert core.level == logging.DEBUG and core.propagate is False
        logging.getLogger("vbl_ros.x").debug("a debug record")
    finally:
        stop_forwarding(handler)
    assert "[DEBUG]" in capfd.readouterr().err
    assert (core.level, core.propagate) == (level, propagate) and handler not in core.handlers
