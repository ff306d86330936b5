"""The node's Fast DDS profile (:mod:`vbl_ros.ros.middleware`): shipped, selected, and checked.

That it makes large frames arrive is shown over real DDS in test_large_frames.py.
"""

from __future__ import annotations

from pathlib import Path

from vbl_ros.ros.middleware import (
    FASTDDS_PROFILE,
    PROFILE_VARIABLE,
    profile_env,
    receive_buffer_bytes,
    socket_buffer_problem,
)
from vbl_ros.ros.process import find_share_file, ros_env

REPO = Path(__file__).resolve().parents[1]


def test_the_packaged_profile_asks_for_a_4_mib_udp_receive_buffer() -> None:
    profile = REPO / FASTDDS_PROFILE
    assert receive_buffer_bytes(profile) == 4 * 1024 * 1024
    text = profile.read_text()
    assert "<useBuiltinTransports>false</useBuiltinTransports>" in text and "<udpv4/>" in text
    assert receive_buffer_bytes(REPO / "config" / "localize.yaml") == 0  # not XML: nothing asked


def test_the_node_gets_the_profile_unless_one_is_set(monkeypatch) -> None:
    monkeypatch.delenv(PROFILE_VARIABLE, raising=False)
    assert ros_env(7)[PROFILE_VARIABLE] == str(find_share_file(FASTDDS_PROFILE))
    assert PROFILE_VARIABLE not in ros_env(7, fastdds_profile=False)
    assert profile_env(Path("/p.xml"), {PROFILE_VARIABLE: "/robot/wide.xml"}) == {}
    assert profile_env(Path("/p.xml"), {PROFILE_VARIABLE: ""}) == {}  # set empty: no profile, as chosen
    monkeypatch.setenv(PROFILE_VARIABLE, "/robot/wide.xml")
    assert ros_env(7)[PROFILE_VARIABLE] == "/robot/wide.xml"


def test_a_receive_buffer_above_the_kernel_limit_is_reported(tmp_path: Path) -> None:
    limit = int(Path("/proc/sys/net/core/rmem_max").read_text())
    big = tmp_path / "big.xml"
    big.write_text(
        '<dds xmlns="http://www.eprosima.com"><profiles><transport_descriptors><transport_descriptor>'
        f"<transport_id>t</transport_id><type>UDPv4</type><receiveBufferSize>{limit + 1}</receiveBufferSize>"
        "</transport_descriptor></transport_descriptors></profiles></dds>"
    )
    problem = socket_buffer_problem({PROFILE_VARIABLE: str(big)})
    assert problem and f"allows {limit} (net.core.rmem_max)" in problem
    assert f"sysctl -w net.core.rmem_max={limit + 1}" in problem
    assert socket_buffer_problem({}) is None
