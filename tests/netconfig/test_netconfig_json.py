"""VRF table defaults, canonical JSON output and merging of several opaque configs."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import pytest

from dranet.netconfig import (
    EthtoolConfig,
    InterfaceConfig,
    NeighborConfig,
    NetworkConfig,
    RouteConfig,
    RuleConfig,
    VRFConfig,
    merge_configs,
    parse_config,
    to_json,
    vrf_table_for,
)


def fnv1a_32(data: bytes) -> int:
    """FNV-1a, 32 bit, written from the published definition (draft-eastlake-fnv)."""
    return functools.reduce(lambda h, b: ((h ^ b) * 16777619) % 2**32, data, 2166136261)


def test_independent_fnv_matches_published_vectors() -> None:
    # Test vectors from the FNV reference suite.
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


@pytest.mark.parametrize("name", ["blue", "red", "vrf-a", "v", "é-vrf", "a" * 15])
def test_vrf_default_table_is_fnv32a_mod_1000_plus_1000(name: str) -> None:
    expected = fnv1a_32(name.encode()) % 1000 + 1000
    assert vrf_table_for(name) == expected
    assert 1000 <= expected <= 1999
    cfg = parse_config({"interface": {"vrf": {"name": name}}})
    assert cfg.interface.vrf == VRFConfig(name=name, table=expected)


def test_vrf_default_is_stable_and_shared_by_name() -> None:
    one = parse_config('{"interface": {"name": "a", "vrf": {"name": "blue"}}}')
    two = parse_config('{"interface": {"name": "b", "vrf": {"name": "blue"}}}')
    assert one.interface.vrf == two.interface.vrf
    # An explicit table is kept even when it differs from the default.
    other = 1000 if vrf_table_for("blue") != 1000 else 1001
    kept = parse_config({"interface": {"vrf": {"name": "blue", "table": other}}})
    assert kept.interface.vrf == VRFConfig("blue", other)


FULL = NetworkConfig(
    interface=InterfaceConfig(
        name="net1",
        addresses=("10.0.0.2/24",),
        mtu=1400,
        hardware_addr="02:00:5e:00:53:01",
        gso_max_size=65536,
        gro_max_size=65536,
        gso_ipv4_max_size=65536,
        gro_ipv4_max_size=65536,
        disable_ebpf_programs=True,
        forwarding=False,
        arp_ignore=8,
        arp_announce=0,
        vrf=VRFConfig("blue", 7),
    ),
    routes=(
        RouteConfig("0.0.0.0/0", gateway="10.0.0.1", source="10.0.0.2", table=7),
        RouteConfig("10.9.0.0/16", scope=253),
    ),
    neighbors=(NeighborConfig("10.0.0.1", "02:00:5e:00:53:02"),),
    ethtool=EthtoolConfig(features={"tso": False}),
)


def test_to_json_is_canonical_camel_case() -> None:
    assert to_json(FULL) == {
        "interface": {
            "name": "net1",
            "addresses": ["10.0.0.2/24"],
            "mtu": 1400,
            "hardwareAddr": "02:00:5e:00:53:01",
            "gsoMaxSize": 65536,
            "groMaxSize": 65536,
            "gsoIPv4MaxSize": 65536,
            "groIPv4MaxSize": 65536,
            "disableEbpfPrograms": True,
            "forwarding": False,
            "arpIgnore": 8,
            "arpAnnounce": 0,
            "vrf": {"name": "blue", "table": 7},
        },
        "routes": [
            {"destination": "0.0.0.0/0", "gateway": "10.0.0.1", "source": "10.0.0.2", "table": 7},
            {"destination": "10.9.0.0/16", "scope": 253},
        ],
        "neighbors": [{"destination": "10.0.0.1", "hardwareAddr": "02:00:5e:00:53:02"}],
        "ethtool": {"features": {"tso": False}},
    }
    assert to_json(NetworkConfig()) == {"interface": {}}
    rules = NetworkConfig(rules=(RuleConfig(priority=5, destination="10.0.0.0/8"),))
    assert to_json(rules)["rules"] == [{"priority": 5, "destination": "10.0.0.0/8"}]


@pytest.mark.parametrize(
    "cfg",
    [
        NetworkConfig(),
        FULL,
        NetworkConfig(rules=(RuleConfig(), RuleConfig(10, "10.0.0.0/8", "10.1.0.0/16", 3))),
        NetworkConfig(ethtool=EthtoolConfig()),
        NetworkConfig(interface=InterfaceConfig(dhcp=True, forwarding=True)),
    ],
)
def test_to_json_round_trips(cfg: NetworkConfig) -> None:
    doc = to_json(cfg)
    assert parse_config(doc) == cfg
    text = json.dumps(doc)
    assert parse_config(text) == cfg
    assert to_json(parse_config(text)) == doc


def test_parsed_configs_are_immutable_and_hashable() -> None:
    cfg = parse_config(to_json(FULL))
    assert hash(cfg) == hash(FULL)
    assert {cfg, FULL} == {FULL}
    assert cfg.ethtool is not None
    with pytest.raises(TypeError):
        cfg.ethtool.features["tso"] = True  # type: ignore[index]


# --- merge_configs ---------------------------------------------------------------------


def test_merge_applies_configs_in_order_later_wins() -> None:
    device_class = {"interface": {"mtu": 9000, "name": "net1"}, "profile": ""}
    claim = {"interface": {"mtu": 1500}}
    merged = merge_configs([device_class, claim])
    assert merged == {"interface": {"mtu": 1500, "name": "net1"}, "profile": ""}
    assert merge_configs([claim, device_class])["interface"]["mtu"] == 9000


def test_merge_recurses_into_objects() -> None:
    a = {"interface": {"vrf": {"name": "blue"}}, "ethtool": {"features": {"tso": True}}}
    b = {"interface": {"vrf": {"table": 7}}, "ethtool": {"features": {"gro": False}}}
    assert merge_configs([a, b]) == {
        "interface": {"vrf": {"name": "blue", "table": 7}},
        "ethtool": {"features": {"tso": True, "gro": False}},
    }


def test_merge_replaces_lists_and_scalars_whole() -> None:
    a = {"interface": {"addresses": ["10.0.0.1/8", "10.0.0.2/8"]}, "routes": [{"a": 1}]}
    b = {"interface": {"addresses": ["10.0.0.3/8"]}, "routes": []}
    assert merge_configs([a, b]) == {"interface": {"addresses": ["10.0.0.3/8"]}, "routes": []}
    # An object replaced by a scalar and back again: the later value wins whole.
    assert merge_configs([{"x": {"y": 1}}, {"x": 2}]) == {"x": 2}
    assert merge_configs([{"x": 2}, {"x": {"y": 1}}]) == {"x": {"y": 1}}


def test_merge_with_null_unsets_a_field() -> None:
    merged = merge_configs([{"interface": {"mtu": 9000}}, {"interface": {"mtu": None}}])
    assert merged == {"interface": {"mtu": None}}
    assert parse_config(merged).interface.mtu is None


def test_merge_of_nothing_is_the_empty_config() -> None:
    assert merge_configs([]) == {}
    assert parse_config(merge_configs([])) == NetworkConfig()


def test_merge_does_not_modify_or_alias_its_inputs() -> None:
    a: dict[str, Any] = {"interface": {"addresses": ["10.0.0.1/8"], "vrf": {"name": "v"}}}
    b: dict[str, Any] = {"interface": {"mtu": 1500}, "routes": [{"destination": "x"}]}
    before = copy.deepcopy((a, b))
    merged = merge_configs([a, b])
    assert (a, b) == before
    merged["interface"]["addresses"].append("10.0.0.9/8")
    merged["interface"]["vrf"]["name"] = "changed"
    merged["routes"][0]["destination"] = "changed"
    assert (a, b) == before


def test_merged_class_and_claim_configs_parse() -> None:
    device_class = {"interface": {"mtu": 9000, "arpIgnore": 1}, "ethtool": {"features": {}}}
    claim = {"interface": {"name": "net1", "addresses": ["10.0.0.5/24"]}}
    cfg = parse_config(merge_configs([device_class, claim]))
    assert cfg.interface == InterfaceConfig(
        name="net1", addresses=("10.0.0.5/24",), mtu=9000, arp_ignore=1
    )
    assert cfg.ethtool == EthtoolConfig()
