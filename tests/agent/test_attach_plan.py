"""Pure planning of an attach: routes, rules, sysctls, ethtool names, restore order."""

from __future__ import annotations

from pathlib import Path
from socket import AF_INET, AF_INET6
from typing import Any

import pytest

from dranet.netconfig import parse_config
from dranet_netlink_agent.configure import pod_addresses, sysctl_values, write_sysctls
from dranet_netlink_agent.ethtool import resolve_features
from dranet_netlink_agent.hoststate import diff, link_values, restore_order
from dranet_netlink_agent.routing import plan_routes, plan_rules


def _host_route(dst: str, dst_len: int, gateway: str = "", **extra: Any) -> dict[str, Any]:
    return {"family": 4, "dst": dst, "dst_len": dst_len, "gateway": gateway, "prefsrc": "",
            "scope": 0, "table": 254, "proto": 3, "type": 1, "priority": None, **extra}  # fmt: skip


def test_routes_link_scope_first_then_gateways_with_tables() -> None:
    cfg = parse_config(
        {
            "interface": {"addresses": ["10.0.0.2/24"]},
            "routes": [
                {"destination": "10.9.0.0/16", "gateway": "10.1.0.1"},
                {"destination": "10.1.0.1/32", "scope": 253},
                {"destination": "0.0.0.0/0", "gateway": "10.0.0.1", "table": 7},
            ],
        }
    )
    planned = plan_routes(cfg, [], ["10.0.0.2/24"])
    assert [(r["dst"], r["dst_len"], r["gateway"], r["table"]) for r in planned] == [
        ("10.1.0.1", 32, "", 254),
        ("10.9.0.0", 16, "10.1.0.1", 254),
        ("", 0, "10.0.0.1", 7),
    ]


def test_host_routes_are_carried_unless_configured_or_unreachable() -> None:
    cfg = parse_config({"routes": [{"destination": "10.50.0.0/16", "gateway": "10.0.0.254"}]})
    host = [
        _host_route("10.50.0.0", 16, "10.0.0.1"),  # same destination+table as configured
        _host_route("10.60.0.0", 16, "10.0.0.1", prefsrc="10.0.0.9"),  # prefsrc not on pod
        _host_route("10.70.0.0", 16, "172.16.0.1"),  # gateway unreachable from the pod
        _host_route("10.80.0.0", 16, "10.0.0.1", table=42),
    ]
    planned = plan_routes(cfg, host, ["10.0.0.2/24"])
    got = {(r["dst"], r["gateway"], r["prefsrc"], r["table"]) for r in planned}
    assert got == {
        ("10.50.0.0", "10.0.0.254", "", 254),
        ("10.60.0.0", "10.0.0.1", "", 254),
        ("10.80.0.0", "10.0.0.1", "", 42),
    }


def test_a_vrf_puts_every_route_in_its_table_and_drops_rules() -> None:
    cfg = parse_config(
        {
            "interface": {"addresses": ["10.0.0.2/24"], "vrf": {"name": "red"}},
            "routes": [{"destination": "10.9.0.0/16", "gateway": "10.0.0.1", "table": 5}],
        }
    )
    table = cfg.interface.vrf.table  # type: ignore[union-attr]
    assert 1000 <= table < 2000
    assert [r["table"] for r in plan_routes(cfg, [_host_route("10.8.0.0", 16)], [])] == [
        table,
        table,
    ]
    assert plan_rules(cfg) == []
    assert sysctl_values(cfg, "net1") == {
        "ipv4/tcp_l3mdev_accept": "1",
        "ipv4/udp_l3mdev_accept": "1",
    }


def test_rules_carry_family_and_prefixes() -> None:
    cfg = parse_config(
        {
            "rules": [
                {"priority": 100, "source": "10.0.0.0/24", "table": 10},
                {"destination": "fd00::/64", "table": 11},
            ]
        }
    )
    assert plan_rules(cfg) == [
        {"table": 10, "family": AF_INET, "priority": 100, "src": "10.0.0.0", "src_len": 24},
        {"table": 11, "family": AF_INET6, "dst": "fd00::", "dst_len": 64},
    ]


def test_sysctls_for_forwarding_and_arp() -> None:
    cfg = parse_config({"interface": {"forwarding": False, "arpIgnore": 8, "arpAnnounce": 1}})
    assert sysctl_values(cfg, "net.1") == {
        "ipv4/conf/net.1/forwarding": "0",
        "ipv6/conf/net.1/forwarding": "0",
        "ipv4/conf/net.1/arp_ignore": "8",
        "ipv4/conf/net.1/arp_announce": "1",
    }
    assert sysctl_values(parse_config({}), "net1") == {}


def test_pod_addresses_default_to_the_hosts_global_ones() -> None:
    original = {
        "addresses": [
            {"address": "10.0.0.2", "prefixlen": 24, "family": 4, "scope": 0},
            {"address": "10.0.0.3", "prefixlen": 32, "family": 4, "scope": 253},
            {"address": "fd00::2", "prefixlen": 64, "family": 6, "scope": 0},
        ]
    }
    assert pod_addresses(parse_config({}), original) == ["10.0.0.2/24", "fd00::2/64"]
    cfg = parse_config({"interface": {"addresses": ["192.168.1.2/24"]}})
    assert pod_addresses(cfg, original) == ["192.168.1.2/24"]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ({"rx-gro-list": True}, {"rx-gro-list": True}),
        ({"gro": False}, {"rx-gro": False}),
        ({"tx": False}, {"tx-checksum-ipv4": False, "tx-checksum-ip-generic": False}),
        ({"tso": True}, {"tx-tcp-segmentation": True, "tx-tcp6-segmentation": True}),
    ],
)
def test_feature_names_and_legacy_aliases(
    requested: dict[str, bool], expected: dict[str, bool]
) -> None:
    available = ["rx-gro", "rx-gro-list", "tx-checksum-ipv4", "tx-checksum-ip-generic",
                 "tx-tcp-segmentation", "tx-tcp6-segmentation", "rx-checksum"]  # fmt: skip
    assert resolve_features(requested, available) == expected


def test_unknown_features_are_named() -> None:
    with pytest.raises(ValueError, match="bogus, nope"):
        resolve_features({"nope": True, "bogus": False, "rx-gro": True}, ["rx-gro"])


def test_restore_order_and_diff() -> None:
    v4a = {"address": "10.0.0.2", "prefixlen": 24, "family": 4}
    v4b = {"address": "10.0.0.3", "prefixlen": 24, "family": 4}
    v6a = {"address": "fd00::3", "prefixlen": 64, "family": 6}
    v6b = {"address": "fd00::2", "prefixlen": 64, "family": 6}
    # IPv6 is listed newest first: re-add in reverse to get the same listing.
    assert restore_order([v6a, v4a, v6b, v4b]) == [v4a, v4b, v6b, v6a]
    state = {"ifname": "eth1", "mtu": 1500, "addresses": [v4a], "alias": ""}
    assert diff(state, dict(state)) == []
    changed = {**state, "mtu": 9000, "addresses": [v4b]}
    problems = diff(state, changed)
    assert problems[0] == "mtu: 1500 -> 9000" and problems[1].startswith("addresses:")
    assert "alias" not in link_values(state)  # an empty alias is not written back


def test_host_rules_follow_configured_ones_without_duplicates() -> None:
    cfg = parse_config({"rules": [{"priority": 100, "source": "10.0.0.0/24", "table": 10}]})
    configured = plan_rules(cfg)[0]
    host = [dict(configured), {"table": 42, "family": AF_INET, "priority": 500}]
    assert plan_rules(cfg, host) == [configured, host[1]]
    vrf = parse_config({"interface": {"vrf": {"name": "red"}}})
    assert plan_rules(vrf, host) == []


def test_sysctls_are_written_under_the_configured_root(tmp_path: Path) -> None:
    """The DaemonSet points the agent at the host's /proc/sys/net mounted elsewhere."""
    conf = tmp_path / "net/ipv4/conf/net1"
    conf.mkdir(parents=True)
    for name in ("arp_ignore", "forwarding"):
        (conf / name).write_text("0")
    write_sysctls(
        {"ipv4/conf/net1/arp_ignore": "2", "ipv4/conf/net1/forwarding": "1"}, str(tmp_path)
    )
    assert (conf / "arp_ignore").read_text() == "2"
    assert (conf / "forwarding").read_text() == "1"
