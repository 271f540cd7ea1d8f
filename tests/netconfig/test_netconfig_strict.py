"""Strict parsing like Go's UnmarshalStrict: unknown fields, duplicate keys, wrong types."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dranet.errors import ConfigError
from dranet.netconfig import NetworkConfig, parse_config

from .netconfig_support import paths, problems

# One path per nested object, with the fields allowed there.
NESTED: list[tuple[dict[str, Any], str, str]] = [
    ({"bogus": 1}, "bogus", "interface, routes, rules, neighbors, ethtool, profile"),
    ({"interface": {"bogus": 1}}, "interface.bogus", "name, addresses, dhcp, mtu"),
    ({"interface": {"vrf": {"name": "v", "bogus": 1}}}, "interface.vrf.bogus", "name, table"),
    ({"routes": [{"destination": "10.0.0.0/8", "scope": 253, "bogus": 1}]}, "routes[0].bogus",
     "destination, gateway, source, scope, table"),
    ({"rules": [{}, {"bogus": 1}]}, "rules[1].bogus", "priority, source, destination, table"),
    ({"neighbors": [{"destination": "10.0.0.1", "hardwareAddr": "02:00:5e:00:53:01",
                     "bogus": 1}]}, "neighbors[0].bogus", "destination, hardwareAddr"),
    ({"ethtool": {"bogus": {}}}, "ethtool.bogus", "features, privateFlags"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "path", "allowed"), NESTED)
def test_unknown_fields_are_rejected_at_every_level(
    doc: dict[str, Any], path: str, allowed: str
) -> None:
    found = problems(doc)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}: unknown field; allowed: {allowed}")


@pytest.mark.parametrize(
    ("doc", "path", "guess"),
    [
        ({"interface": {"MTU": 1500}}, "interface.MTU", "mtu"),  # Go's strict mode is case-exact
        ({"interface": {"hardwareAddress": "x"}}, "interface.hardwareAddress", "hardwareAddr"),
        ({"interface": {"hwAddr": "x"}}, "interface.hwAddr", None),
        ({"Interface": {}}, "Interface", "interface"),
        ({"routes": [{"destination": "10.0.0.0/8", "gatway": "10.0.0.1"}]}, "routes[0].gatway",
         "gateway"),
        # dranet's own docs show neighbors[].ipAddress, which strict parsing rejects.
        ({"neighbors": [{"ipAddress": "10.0.0.1"}]}, "neighbors[0].ipAddress", "destination"),
    ],
)  # fmt: skip
def test_unknown_fields_suggest_the_right_name(
    doc: dict[str, Any], path: str, guess: str | None
) -> None:
    found = [p for p in problems(doc) if p.startswith(f"{path}: unknown field")]
    assert len(found) == 1
    if guess is None:
        assert "did you mean" not in found[0]
    else:
        assert f'did you mean "{guess}"?' in found[0]


def test_odd_keys_are_quoted_in_paths() -> None:
    assert paths({"interface": {"a b": 1, "x.y": 2}}) == ['interface["a b"]', 'interface["x.y"]']
    assert paths({"ethtool": {"features": {"rx-checksum": "yes"}}}) == [
        'ethtool.features["rx-checksum"]'
    ]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"profile": "", "profile": ""}', "profile"),
        ('{"interface": {"mtu": 1500, "mtu": 1500}}', "interface.mtu"),
        ('{"interface": {"vrf": {"name": "a", "name": "a"}}}', "interface.vrf.name"),
        ('{"routes": [{"destination": "10.0.0.0/8", "scope": 253, "scope": 253}]}',
         "routes[0].scope"),
        ('{"ethtool": {"features": {"tso": true, "tso": true}}}', "ethtool.features.tso"),
    ],
)  # fmt: skip
def test_duplicate_keys_are_rejected(text: str, path: str) -> None:
    for raw in (text, text.encode()):
        assert problems(raw) == [f"{path}: duplicate key; each key may appear only once"]


def test_duplicate_key_reported_once_even_when_repeated_three_times() -> None:
    assert paths('{"interface": {"mtu": 1, "mtu": 2, "mtu": 3}}') == ["interface.mtu"]


WRONG_TYPES: list[tuple[dict[str, Any], str, str]] = [
    (dict(interface={"mtu": True}), "interface.mtu", "expected an integer, got boolean true"),
    (dict(interface={"mtu": False}), "interface.mtu", "expected an integer, got boolean false"),
    (dict(interface={"mtu": 1500.0}), "interface.mtu", "expected an integer, got number 1500.0"),
    (dict(interface={"mtu": 1500.5}), "interface.mtu", "expected an integer, got number 1500.5"),
    (dict(interface={"mtu": "1500"}), "interface.mtu", 'expected an integer, got string "1500"'),
    (dict(interface={"arpIgnore": [1]}), "interface.arpIgnore",
     "expected an integer, got an array"),
    (dict(interface={"name": 5}), "interface.name", "expected a string, got number 5"),
    (dict(interface={"name": {}}), "interface.name", "expected a string, got an object"),
    (dict(interface={"addresses": "10.0.0.1/8"}), "interface.addresses",
     'expected an array of strings, got string "10.0.0.1/8"'),
    (dict(interface={"addresses": [True]}), "interface.addresses[0]",
     "expected a string, got boolean true"),
    (dict(interface={"vrf": "blue"}), "interface.vrf", 'expected an object, got string "blue"'),
    (dict(interface={"vrf": {"name": "b", "table": "1"}}), "interface.vrf.table",
     'expected an integer, got string "1"'),
    (dict(interface=[]), "interface", "expected an object, got an array"),
    (dict(routes={}), "routes", "expected an array, got an object"),
    (dict(routes=[[]]), "routes[0]", "expected an object, got an array"),
    (dict(routes=[None]), "routes[0]", "expected an object, got null"),
    (dict(routes=[{"destination": "10.0.0.0/8", "scope": 253.0}]), "routes[0].scope",
     "expected an integer, got number 253.0"),
    (dict(rules=[{"priority": True}]), "rules[0].priority",
     "expected an integer, got boolean true"),
    (dict(rules=[{"table": 2**63}]), "rules[0].table",
     "9223372036854775808 is out of range for int64"),
    (dict(neighbors="x"), "neighbors", 'expected an array, got string "x"'),
    (dict(ethtool=[]), "ethtool", "expected an object, got an array"),
    (dict(ethtool={"features": []}), "ethtool.features", "expected an object, got an array"),
    (dict(ethtool={"features": {"tso": 1}}), "ethtool.features.tso",
     "expected true or false, got number 1"),
    (dict(profile=1), "profile", "expected a string, got number 1"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "path", "message"), WRONG_TYPES)
def test_wrong_types_are_rejected(doc: dict[str, Any], path: str, message: str) -> None:
    # Same answer whether the document arrives as a mapping or as JSON text.
    for raw in (doc, json.dumps(doc)):
        found = problems(raw)
        assert found[0].startswith(f"{path}: {message}"), found
        assert len(found) == 1, found


def test_a_fraction_in_json_text_is_not_an_integer() -> None:
    for text in ('{"interface": {"mtu": 1500.0}}', '{"interface": {"mtu": 15e2}}'):
        assert paths(text) == ["interface.mtu"]


def test_null_leaves_a_field_unset_as_in_go() -> None:
    doc = {
        "interface": {"name": None, "mtu": None, "vrf": None, "forwarding": None},
        "routes": None,
        "ethtool": None,
        "profile": None,
    }
    assert parse_config(doc) == NetworkConfig()
    assert parse_config(json.dumps(doc)) == NetworkConfig()
    assert parse_config('{"interface": null}') == NetworkConfig()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\xff{}", "not valid UTF-8 at byte 0"),
        (b'{"profile": "\xc3"}', "not valid UTF-8 at byte 13"),
        ("{", "not valid JSON"),
        ("   ", "not valid JSON"),
        ('{"a": 1,}', "not valid JSON"),
        ("\ufeff{}", "not valid JSON"),
        ('{"interface": {"mtu": NaN}}', "NaN is not valid JSON"),
        ('{"interface": {"mtu": Infinity}}', "Infinity is not valid JSON"),
        ('{"interface": {"mtu": ' + "9" * 5000 + "}}", "too big for any field"),
        ("[" * 100_000, "not valid JSON"),
        ("[]", "the configuration must be a JSON object, got an array"),
        ('"x"', 'the configuration must be a JSON object, got string "x"'),
        ("3", "the configuration must be a JSON object, got number 3"),
    ],
)
def test_text_that_is_not_a_json_object(raw: str | bytes, fragment: str) -> None:
    found = problems(raw)
    assert len(found) == 1
    assert fragment in found[0]


def test_non_string_keys_in_a_mapping_are_rejected() -> None:
    assert problems({1: "x"}) == ["key 1 is not a string"]
    assert problems({"ethtool": {"features": {None: True}}}) == [
        "ethtool.features: key null is not a string"
    ]


def test_huge_python_integers_do_not_break_messages() -> None:
    found = problems({"interface": {"mtu": 10**5000}})
    assert found == [
        "interface.mtu: a 16610-bit integer is out of range for int32 (-2147483648..2147483647)"
    ]


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    doc = {
        "interface": {
            "name": "lo",
            "mtu": 40,
            "arpIgnore": 5,
            "hardwareAddr": "nope",
            "dhcp": True,
            "addresses": ["10.0.0.1/8"],
            "gsoMaxSize": True,
            "colour": "blue",
        },
        "routes": [{"destination": "10.0.0.0/8"}, {"destination": "x", "scope": 7}],
        "rules": [{"priority": 40000}],
        "neighbors": [{"destination": "10.0.0.1"}],
        "ethtool": {"features": {"tso": "on"}},
        "profile": "gold",
    }
    with pytest.raises(ConfigError) as info:
        parse_config(json.dumps(doc))
    got = {p.path: p.message for p in info.value.problems}
    expected = {
        "interface.colour": "unknown field",
        "interface.gsoMaxSize": "expected an integer, got boolean true",
        "ethtool.features.tso": 'expected true or false, got string "on"',
        "interface.name": '"lo" is the loopback device',
        "interface.dhcp": "true cannot be combined with interface.addresses",
        "interface.mtu": "40 is below the minimum 68",
        "interface.hardwareAddr": '"nope" is not a MAC address',
        "interface.arpIgnore": "5 is not one of 0, 1, 2, 3, 8",
        "routes[0].gateway": "required when scope is 0 (universe)",
        "routes[1].destination": '"x" is not a CIDR',
        "routes[1].scope": "7 is not one of 0 (universe), 253 (link)",
        "rules[0].priority": "40000 is not between 0 and 32767",
        "neighbors[0].hardwareAddr": "required",
        "profile": '"gold" needs a dynamic profile provider',
    }
    assert len(info.value.problems) == len(expected), info.value.problems
    for path, start in expected.items():
        assert got[path].startswith(start), (path, got[path])
    # The exception text carries them all too, for logs and gRPC status messages.
    text = str(info.value)
    assert all(f"{path}: " in text for path in expected)


def test_a_bad_type_does_not_cause_follow_on_problems() -> None:
    # scope is unreadable, so "gateway required for universe scope" would be a guess.
    assert paths({"routes": [{"destination": "10.0.0.0/8", "scope": "link"}]}) == [
        "routes[0].scope"
    ]
    # destination is unreadable: no "required", no family comparison.
    assert paths({"routes": [{"destination": 10, "gateway": "2001:db8::1"}]}) == [
        "routes[0].destination"
    ]
    assert paths({"interface": {"vrf": {"name": 7}}}) == ["interface.vrf.name"]
    assert paths({"neighbors": [{"destination": [], "hardwareAddr": "02:00:5e:00:53:01"}]}) == [
        "neighbors[0].destination"
    ]
