"""ament_python package ``vbl`` (Python package ``vbl_ros``)."""

from glob import glob

from setuptools import find_packages, setup

package_name = "vbl"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
        ("share/" + package_name + "/models", glob("models/*.yaml") + glob("models/*.md")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="vbl developers",
    maintainer_email="vbl@example.org",
    description="Visual-based localization: CNN global descriptors, keyframe maps, pose priors and "
    "loop-closure candidates for SLAM; RobotCar conversion and a simulated RobotCar.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "vbl = vbl_ros.cli:main",
            "localize = vbl_ros.ros.localize_node:main",
        ],
    },
)
