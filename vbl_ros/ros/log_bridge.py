"""Forwarding the core's ``logging`` records to a ROS logger, so they reach ``/rosout`` and the console.

The core (everything under ``vbl_ros`` but this subpackage) logs with the standard ``logging``
module and never imports ROS. Inside the ``localize`` node, :func:`forward_core_logs` attaches a
:class:`RosLogHandler` to the ``vbl_ros`` logger: a core record then appears as
``[WARN] [<time>] [localize.vbl_ros.localizer]: ...``, with the ROS severity that matches its level
and filtered by the node's log level (``--ros-args --log-level debug`` shows the core's debug
records too).
"""

from __future__ import annotations

import logging

from rclpy.impl.rcutils_logger import RcutilsLogger

__all__ = ["RosLogHandler", "forward_core_logs", "stop_forwarding"]

CORE_LOGGER = "vbl_ros"


class RosLogHandler(logging.Handler):
    """A ``logging.Handler`` that writes each record to a child of ``ros_logger`` named after it."""

    def __init__(self, ros_logger: RcutilsLogger) -> None:
        super().__init__()
        self.ros_logger = ros_logger
        self._children: dict[str, RcutilsLogger] = {}
        self.restore: tuple[int, bool] = (logging.NOTSET, True)  # the core logger's level, propagate

    def _child(self, name: str) -> RcutilsLogger:
        child = self._children.get(name)
        if child is None:
            child = self._children[name] = self.ros_logger.get_child(name)
        return child

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            logger = self._child(record.name)
            if record.levelno >= logging.CRITICAL:
                logger.fatal(message)
            elif record.levelno >= logging.ERROR:
                logger.error(message)
            elif record.levelno >= logging.WARNING:
                logger.warning(message)
            elif record.levelno >= logging.INFO:
                logger.info(message)
            else:
                logger.debug(message)
        except Exception:  # a logging failure must never take the node down
            self.handleError(record)


def forward_core_logs(ros_logger: RcutilsLogger, name: str = CORE_LOGGER) -> RosLogHandler:
    """Send the records of the ``name`` logger (and its children) to ``ros_logger``; returns the handler.

    The ``logging`` level of ``name`` is set to the ROS logger's effective severity (both use 10
    debug, 20 info, 30 warning, 40 error, 50 fatal), and records stop propagating to the root
    logger, so nothing is printed twice. :func:`stop_forwarding` undoes this.
    """
    handler = RosLogHandler(ros_logger)
    core = logging.getLogger(name)
    handler.restore = (core.level, core.propagate)
    core.setLevel(int(ros_logger.get_effective_level()))
    core.propagate = False
    core.addHandler(handler)
    return handler


def stop_forwarding(handler: RosLogHandler, name: str = CORE_LOGGER) -> None:
    """Detach ``handler`` from the ``name`` logger and restore its level and propagation."""
    core = logging.getLogger(name)
    core.removeHandler(handler)
    level, propagate = handler.restore
    core.setLevel(level)
    core.propagate = propagate
