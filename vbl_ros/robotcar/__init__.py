"""Oxford RobotCar on disk: parsers, calibration, pose interpolation, LIDAR projection, bag conversion."""
