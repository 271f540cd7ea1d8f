"""Every field of dranet's claim configuration, valid and invalid (dranet.md §2.1-§2.2)."""

from __future__ import annotations

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
    parse_config,
)

from .netconfig_support import iface, parse_both, problems


def test_empty_object_is_the_default_config() -> None:
    assert parse_both({}) == NetworkConfig()
    assert parse_both({"interface": {}}) == NetworkConfig()


@pytest.mark.parametrize("raw", ["", b"", "null", b"null", None])
def test_no_configuration_is_the_default_config(raw: Any) -> None:
    # dranet: an empty RawExtension is "no config"; JSON null decodes to the zero struct.
    assert parse_config(raw) == NetworkConfig()


def test_a_full_valid_config_parses_into_every_field() -> None:
    doc = {
        "interface": {
            "name": "net1",
            "addresses": ["192.0.2.10/24", "2001:db8::10/64"],
            "mtu": 9000,
            "hardwareAddr": "02:00:5E:00:53:01",
            "gsoMaxSize": 65536,
            "groMaxSize": 65536,
            "gsoIPv4MaxSize": 65536,
            "groIPv4MaxSize": 65536,
            "disableEbpfPrograms": True,
            "forwarding": True,
            "arpIgnore": 1,
            "arpAnnounce": 2,
        },
        "routes": [
            {"destination": "0.0.0.0/0", "gateway": "192.0.2.1", "source": "192.0.2.10"},
            {"destination": "198.51.100.0/24", "scope": 253, "table": 100},
        ],
        "rules": [{"priority": 100, "source": "192.0.2.0/24", "table": 100}],
        "neighbors": [{"destination": "192.0.2.1", "hardwareAddr": "02-00-5e-00-53-02"}],
        "ethtool": {"features": {"tso": False, "rx-checksum": True}, "privateFlags": {"x": True}},
    }
    cfg = parse_both(doc)
    assert cfg.interface == InterfaceConfig(
        name="net1",
        addresses=("192.0.2.10/24", "2001:db8::10/64"),
        mtu=9000,
        hardware_addr="02:00:5e:00:53:01",
        gso_max_size=65536,
        gro_max_size=65536,
        gso_ipv4_max_size=65536,
        gro_ipv4_max_size=65536,
        disable_ebpf_programs=True,
        forwarding=True,
        arp_ignore=1,
        arp_announce=2,
    )
    assert cfg.routes == (
        RouteConfig(destination="0.0.0.0/0", gateway="192.0.2.1", source="192.0.2.10"),
        RouteConfig(destination="198.51.100.0/24", scope=253, table=100),
    )
    assert cfg.rules == (RuleConfig(priority=100, source="192.0.2.0/24", table=100),)
    assert cfg.neighbors == (NeighborConfig("192.0.2.1", "02:00:5e:00:53:02"),)
    assert cfg.ethtool == EthtoolConfig(
        features={"tso": False, "rx-checksum": True}, private_flags={"x": True}
    )
    assert cfg.profile == ""


# --- interface.name -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "net1", "eth0", "a" * 15, "eth-0_1.2", "é" * 7, "日本", "x.", "..a"]
)
def test_valid_interface_names(name: str) -> None:
    assert parse_both(iface(name=name)).interface.name == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("a" * 16, "is 16 bytes; at most 15 are allowed"),
        ("é" * 8, "is 16 bytes; at most 15 are allowed"),  # bytes, not characters
        ("a/b", 'contains "/"'),
        ("a b", "contains whitespace"),
        ("a\tb", "contains whitespace"),
        ("a\u00a0b", "contains whitespace"),
        (".", "is not allowed as a name"),
        ("..", "is not allowed as a name"),
        ("a:b", 'contains invalid character ":"'),
        ("a@b", 'contains invalid character "@"'),
        ("a\u0000", 'contains invalid character "\\u0000"'),
        ("x²", 'contains invalid character "\\u00b2"'),  # No, not Nd: Go's IsDigit says no
        ("lo", "loopback device every pod network namespace already has"),
    ],
)
def test_invalid_interface_names(name: str, fragment: str) -> None:
    found = problems(iface(name=name))
    assert len(found) == 1, found
    assert found[0].startswith("interface.name: ")
    assert fragment in found[0]
    assert "use only letters, digits" in found[0] or name == "lo" or "bytes" in fragment


# --- interface.addresses and dhcp -----------------------------------------------------


@pytest.mark.parametrize(
    "addr", ["192.0.2.10/24", "10.0.0.0/0", "10.0.0.1/32", "2001:db8::1/128", "::ffff:1.2.3.4/96"]
)
def test_valid_addresses(addr: str) -> None:
    assert parse_both(iface(addresses=[addr])).interface.addresses == (addr,)


@pytest.mark.parametrize(
    "addr",
    [
        "192.0.2.10",  # bare IP: netip.ParsePrefix needs a slash
        "192.0.2.10/33",
        "2001:db8::1/129",
        "192.0.2.10/024",  # ParsePrefix rejects leading zeros in the bits
        "192.0.2.10/+24",
        "192.0.2.10/",
        "192.0.2.010/24",  # leading zero in an octet
        "fe80::1%eth0/64",  # zones are not allowed in a prefix
        "192.0.2.10/255.255.255.0",
        "",
        "host/24",
    ],
)
def test_invalid_addresses(addr: str) -> None:
    found = problems(iface(addresses=["10.0.0.1/8", addr]))
    assert len(found) == 1, found
    assert found[0].startswith("interface.addresses[1]: ")
    assert "is not an address with prefix length" in found[0]


def test_dhcp_alone_is_valid_and_excludes_addresses() -> None:
    assert parse_both(iface(dhcp=True)).interface.dhcp is True
    assert parse_both(iface(dhcp=False, addresses=["10.0.0.1/8"])).interface.dhcp is False
    found = problems(iface(dhcp=True, addresses=["10.0.0.1/8"]))
    assert found == [
        "interface.dhcp: true cannot be combined with interface.addresses; "
        "use either DHCP or static addresses"
    ]


# --- numeric interface fields --------------------------------------------------------


@pytest.mark.parametrize("mtu", [68, 1500, 9000, 2**31 - 1])
def test_valid_mtu(mtu: int) -> None:
    assert parse_both(iface(mtu=mtu)).interface.mtu == mtu


@pytest.mark.parametrize("mtu", [67, 40, 0, -1, -(2**31)])
def test_mtu_below_minimum(mtu: int) -> None:
    assert problems(iface(mtu=mtu)) == [f"interface.mtu: {mtu} is below the minimum 68"]


@pytest.mark.parametrize(
    "key", ["mtu", "gsoMaxSize", "groMaxSize", "gsoIPv4MaxSize", "groIPv4MaxSize", "arpIgnore"]
)
@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 2**63])
def test_int32_fields_reject_values_outside_int32(key: str, value: int) -> None:
    found = problems(iface(**{key: value}))
    assert found == [
        f"interface.{key}: {value} is out of range for int32 (-2147483648..2147483647)"
    ]


@pytest.mark.parametrize("key", ["gsoMaxSize", "groMaxSize", "gsoIPv4MaxSize", "groIPv4MaxSize"])
def test_gso_gro_sizes_must_be_positive(key: str) -> None:
    attr = {"gsoMaxSize": "gso_max_size", "groMaxSize": "gro_max_size"}.get(
        key, key.replace("IPv4MaxSize", "_ipv4_max_size")
    )
    assert getattr(parse_both(iface(**{key: 1})).interface, attr) == 1
    assert getattr(parse_both(iface(**{key: 524280})).interface, attr) == 524280
    for bad in (0, -5):
        assert problems(iface(**{key: bad})) == [f"interface.{key}: {bad} is below the minimum 1"]


@pytest.mark.parametrize("value", [0, 1, 2, 3, 8])
def test_valid_arp_ignore(value: int) -> None:
    assert parse_both(iface(arpIgnore=value)).interface.arp_ignore == value


@pytest.mark.parametrize("value", [-1, 4, 5, 7, 9, 255])
def test_invalid_arp_ignore(value: int) -> None:
    assert problems(iface(arpIgnore=value)) == [
        f"interface.arpIgnore: {value} is not one of 0, 1, 2, 3, 8"
    ]


@pytest.mark.parametrize("value", [0, 1, 2])
def test_valid_arp_announce(value: int) -> None:
    assert parse_both(iface(arpAnnounce=value)).interface.arp_announce == value


@pytest.mark.parametrize("value", [-1, 3, 8])
def test_invalid_arp_announce(value: int) -> None:
    assert problems(iface(arpAnnounce=value)) == [
        f"interface.arpAnnounce: {value} is not one of 0, 1, 2"
    ]


# --- booleans -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "attr"),
    [("dhcp", "dhcp"), ("disableEbpfPrograms", "disable_ebpf_programs"), ("forwarding", None)],
)
def test_boolean_fields(key: str, attr: str | None) -> None:
    if attr is None:  # forwarding keeps "unset" distinct from false
        assert parse_both(iface()).interface.forwarding is None
        assert parse_both(iface(forwarding=False)).interface.forwarding is False
        assert parse_both(iface(forwarding=True)).interface.forwarding is True
    else:
        assert getattr(parse_both(iface(**{key: True})).interface, attr) is True
        assert getattr(parse_both(iface(**{key: False})).interface, attr) is False
    for bad, shown in ((1, "number 1"), ("true", 'string "true"'), ([], "an array")):
        assert problems(iface(**{key: bad})) == [
            f"interface.{key}: expected true or false, got {shown}"
        ]


# --- MAC addresses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("02:00:5e:00:53:01", "02:00:5e:00:53:01"),
        ("02:00:5E:00:53:0A", "02:00:5e:00:53:0a"),
        ("02-00-5e-00-53-01", "02:00:5e:00:53:01"),
        ("0200.5e00.5301", "02:00:5e:00:53:01"),
        ("02:00:5e:10:00:00:00:01", "02:00:5e:10:00:00:00:01"),  # EUI-64
        ("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", None),  # IPoIB
        ("0000.0000.fe80.0000.0000.0000.0200.5e10.0000.0001", None),
    ],
)
def test_valid_mac_addresses_are_normalised(given: str, canonical: str | None) -> None:
    cfg = parse_both(
        {
            "interface": {"hardwareAddr": given},
            "neighbors": [{"destination": "10.0.0.1", "hardwareAddr": given}],
        }
    )
    mac = cfg.interface.hardware_addr
    assert mac is not None
    if canonical is not None:
        assert mac == canonical
    # Canonical form: lower-case octets joined by ":", same bytes as given.
    assert mac == mac.lower()
    octets = mac.split(":")
    assert all(len(o) == 2 for o in octets)
    assert bytes.fromhex("".join(octets)) == bytes.fromhex(
        given.replace(":", "").replace("-", "").replace(".", "")
    )
    assert cfg.neighbors[0].hardware_addr == mac


@pytest.mark.parametrize(
    "mac",
    [
        "",
        "02:00:5e:00:53",
        "02:00:5e:00:53:01:02",  # 7 octets
        "02:00-5e:00:53:01",  # mixed separators
        "02:00:5e:00:53:0g",
        "0200.5e00.53",
        "02005e005301",
        "02:00:5e:00:53:01 ",
        " 02:00:5e:00:53:01",
        "2:00:5e:00:53:01",
    ],
)
def test_invalid_mac_addresses(mac: str) -> None:
    found = problems(iface(hardwareAddr=mac))
    assert len(found) == 1, found
    assert found[0].startswith("interface.hardwareAddr: ")
    assert "is not a MAC address (e.g. 02:00:5e:00:53:01)" in found[0]


# --- VRF ---------------------------------------------------------------------------


def test_vrf_with_explicit_table() -> None:
    cfg = parse_both(iface(name="net1", vrf={"name": "blue", "table": 42}))
    assert cfg.interface.vrf == VRFConfig(name="blue", table=42)


@pytest.mark.parametrize(
    ("vrf", "expected"),
    [
        ({"table": 10}, ["interface.vrf.name: required: the name of the VRF device"]),
        ({"name": ""}, ["interface.vrf.name: required"]),
        ({"name": "blue", "table": 0}, ["interface.vrf.table: 0 is below the minimum 1"]),
        ({"name": "blue", "table": -3}, ["interface.vrf.table: -3 is below the minimum 1"]),
        ({"name": "blue", "table": 253}, ["interface.vrf.table: 253 is the reserved 'default'"]),
        ({"name": "blue", "table": 254}, ["interface.vrf.table: 254 is the reserved 'main'"]),
        ({"name": "blue", "table": 255}, ["interface.vrf.table: 255 is the reserved 'local'"]),
        ({"name": "blue", "table": 2**32}, ["interface.vrf.table: 4294967296 is above the max"]),
        ({"name": "lo"}, ['interface.vrf.name: "lo" is the loopback device']),
        ({"name": "a" * 16}, ["interface.vrf.name: " + '"' + "a" * 16 + '" is 16 bytes']),
        ({"name": "net1"}, ['interface.vrf.name: "net1" is the interface\'s own name']),
    ],
)
def test_invalid_vrf(vrf: dict[str, Any], expected: list[str]) -> None:
    found = problems(iface(name="net1", vrf=vrf))
    assert len(found) == len(expected), found
    for got, prefix in zip(found, expected, strict=True):
        assert got.startswith(prefix), got


def test_rules_are_rejected_with_a_vrf() -> None:
    doc = {"interface": {"vrf": {"name": "blue"}}, "rules": [{"priority": 10, "table": 5}]}
    assert problems(doc) == [
        "rules: not allowed together with interface.vrf (routing uses the VRF's own table); "
        "remove the rules or the vrf"
    ]
    assert parse_both({"interface": {"vrf": {"name": "blue"}}}).rules == ()


# --- routes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "route",
    [
        {"destination": "0.0.0.0/0", "gateway": "192.0.2.1"},
        {"destination": "10.1.2.3/32", "scope": 253},
        {"destination": "2001:db8::/32", "gateway": "fe80::1", "source": "2001:db8::5"},
        {"destination": "10.0.0.0/008", "gateway": "10.0.0.1"},  # net.ParseCIDR allows 0s
        {"destination": "::ffff:10.0.0.0/104", "gateway": "10.0.0.1"},  # To4() family
        {"destination": "10.0.0.0/8", "scope": 253, "gateway": "10.0.0.1", "table": 2**32 - 1},
    ],
)
def test_valid_routes(route: dict[str, Any]) -> None:
    cfg = parse_both({"routes": [route]})
    got = cfg.routes[0]
    assert got.destination == route["destination"]
    assert got.gateway == route.get("gateway", "")
    assert got.scope == route.get("scope", 0)
    assert got.table == route.get("table", 0)


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ({"gateway": "10.0.0.1"}, ["routes[0].destination: required: a CIDR"]),
        ({"destination": "10.0.0.1", "gateway": "10.0.0.1"}, ["routes[0].destination: "
                                                              '"10.0.0.1" is not a CIDR']),
        ({"destination": "10.0.0.0/8"}, ["routes[0].gateway: required when scope is 0 "
                                         "(universe)"]),
        ({"destination": "10.0.0.0/8", "scope": 200}, ["routes[0].scope: 200 is not one of "
                                                       "0 (universe), 253 (link)"]),
        ({"destination": "10.0.0.0/8", "scope": 254, "gateway": "10.0.0.1"},
         ["routes[0].scope: 254 is not one of 0 (universe), 253 (link)"]),
        ({"destination": "10.0.0.0/8", "gateway": "10.0.0.256"},
         ['routes[0].gateway: "10.0.0.256" is not an IP address']),
        ({"destination": "10.0.0.0/8", "gateway": "fe80::1%eth0"},
         ['routes[0].gateway: "fe80::1%eth0" is not an IP address']),
        ({"destination": "10.0.0.0/8", "gateway": "2001:db8::1"},
         ['routes[0].gateway: "2001:db8::1" is IPv6 but destination "10.0.0.0/8" is IPv4']),
        ({"destination": "2001:db8::/32", "scope": 253, "source": "10.0.0.1"},
         ['routes[0].source: "10.0.0.1" is IPv4 but destination "2001:db8::/32" is IPv6']),
        ({"destination": "10.0.0.0/8", "gateway": "10.0.0.1", "source": "x"},
         ['routes[0].source: "x" is not an IP address']),
        ({"destination": "10.0.0.0/8", "gateway": "10.0.0.1", "table": -1},
         ["routes[0].table: -1 is below the minimum 0"]),
        ({"destination": "10.0.0.0/8", "gateway": "10.0.0.1", "table": 2**32},
         ["routes[0].table: 4294967296 is above the maximum 4294967295"]),
    ],
)  # fmt: skip
def test_invalid_routes(route: dict[str, Any], expected: list[str]) -> None:
    found = problems({"routes": [route]})
    assert len(found) == len(expected), found
    for got, prefix in zip(found, expected, strict=True):
        assert got.startswith(prefix), got


# --- rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        {},
        {"priority": 0, "table": 100},
        {"priority": 32767, "source": "10.0.0.0/8", "destination": "192.0.2.0/24"},
        {"source": "2001:db8::/32", "destination": "2001:db8:1::/48", "table": 2**32 - 1},
    ],
)
def test_valid_rules(rule: dict[str, Any]) -> None:
    got = parse_both({"rules": [rule]}).rules[0]
    assert got == RuleConfig(
        priority=rule.get("priority", 0),
        source=rule.get("source", ""),
        destination=rule.get("destination", ""),
        table=rule.get("table", 0),
    )


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"priority": -1}, ["rules[0].priority: -1 is not between 0 and 32767"]),
        ({"priority": 32768}, ["rules[0].priority: 32768 is not between 0 and 32767"]),
        ({"table": -2}, ["rules[0].table: -2 is below the minimum 0"]),
        ({"source": "10.0.0.1"}, ['rules[0].source: "10.0.0.1" is not a CIDR']),
        ({"destination": "nope/8"}, ['rules[0].destination: "nope/8" is not a CIDR']),
        ({"source": "10.0.0.0/8", "destination": "2001:db8::/32"},
         ['rules[0]: source "10.0.0.0/8" is IPv4 but destination "2001:db8::/32" is IPv6']),
    ],
)  # fmt: skip
def test_invalid_rules(rule: dict[str, Any], expected: list[str]) -> None:
    found = problems({"rules": [rule]})
    assert len(found) == len(expected), found
    for got, prefix in zip(found, expected, strict=True):
        assert got.startswith(prefix), got


# --- neighbors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("neighbor", "expected"),
    [
        ({"hardwareAddr": "02:00:5e:00:53:01"}, ["neighbors[0].destination: required"]),
        ({"destination": "10.0.0.1"}, ["neighbors[0].hardwareAddr: required"]),
        ({"destination": "10.0.0.0/8", "hardwareAddr": "02:00:5e:00:53:01"},
         ['neighbors[0].destination: "10.0.0.0/8" is not an IP address']),
        ({"destination": "10.0.0.1", "hardwareAddr": "zz"},
         ['neighbors[0].hardwareAddr: "zz" is not a MAC address']),
        ({}, ["neighbors[0].destination: required", "neighbors[0].hardwareAddr: required"]),
    ],
)  # fmt: skip
def test_invalid_neighbors(neighbor: dict[str, Any], expected: list[str]) -> None:
    found = problems({"neighbors": [neighbor]})
    assert len(found) == len(expected), found
    for got, prefix in zip(found, expected, strict=True):
        assert got.startswith(prefix), got


def test_valid_ipv6_neighbor() -> None:
    cfg = parse_both({"neighbors": [{"destination": "fe80::1", "hardwareAddr": "0200.5e00.5301"}]})
    assert cfg.neighbors == (NeighborConfig("fe80::1", "02:00:5e:00:53:01"),)


# --- ethtool and profile -------------------------------------------------------------


def test_ethtool_maps() -> None:
    assert parse_both({"ethtool": {}}).ethtool == EthtoolConfig()
    cfg = parse_both({"ethtool": {"features": {"rx-gro-hw": True}}})
    assert cfg.ethtool is not None
    assert dict(cfg.ethtool.features) == {"rx-gro-hw": True}
    assert dict(cfg.ethtool.private_flags) == {}
    assert problems({"ethtool": {"features": {"tso": "on", "": True}}}) == [
        'ethtool.features.tso: expected true or false, got string "on"',
        'ethtool.features[""]: names cannot be empty',
    ]
    # Go would read null as false; a missing state is rejected instead.
    assert problems({"ethtool": {"privateFlags": {"x": None}}}) == [
        "ethtool.privateFlags.x: expected true or false, got null"
    ]


def test_a_profile_is_refused_because_there_is_no_provider() -> None:
    assert parse_both({"profile": ""}).profile == ""
    found = problems({"profile": "fast-ipam"})
    assert len(found) == 1
    assert found[0].startswith('profile: "fast-ipam" needs a dynamic profile provider')
    assert "which this driver does not have" in found[0]
