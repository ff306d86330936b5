"""The node's own parameters validate themselves like the core's configs, and say their defaults once.

(config/localize.yaml agreeing with these defaults is checked in test_launch_file.py; declaring them
on a real rclpy node, in test_ros_messages.py.)
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("rclpy")

from vbl_ros.errors import ConfigError
from vbl_ros.ros.params import IMAGE_QOS, NodeParams, parameter_table


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"device": "tpu"}, "parameter 'device' is 'tpu'; use one of auto, cpu, cuda"),
        ({"image_transport": "theora"}, "parameter 'image_transport' is 'theora'"),
        ({"image_qos": "sometimes"}, "parameter 'image_qos' is 'sometimes'; use one of auto, best_effort"),
        ({"inference_threads": 0}, "parameter 'inference_threads' must be >= 1"),
        ({"model": "/nonexistent.pt"}, "give a model file (`vbl init-model`)"),
        ({"map": "/nonexistent/map"}, "give a map written by `vbl build-map`"),
        ({"odom_frame": ""}, "parameter 'odom_frame' is empty"),
        ({"marker_diameter": -1.0}, "parameter 'marker_diameter' must be > 0"),
    ],
)
def test_invalid_values_are_refused_at_construction(changes, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        NodeParams(**changes)


def test_defaults_are_valid_and_described() -> None:
    params = NodeParams()
    assert params.image_transport == "raw" and params.image_qos == "auto" and params.inference_threads == 1
    assert set(IMAGE_QOS) == {"auto", "best_effort", "reliable"}
    table = {name: (ptype, default, description) for name, ptype, default, description in parameter_table()}
    for field in dataclasses.fields(NodeParams):
        _ptype, default, description = table[field.name]
        assert default == getattr(params, field.name)
        assert len(description) > 20 and "vbl train" not in description, field.name
    assert (
        table["inference_threads"][0] == "integer" and "benchmarks/README.md" in table["inference_threads"][2]
    )


def test_the_offline_replay_runs_the_descriptor_with_the_nodes_defaults() -> None:
    """``vbl evaluate --offline`` builds the node's extractor: its defaults are the node's."""
    from vbl_ros.pipelines.evaluate import DescriptorSettings

    node, offline = NodeParams(), DescriptorSettings()
    assert (offline.runtime, offline.threads) == (node.runtime, node.inference_threads)
    assert node.precision == "" and offline.precision == "auto"  # the node reads an empty precision as auto
