"""Properties: no input crashes the parser; valid configs survive to_json and back."""

from __future__ import annotations

import ipaddress
import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dranet.errors import ConfigError
from dranet.netconfig import (
    EthtoolConfig,
    InterfaceConfig,
    NeighborConfig,
    NetworkConfig,
    RouteConfig,
    RuleConfig,
    VRFConfig,
    parse_config,
    to_json,
)

FAST = settings(max_examples=300, deadline=None)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def outcome(raw: Any) -> NetworkConfig | list[str]:
    """The config, or the problems as strings; any other exception fails the test."""
    try:
        cfg = parse_config(raw)
    except ConfigError as err:
        assert err.problems
        assert all(isinstance(p.path, str) and p.message for p in err.problems)
        str(err).encode("utf-8")  # messages must be loggable and fit a gRPC status
        return [str(p) for p in err.problems]
    assert isinstance(cfg, NetworkConfig)
    return cfg


@FAST
@given(json_like)
def test_no_json_like_value_crashes_the_parser(value: Any) -> None:
    outcome(value)


@FAST
@given(st.binary(max_size=200))
def test_no_bytes_crash_the_parser(raw: bytes) -> None:
    outcome(raw)


@FAST
@given(st.text(max_size=200))
def test_no_text_crashes_the_parser(raw: str) -> None:
    outcome(raw)


# Documents shaped like real ones, with plausible and implausible values in every field.
plausible = (
    st.sampled_from(
        ["", "net1", "lo", "10.0.0.1", "10.0.0.0/8", "2001:db8::/32", "fe80::1",
         "02:00:5e:00:53:01", "0200.5e00.5301", "x/y", "a b"]
    )
    | st.integers(min_value=-300, max_value=70000)
    | st.sampled_from([0, 8, 253, 254, 32768, 2**31, 2**32, -(2**31) - 1])
    | json_like
)  # fmt: skip
IFACE_KEYS = ["name", "addresses", "dhcp", "mtu", "hardwareAddr", "gsoMaxSize", "groMaxSize",
              "gsoIPv4MaxSize", "groIPv4MaxSize", "disableEbpfPrograms", "forwarding",
              "arpIgnore", "arpAnnounce", "bogus"]  # fmt: skip


def shaped(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: plausible for k in keys})


documents = st.fixed_dictionaries(
    {},
    optional={
        "interface": st.fixed_dictionaries(
            {},
            optional={
                **{k: plausible | st.lists(plausible, max_size=3) for k in IFACE_KEYS},
                "vrf": shaped(["name", "table", "bogus"]) | plausible,
            },
        ),
        "routes": st.lists(shaped(["destination", "gateway", "source", "scope", "table"]),
                           max_size=3) | plausible,
        "rules": st.lists(shaped(["priority", "source", "destination", "table"]), max_size=3),
        "neighbors": st.lists(shaped(["destination", "hardwareAddr", "ipAddress"]), max_size=3),
        "ethtool": shaped(["features", "privateFlags"])
        | st.fixed_dictionaries({"features": st.dictionaries(st.text(max_size=5), plausible)}),
        "profile": plausible,
    },
)  # fmt: skip


def json_safe(value: Any) -> bool:
    """True when JSON text carries `value` exactly (no NaN/inf, no ints too long for text)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):
        return len(str(value)) <= 40
    if isinstance(value, list):
        return all(json_safe(v) for v in value)
    if isinstance(value, dict):
        return all(json_safe(v) for v in value.values())
    return True


@FAST
@given(documents)
def test_shaped_documents_parse_the_same_as_mapping_and_as_text(doc: dict[str, Any]) -> None:
    from_mapping = outcome(doc)
    if json_safe(doc):
        assert outcome(json.dumps(doc)) == from_mapping
        assert outcome(json.dumps(doc).encode()) == from_mapping


# --- valid configurations ----------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9_.-]{0,14}", fullmatch=True).filter(lambda n: n != "lo")
v4 = st.ip_addresses(v=4)


def _not_mapped(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # Go counts ::ffff:a.b.c.d as IPv4 (To4), so keep the families unambiguous.
    return getattr(addr, "ipv4_mapped", None) is None


v6: st.SearchStrategy[ipaddress.IPv4Address | ipaddress.IPv6Address] = st.ip_addresses(v=6).filter(
    _not_mapped
)
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
tables = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def family_addrs(draw: st.DrawFn, n: int) -> list[str]:
    """n addresses with prefix lengths, all of one family, and n bare addresses."""
    pool = draw(st.sampled_from([v4, v6]))
    out = []
    for _ in range(n):
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = draw(pool)
        out.append(f"{addr}/{draw(st.integers(0, addr.max_prefixlen))}")
        out.append(str(draw(pool)))
    return out


@st.composite
def routes(draw: st.DrawFn) -> RouteConfig:
    dst, gw, _, src = draw(family_addrs(2))
    scope = draw(st.sampled_from([0, 253]))
    return RouteConfig(
        destination=dst,
        gateway=gw if scope == 0 else draw(st.sampled_from(["", gw])),
        source=draw(st.sampled_from(["", src])),
        scope=scope,
        table=draw(tables),
    )


@st.composite
def rules(draw: st.DrawFn) -> RuleConfig:
    src, _, dst, _ = draw(family_addrs(2))
    return RuleConfig(
        priority=draw(st.integers(0, 32767)),
        source=draw(st.sampled_from(["", src])),
        destination=draw(st.sampled_from(["", dst])),
        table=draw(tables),
    )


@st.composite
def valid_configs(draw: st.DrawFn) -> NetworkConfig:
    name = draw(st.sampled_from([""]) | names)
    dhcp = draw(st.booleans())
    sizes = st.none() | st.integers(1, 2**31 - 1)
    vrf = draw(
        st.none()
        | st.builds(
            VRFConfig,
            name=names.filter(lambda n: n != name),
            table=st.integers(1, 2**32 - 1).filter(lambda t: t not in (253, 254, 255)),
        )
    )
    interface = InterfaceConfig(
        name=name,
        addresses=() if dhcp else tuple(draw(st.lists(family_addrs(1), max_size=3).map(
            lambda pairs: [p[0] for p in pairs]))),
        dhcp=dhcp,
        mtu=draw(st.none() | st.integers(68, 2**31 - 1)),
        hardware_addr=draw(st.none() | macs),
        gso_max_size=draw(sizes),
        gro_max_size=draw(sizes),
        gso_ipv4_max_size=draw(sizes),
        gro_ipv4_max_size=draw(sizes),
        disable_ebpf_programs=draw(st.booleans()),
        forwarding=draw(st.none() | st.booleans()),
        arp_ignore=draw(st.none() | st.sampled_from([0, 1, 2, 3, 8])),
        arp_announce=draw(st.none() | st.sampled_from([0, 1, 2])),
        vrf=vrf,
    )  # fmt: skip
    flags = st.dictionaries(st.text(min_size=1, max_size=12), st.booleans(), max_size=4)
    return NetworkConfig(
        interface=interface,
        routes=tuple(draw(st.lists(routes(), max_size=3))),
        rules=() if vrf else tuple(draw(st.lists(rules(), max_size=3))),
        neighbors=tuple(
            draw(st.lists(st.builds(NeighborConfig, (v4 | v6).map(str), macs), max_size=3))
        ),
        ethtool=draw(st.none() | st.builds(EthtoolConfig, flags, flags)),
    )


@FAST
@given(valid_configs())
def test_valid_configs_round_trip_through_to_json(cfg: NetworkConfig) -> None:
    doc = to_json(cfg)
    assert parse_config(doc) == cfg
    assert parse_config(json.dumps(doc)) == cfg
    assert parse_config(json.dumps(doc).encode()) == cfg
    assert to_json(parse_config(doc)) == doc
