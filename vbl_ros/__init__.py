"""vbl: visual-based localization for ROS 2.

The core (everything but :mod:`vbl_ros.ros`) never imports ROS.
"""

__version__ = "0.1.0"
