"""Semantic rules for a parsed claim configuration (kubernetes-sigs/dranet `validation.go`).

`dranet.netparse` checks structure and types and builds the `dranet.netmodel` dataclasses;
this module checks the values. Address, prefix and MAC parsing follow Go's
`net`/`net/netip` rules so that exactly the configurations dranet accepts are
accepted here (plus a few rejections of values that could only fail later, at
attach time, each noted where it is made).
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from collections.abc import Set
from typing import TYPE_CHECKING

from dranet.errors import Problem

if TYPE_CHECKING:
    from dranet.netmodel import InterfaceConfig, NetworkConfig, RouteConfig, RuleConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MIN_MTU = 68
MAX_IFNAME_BYTES = 15  # IFNAMSIZ - 1
MAX_TABLE = 2**32 - 1  # RTA_TABLE / FRA_TABLE are u32
MAX_RULE_PRIORITY = 32767
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
RESERVED_TABLES = {253: "default", 254: "main", 255: "local"}
ARP_IGNORE_VALUES = (0, 1, 2, 3, 8)
ARP_ANNOUNCE_VALUES = (0, 1, 2)

_IFNAME_ALLOWED = 'use only letters, digits, "-", "_" and "."'
_HEX2 = "[0-9a-fA-F]{2}"
_HEX4 = "[0-9a-fA-F]{4}"
# net.ParseMAC: 6, 8 or 20 octets, "aa:bb:..", "aa-bb-.." (one separator
# throughout) or "aabb.ccdd.eeff" groups.
_MAC_RE = re.compile(
    rf"{_HEX2}(?P<sep>[:-]){_HEX2}(?:(?P=sep){_HEX2}){{4}}"
    rf"|{_HEX2}(?P<sep8>[:-]){_HEX2}(?:(?P=sep8){_HEX2}){{6}}"
    rf"|{_HEX2}(?P<sep20>[:-]){_HEX2}(?:(?P=sep20){_HEX2}){{18}}"
    rf"|{_HEX4}(?:\.{_HEX4}){{2}}|{_HEX4}(?:\.{_HEX4}){{3}}|{_HEX4}(?:\.{_HEX4}){{9}}",
    re.ASCII,
)
# netip.ParsePrefix bits: decimal, no sign, no leading zero. net.ParseCIDR
# (used by dranet for routes and rules) also allows leading zeros.
_PREFIX_BITS = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_CIDR_BITS = re.compile(r"[0-9]{1,7}", re.ASCII)


def show(value: object, limit: int = 64) -> str:
    """A value as it appears in JSON, shortened for messages."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"a {value.bit_length()}-bit integer"  # str() of huge ints can raise
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def canonical_mac(text: str) -> str | None:
    """The MAC as lower-case colon-separated octets, or None if Go's net.ParseMAC rejects it."""
    if not _MAC_RE.fullmatch(text):
        return None
    digits = re.sub(r"[:.\-]", "", text).lower()
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def parse_ip(text: str) -> IPAddress | None:
    """The address as Go's net.ParseIP reads it (no zone), or None."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_cidr(text: str, *, strict_bits: bool = False) -> IPAddress | None:
    """The address part of `addr/bits` (host bits allowed), or None if invalid.

    strict_bits=True follows netip.ParsePrefix (interface addresses),
    otherwise net.ParseCIDR (routes, rules).
    """
    addr_text, slash, bits_text = text.rpartition("/")
    if not slash:
        return None
    addr = parse_ip(addr_text)
    pattern = _PREFIX_BITS if strict_bits else _CIDR_BITS
    if addr is None or not pattern.fullmatch(bits_text):
        return None
    return addr if int(bits_text) <= addr.max_prefixlen else None


def is_v4_family(addr: IPAddress) -> bool:
    """Go's `ip.To4() != nil`: IPv4, or IPv4-mapped IPv6."""
    return addr.version == 4 or getattr(addr, "ipv4_mapped", None) is not None


def _family(addr: IPAddress) -> str:
    return "IPv4" if is_v4_family(addr) else "IPv6"


def check_ifname(path: str, name: str) -> list[Problem]:
    """dranet's isValidLinuxInterfaceName, plus `lo`, which every pod netns already has."""
    if name == "":
        return []
    out: list[Problem] = []
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_IFNAME_BYTES:
        out.append(
            Problem(path, f"{show(name)} is {size} bytes; at most {MAX_IFNAME_BYTES} are allowed")
        )
    if name in (".", ".."):
        out.append(Problem(path, f"{show(name)} is not allowed as a name; {_IFNAME_ALLOWED}"))
    if "/" in name:
        out.append(Problem(path, f'{show(name)} contains "/"; {_IFNAME_ALLOWED}'))
    # Every Unicode space is rejected (dranet skips the non-ASCII ones silently).
    if any(ch.isspace() for ch in name):
        out.append(Problem(path, f"{show(name)} contains whitespace; {_IFNAME_ALLOWED}"))
    bad = sorted(
        {
            ch
            for ch in name
            if ch not in "-_./"
            and not ch.isspace()
            and not unicodedata.category(ch).startswith("L")
            and unicodedata.category(ch) != "Nd"
        }
    )
    if bad:
        chars = ", ".join(show(ch) for ch in bad)
        out.append(
            Problem(path, f"{show(name)} contains invalid character {chars}; {_IFNAME_ALLOWED}")
        )
    if name == "lo":
        out.append(
            Problem(
                path,
                '"lo" is the loopback device every pod network namespace already has; '
                "choose another name",
            )
        )
    return out


def _one_of(value: int, allowed: tuple[int, ...]) -> str:
    return f"{value} is not one of {', '.join(map(str, allowed))}"


def _check_table(path: str, table: int, minimum: int) -> list[Problem]:
    if table < minimum:
        return [Problem(path, f"{table} is below the minimum {minimum}")]
    if table > MAX_TABLE:
        return [Problem(path, f"{table} is above the maximum {MAX_TABLE} (table IDs are 32-bit)")]
    return []


def _check_interface(cfg: InterfaceConfig, bad: Set[str]) -> list[Problem]:
    p = "interface"
    out: list[Problem] = []
    if f"{p}.name" not in bad:
        out += check_ifname(f"{p}.name", cfg.name)
    for i, addr in enumerate(cfg.addresses):
        ap = f"{p}.addresses[{i}]"
        if ap not in bad and parse_cidr(addr, strict_bits=True) is None:
            out.append(
                Problem(
                    ap,
                    f"{show(addr)} is not an address with prefix length "
                    "(e.g. 192.0.2.10/24 or 2001:db8::10/64)",
                )
            )
    if cfg.dhcp and cfg.addresses:
        out.append(
            Problem(
                f"{p}.dhcp",
                "true cannot be combined with interface.addresses; "
                "use either DHCP or static addresses",
            )
        )
    if cfg.mtu is not None and cfg.mtu < MIN_MTU:
        out.append(Problem(f"{p}.mtu", f"{cfg.mtu} is below the minimum {MIN_MTU}"))
    if cfg.hardware_addr is not None and canonical_mac(cfg.hardware_addr) is None:
        out.append(
            Problem(
                f"{p}.hardwareAddr",
                f"{show(cfg.hardware_addr)} is not a MAC address (e.g. 02:00:5e:00:53:01)",
            )
        )
    for key, size in (
        ("gsoMaxSize", cfg.gso_max_size),
        ("groMaxSize", cfg.gro_max_size),
        ("gsoIPv4MaxSize", cfg.gso_ipv4_max_size),
        ("groIPv4MaxSize", cfg.gro_ipv4_max_size),
    ):
        if size is not None and size <= 0:
            out.append(Problem(f"{p}.{key}", f"{size} is below the minimum 1"))
    if cfg.arp_ignore is not None and cfg.arp_ignore not in ARP_IGNORE_VALUES:
        out.append(Problem(f"{p}.arpIgnore", _one_of(cfg.arp_ignore, ARP_IGNORE_VALUES)))
    if cfg.arp_announce is not None and cfg.arp_announce not in ARP_ANNOUNCE_VALUES:
        out.append(Problem(f"{p}.arpAnnounce", _one_of(cfg.arp_announce, ARP_ANNOUNCE_VALUES)))
    vrf = cfg.vrf
    if vrf is not None and f"{p}.vrf" not in bad:
        vp = f"{p}.vrf"
        if f"{vp}.name" not in bad:
            if not vrf.name:
                out.append(
                    Problem(
                        f"{vp}.name",
                        "required: the name of the VRF device to create "
                        'in the pod (e.g. "vrf-blue")',
                    )
                )
            # dranet only checks non-empty; the VRF is a link, so the kernel's
            # name rules apply and a bad name would fail at attach time.
            out += check_ifname(f"{vp}.name", vrf.name)
            if vrf.name and vrf.name == cfg.name:
                out.append(
                    Problem(
                        f"{vp}.name",
                        f"{show(vrf.name)} is the interface's own name; "
                        "the VRF device needs a different name",
                    )
                )
        if f"{vp}.table" not in bad:
            if vrf.table in RESERVED_TABLES:
                out.append(
                    Problem(
                        f"{vp}.table",
                        f"{vrf.table} is the reserved "
                        f"'{RESERVED_TABLES[vrf.table]}' table; "
                        "253, 254 and 255 are not allowed",
                    )
                )
            out += _check_table(f"{vp}.table", vrf.table, 1)
    return out


def _check_route(p: str, route: RouteConfig, bad: Set[str]) -> list[Problem]:
    out: list[Problem] = []
    dst = None
    if f"{p}.destination" not in bad:
        if not route.destination:
            out.append(
                Problem(
                    f"{p}.destination",
                    "required: a CIDR such as 10.0.0.0/8 (host routes use /32 or /128)",
                )
            )
        else:
            dst = parse_cidr(route.destination)
            if dst is None:
                out.append(
                    Problem(
                        f"{p}.destination",
                        f"{show(route.destination)} is not a CIDR "
                        "(e.g. 10.0.0.0/8; host routes use /32 "
                        "or /128)",
                    )
                )
    if f"{p}.scope" not in bad:
        if route.scope not in (SCOPE_UNIVERSE, SCOPE_LINK):
            out.append(
                Problem(f"{p}.scope", f"{route.scope} is not one of 0 (universe), 253 (link)")
            )
        elif route.scope == SCOPE_UNIVERSE and not route.gateway and f"{p}.gateway" not in bad:
            out.append(
                Problem(
                    f"{p}.gateway",
                    "required when scope is 0 (universe); set a gateway or use scope 253 (link)",
                )
            )
    for key, text in (("gateway", route.gateway), ("source", route.source)):
        if not text:
            continue
        addr = parse_ip(text)
        if addr is None:
            out.append(Problem(f"{p}.{key}", f"{show(text)} is not an IP address"))
        elif dst is not None and is_v4_family(addr) != is_v4_family(dst):
            out.append(
                Problem(
                    f"{p}.{key}",
                    f"{show(text)} is {_family(addr)} but destination "
                    f"{show(route.destination)} is {_family(dst)}; "
                    "use the same family",
                )
            )
    out += _check_table(f"{p}.table", route.table, 0)
    return out


def _check_rule(p: str, rule: RuleConfig) -> list[Problem]:
    out: list[Problem] = []
    if not 0 <= rule.priority <= MAX_RULE_PRIORITY:
        out.append(
            Problem(f"{p}.priority", f"{rule.priority} is not between 0 and {MAX_RULE_PRIORITY}")
        )
    out += _check_table(f"{p}.table", rule.table, 0)
    found: dict[str, IPAddress] = {}
    for key, text in (("source", rule.source), ("destination", rule.destination)):
        if not text:
            continue
        addr = parse_cidr(text)
        if addr is None:
            out.append(Problem(f"{p}.{key}", f"{show(text)} is not a CIDR (e.g. 10.0.0.0/8)"))
        else:
            found[key] = addr
    if len(found) == 2 and is_v4_family(found["source"]) != is_v4_family(found["destination"]):
        out.append(
            Problem(
                p,
                f"source {show(rule.source)} is {_family(found['source'])} but "
                f"destination {show(rule.destination)} is "
                f"{_family(found['destination'])}; use the same family",
            )
        )
    return out


def validate(cfg: NetworkConfig, bad: Set[str] = frozenset()) -> list[Problem]:
    """Every rule violation in `cfg`, in document order.

    `bad` holds the paths whose values already failed type checks; they hold
    placeholders, so checks on them (and checks that depend on them) are skipped.
    """
    out = _check_interface(cfg.interface, bad)
    for i, route in enumerate(cfg.routes):
        if f"routes[{i}]" not in bad:
            out += _check_route(f"routes[{i}]", route, bad)
    if cfg.rules and cfg.interface.vrf is not None:
        out.append(
            Problem(
                "rules",
                "not allowed together with interface.vrf (routing uses the "
                "VRF's own table); remove the rules or the vrf",
            )
        )
    for i, rule in enumerate(cfg.rules):
        if f"rules[{i}]" not in bad:
            out += _check_rule(f"rules[{i}]", rule)
    for i, neigh in enumerate(cfg.neighbors):
        p = f"neighbors[{i}]"
        if p in bad:
            continue
        if f"{p}.destination" not in bad:
            if not neigh.destination:
                out.append(Problem(f"{p}.destination", "required: the neighbor's IP address"))
            elif parse_ip(neigh.destination) is None:
                out.append(
                    Problem(f"{p}.destination", f"{show(neigh.destination)} is not an IP address")
                )
        if f"{p}.hardwareAddr" not in bad:
            if not neigh.hardware_addr:
                out.append(
                    Problem(
                        f"{p}.hardwareAddr",
                        "required: the neighbor's MAC address (e.g. 02:00:5e:00:53:01)",
                    )
                )
            elif canonical_mac(neigh.hardware_addr) is None:
                out.append(
                    Problem(
                        f"{p}.hardwareAddr",
                        f"{show(neigh.hardware_addr)} is not a "
                        "MAC address (e.g. 02:00:5e:00:53:01)",
                    )
                )
    if cfg.ethtool is not None:
        # Names are resolved against the device at prepare time; an empty one never resolves.
        for key, flags in (
            ("features", cfg.ethtool.features),
            ("privateFlags", cfg.ethtool.private_flags),
        ):
            if "" in flags:
                out.append(Problem(f'ethtool.{key}[""]', "names cannot be empty"))
    if cfg.profile:
        out.append(
            Problem(
                "profile",
                f"{show(cfg.profile)} needs a dynamic profile provider "
                "(cloud or webhook), which this driver does not have; "
                "remove profile and put the settings in the configuration",
            )
        )
    return out
