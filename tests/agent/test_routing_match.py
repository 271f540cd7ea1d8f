"""Pure: when an existing route with the same key is the route asked for."""

from __future__ import annotations

from typing import Any

import pytest

from dranet_netlink_agent.routing import describe_route, metric, route_mismatch


def _route(family: int = 4, **extra: Any) -> dict[str, Any]:
    base = {"family": family, "dst": "", "dst_len": 0, "gateway": "", "prefsrc": "",
            "scope": 0, "table": 254, "priority": None}  # fmt: skip
    return {**base, **extra}


@pytest.mark.parametrize(
    ("asked", "have", "differ"),
    [
        (_route(gateway="192.0.2.1"), _route(gateway="192.0.2.1", oif=7), []),
        (_route(gateway="192.0.2.1"), _route(gateway="10.99.0.1", oif=3), ["device", "gateway"]),
        (_route(gateway="192.0.2.1"), _route(gateway="192.0.2.1", oif=3), ["device"]),
        (_route(), _route(gateway="192.0.2.1", oif=7), ["gateway"]),
        # An unset source or IPv4 scope accepts what the kernel chose.
        (_route(), _route(prefsrc="192.0.2.2", scope=253, oif=7), []),
        (_route(prefsrc="192.0.2.3"), _route(prefsrc="192.0.2.2", oif=7), ["source"]),
        (_route(scope=253), _route(scope=0, gateway="", oif=7), ["scope"]),
        # IPv6: addresses compared as addresses; a scope asked for is not reported back.
        (_route(6, gateway="fd00::0001", scope=253), _route(6, gateway="fd00::1", oif=7), []),
        (_route(6, gateway="fd00::1"), _route(6, gateway="fd00::1", oif=None), ["device"]),
    ],
)
def test_route_mismatch(asked: dict[str, Any], have: dict[str, Any], differ: list[str]) -> None:
    assert route_mismatch(asked, 7, have) == differ


def test_metric_is_what_the_kernel_keys_on() -> None:
    assert metric(_route(4)) == 0
    assert metric(_route(6)) == 1024
    assert metric(_route(6, priority=5)) == 5


def test_describe_route_reads_like_ip_route() -> None:
    assert describe_route(_route(gateway="192.0.2.1"), "net1") == "via 192.0.2.1 dev net1"
    assert describe_route(_route(prefsrc="192.0.2.2", scope=253), "eth0") == (
        "dev eth0 src 192.0.2.2 scope 253"
    )
