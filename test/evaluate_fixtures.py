"""Small models, maps and query bags (with their faults) for the ``vbl evaluate`` tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from bag_fixtures import CAMERA_TOPIC, STORE, T0_NS, LineBag, write_line_bag
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_typestore

from vbl_ros.mapping import MapConfig, build_map
from vbl_ros.model import DescriptorNet, ModelConfig, save_model

NS = 10**9


def small_model(path: Path, size: int = 64) -> Path:
    """The pretrained default architecture at a ``size`` x ``size`` input (fast), saved as a model file."""
    return save_model(DescriptorNet(ModelConfig(input_height=size, input_width=size)), path)


def line_map(bag: LineBag, model: Path, out: Path, spacing_m: float = 5.0) -> Path:
    return build_map(bag.path, out, model=model, config=MapConfig(spacing_m=spacing_m, device="cpu"))


def query_bag(path: Path, *, length_m: float = 40.0, camera_hz: float = 3.0) -> LineBag:
    """The map's street driven again, the camera at another rate (frames between the keyframes)."""
    return write_line_bag(path, length_m=length_m, camera_hz=camera_hz, seed=0)


def rewrite_bag(
    source: Path,
    target: Path,
    *,
    drop: Callable[[str, int], bool] = lambda topic, t: False,
    corrupt: Callable[[int], bool] = lambda t: False,
) -> Path:
    """A copy of ``source`` without the messages ``drop(topic, t_ns)`` refuses, and with the camera
    frames at the times ``corrupt(t_ns)`` accepts replaced by bytes that are not an image."""
    store = get_typestore(STORE)
    with Reader(source) as reader, Writer(target, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        connections = {
            c.id: writer.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections
        }
        for connection, t, raw in reader.messages():
            if drop(connection.topic, t):
                continue
            if connection.topic == CAMERA_TOPIC and corrupt(t):
                msg = store.deserialize_cdr(raw, connection.msgtype)
                msg.data = np.frombuffer(b"not a png" * 10, dtype=np.uint8)
                raw = store.serialize_cdr(msg, connection.msgtype)
            writer.write(connections[connection.id], t, raw)
    return target


def at_s(seconds: float) -> int:
    """The bag time ``seconds`` after the fixtures' start."""
    return T0_NS + round(seconds * NS)
