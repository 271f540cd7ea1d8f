"""The claim configuration schema: exactly the JSON kubernetes-sigs/dranet accepts.

A ResourceClaim's `opaque.parameters` for driver `dra.net` look like
`{"interface": {...}, "routes": [...], "rules": [...], "neighbors": [...],
"ethtool": {...}, "profile": "..."}` (field names camelCase, as in dranet's
`pkg/apis/types.go`). Parsing is strict like Go's `UnmarshalStrict`: unknown
fields, duplicate keys and wrong types (a bool is not a number, 1.0 is not an
integer) are errors. As in Go, a JSON `null` leaves a field unset. Every
problem is collected and raised at once as `ConfigError`; the value rules
live in `dranet.netvalidate`.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from dranet import netvalidate
from dranet.errors import ConfigError, Problem

VRF_TABLE_OFFSET = 1000
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)  # Go `int` on 64-bit nodes
T = TypeVar("T")


def vrf_table_for(name: str) -> int:
    """dranet's default VRF table, FNV-32a(name) % 1000 + 1000: one VRF name, one table."""
    h = _FNV32_OFFSET
    for byte in name.encode("utf-8", "surrogatepass"):
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h % 1000 + VRF_TABLE_OFFSET


class FlagMap(Mapping[str, bool]):
    """An immutable, hashable name -> on/off map (keeps the dataclasses frozen and hashable)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, bool] | Iterable[tuple[str, bool]] = ()) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> bool:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"FlagMap({self._items!r})"


@dataclass(frozen=True)
class VRFConfig:
    name: str
    table: int  # defaulted by parse_config to vrf_table_for(name)


@dataclass(frozen=True)
class InterfaceConfig:
    name: str = ""
    addresses: tuple[str, ...] = ()
    dhcp: bool = False
    mtu: int | None = None
    hardware_addr: str | None = None
    gso_max_size: int | None = None
    gro_max_size: int | None = None
    gso_ipv4_max_size: int | None = None
    gro_ipv4_max_size: int | None = None
    disable_ebpf_programs: bool = False
    forwarding: bool | None = None
    arp_ignore: int | None = None
    arp_announce: int | None = None
    vrf: VRFConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", tuple(self.addresses))


@dataclass(frozen=True)
class RouteConfig:
    destination: str
    gateway: str = ""
    source: str = ""
    scope: int = 0
    table: int = 0


@dataclass(frozen=True)
class RuleConfig:
    priority: int = 0
    source: str = ""
    destination: str = ""
    table: int = 0


@dataclass(frozen=True)
class NeighborConfig:
    destination: str
    hardware_addr: str


@dataclass(frozen=True)
class EthtoolConfig:
    features: Mapping[str, bool] = field(default_factory=FlagMap)
    private_flags: Mapping[str, bool] = field(default_factory=FlagMap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", FlagMap(self.features))
        object.__setattr__(self, "private_flags", FlagMap(self.private_flags))


@dataclass(frozen=True)
class NetworkConfig:
    interface: InterfaceConfig = field(default_factory=InterfaceConfig)
    routes: tuple[RouteConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    neighbors: tuple[NeighborConfig, ...] = ()
    ethtool: EthtoolConfig | None = None
    profile: str = ""

    def __post_init__(self) -> None:
        for name in ("routes", "rules", "neighbors"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


# Per object: JSON key -> (dataclass attribute, kind). Go types: int32 fields
# are `*int32`; tables, scope and priority are Go `int`/`uint8`, range-checked
# as int64 here and by value in netvalidate.
_SPECS: dict[type, dict[str, tuple[str, str]]] = {
    InterfaceConfig: {
        "name": ("name", "str"), "addresses": ("addresses", "strs"), "dhcp": ("dhcp", "bool"),
        "mtu": ("mtu", "int32"), "hardwareAddr": ("hardware_addr", "str"),
        "gsoMaxSize": ("gso_max_size", "int32"), "groMaxSize": ("gro_max_size", "int32"),
        "gsoIPv4MaxSize": ("gso_ipv4_max_size", "int32"),
        "groIPv4MaxSize": ("gro_ipv4_max_size", "int32"),
        "disableEbpfPrograms": ("disable_ebpf_programs", "bool"),
        "forwarding": ("forwarding", "bool"), "arpIgnore": ("arp_ignore", "int32"),
        "arpAnnounce": ("arp_announce", "int32"), "vrf": ("vrf", "vrf"),
    },
    VRFConfig: {"name": ("name", "str"), "table": ("table", "int")},
    RouteConfig: {
        "destination": ("destination", "str"), "gateway": ("gateway", "str"),
        "source": ("source", "str"), "scope": ("scope", "int"), "table": ("table", "int"),
    },
    RuleConfig: {
        "priority": ("priority", "int"), "source": ("source", "str"),
        "destination": ("destination", "str"), "table": ("table", "int"),
    },
    NeighborConfig: {
        "destination": ("destination", "str"), "hardwareAddr": ("hardware_addr", "str"),
    },
    EthtoolConfig: {
        "features": ("features", "flags"), "privateFlags": ("private_flags", "flags"),
    },
}  # fmt: skip
_TOP = ("interface", "routes", "rules", "neighbors", "ethtool", "profile")
_REQUIRED = {
    RouteConfig: {"destination": ""},
    NeighborConfig: {"destination": "", "hardware_addr": ""},
}
# Names seen in dranet's own docs and messages that strict parsing rejects.
_KNOWN_MISTAKES = {"ipAddress": "destination", "hardwareAddress": "hardwareAddr"}


class _JSONObject(dict[str, Any]):
    """A decoded JSON object that remembers keys it saw more than once."""

    duplicates: tuple[str, ...] = ()

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> _JSONObject:
        obj = cls()
        dups: list[str] = []
        for key, value in pairs:
            if key in obj and key not in dups:
                dups.append(key)
            obj[key] = value
        obj.duplicates = tuple(dups)
        return obj


def _join(path: str, key: str) -> str:
    if key.isidentifier() and key.isascii():
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {netvalidate.show(value)}"
    if isinstance(value, str):
        return f"string {netvalidate.show(value)}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _unknown(key: str, allowed: Iterable[str]) -> str:
    names = list(allowed)
    guess = _KNOWN_MISTAKES.get(key)
    if guess not in names:
        lower = {n.lower(): n for n in names}
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
        guess = lower.get(key.lower()) or (close[0] if close else None)
    hint = f"did you mean {json.dumps(guess)}? " if guess else ""
    return f"unknown field; {hint}allowed: {', '.join(names)}"


class _Reader:
    """Type checks with problem collection; a bad value is dropped and its path marked."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.bad: set[str] = set()

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))
        self.bad.add(path)

    def fields(self, path: str, value: object, allowed: Collection[str]) -> dict[str, Any] | None:
        """The object's set fields (nulls dropped, as Go does); None if not an object."""
        if not isinstance(value, Mapping):
            self.fail(path, f"expected an object, got {_describe(value)}")
            return None
        for dup in getattr(value, "duplicates", ()):
            self.fail(_join(path, dup), "duplicate key; each key may appear only once")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.fail(path, f"key {netvalidate.show(key)} is not a string")
            elif key not in allowed:
                self.fail(_join(path, key), _unknown(key, allowed))
            elif item is not None:
                out[key] = item
        return out

    def read(self, path: str, value: object, kind: str) -> Any:
        """`value` checked as `kind`, or None (and a problem) if it is not one."""
        if kind == "str" and isinstance(value, str):
            return value
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind in ("int", "int32") and isinstance(value, int) and not isinstance(value, bool):
            low, high = _INT32 if kind == "int32" else _INT64
            if low <= value <= high:
                return value
            name = "int32" if kind == "int32" else "int64"
            shown = netvalidate.show(value)
            self.fail(path, f"{shown} is out of range for {name} ({low}..{high})")
            return None
        if kind == "strs" and isinstance(value, list | tuple):
            items = (self.read(f"{path}[{i}]", v, "str") for i, v in enumerate(value))
            return tuple(v if v is not None else "" for v in items)
        if kind == "flags":
            return self.flags(path, value)
        if kind == "vrf":
            return self.vrf(path, value)
        wanted = {"str": "a string", "bool": "true or false", "strs": "an array of strings"}
        self.fail(path, f"expected {wanted.get(kind, 'an integer')}, got {_describe(value)}")
        return None

    def obj(self, path: str, value: object, cls: type[T]) -> T:
        """A dataclass from a JSON object; placeholders fill required fields that are bad."""
        spec = _SPECS[cls]
        kw: dict[str, Any] = dict(_REQUIRED.get(cls, {}))
        for key, item in (self.fields(path, value, spec) or {}).items():
            attr, kind = spec[key]
            if (got := self.read(_join(path, key), item, kind)) is not None:
                kw[attr] = got
        return cls(**kw)

    def objs(self, path: str, value: object, cls: type[T]) -> tuple[T, ...]:
        if not isinstance(value, list | tuple):
            self.fail(path, f"expected an array, got {_describe(value)}")
            return ()
        return tuple(self.obj(f"{path}[{i}]", v, cls) for i, v in enumerate(value))

    def flags(self, path: str, value: object) -> FlagMap | None:
        """A name -> bool object (ethtool); a null value is rejected, not read as off."""
        if not isinstance(value, Mapping):
            self.fail(path, f"expected an object, got {_describe(value)}")
            return None
        for dup in getattr(value, "duplicates", ()):
            self.fail(_join(path, dup), "duplicate key; each key may appear only once")
        out: dict[str, bool] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.fail(path, f"key {netvalidate.show(key)} is not a string")
            elif (flag := self.read(_join(path, key), item, "bool")) is not None:
                out[key] = flag
        return FlagMap(out)

    def vrf(self, path: str, value: object) -> VRFConfig | None:
        f = self.fields(path, value, _SPECS[VRFConfig])
        if f is None:
            return None
        name = self.read(f"{path}.name", f["name"], "str") if "name" in f else ""
        table = self.read(f"{path}.table", f["table"], "int") if "table" in f else None
        if table is None:
            # dranet's default; a placeholder when the name is missing (reported instead).
            table = vrf_table_for(name) if name else VRF_TABLE_OFFSET
        return VRFConfig(name=name or "", table=table)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int:
    if len(text) > 40:  # far beyond int64; also keeps clear of Python's digit limit
        raise ValueError(
            f"integer {text[:20]}... is {len(text)} characters long, too big for any field"
        )
    return int(text)


def _load(raw: bytes | str) -> object:
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as err:
            bad = f"not valid UTF-8 at byte {err.start}; the configuration must be UTF-8 JSON"
            raise ConfigError([Problem("", bad)]) from None
    try:
        return json.loads(
            raw,
            object_pairs_hook=_JSONObject.from_pairs,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
        )
    except (ValueError, RecursionError) as err:
        raise ConfigError([Problem("", f"not valid JSON: {err}")]) from None


def parse_config(raw: bytes | str | Mapping[str, Any]) -> NetworkConfig:
    """Parse and validate one opaque config; raises ConfigError listing every problem.

    Empty input (and JSON `null`) is no configuration, as in dranet.
    A VRF without a table gets `vrf_table_for(name)`; MACs are normalised to
    lower-case colon form.
    """
    if isinstance(raw, str | bytes | bytearray | memoryview):
        if len(raw) == 0:
            return NetworkConfig()
        value = _load(raw)
    else:
        value = raw
    if value is None:
        return NetworkConfig()
    r = _Reader()
    top = r.fields("", value, _TOP)
    if top is None:
        raise ConfigError(
            [Problem("", f"the configuration must be a JSON object, got {_describe(value)}")]
        )
    iface = r.obj("interface", top.get("interface", {}), InterfaceConfig)
    if iface.hardware_addr is not None:
        iface = replace(iface, hardware_addr=_mac(iface.hardware_addr))
    profile = r.read("profile", top["profile"], "str") if "profile" in top else ""
    cfg = NetworkConfig(
        interface=iface,
        routes=r.objs("routes", top.get("routes", ()), RouteConfig),
        rules=r.objs("rules", top.get("rules", ()), RuleConfig),
        neighbors=tuple(
            replace(n, hardware_addr=_mac(n.hardware_addr))
            for n in r.objs("neighbors", top.get("neighbors", ()), NeighborConfig)
        ),
        ethtool=r.obj("ethtool", top["ethtool"], EthtoolConfig) if "ethtool" in top else None,
        profile=profile or "",
    )
    # A path that failed its type check holds a placeholder: judge it no further.
    checked = [p for p in netvalidate.validate(cfg, r.bad) if p.path not in r.bad]
    problems = r.problems + checked
    if problems:
        raise ConfigError(problems)
    return cfg


def _mac(text: str) -> str:
    return netvalidate.canonical_mac(text) or text  # invalid ones are reported by validate


def unsupported(cfg: NetworkConfig) -> list[Problem]:
    """Valid settings (kubernetes-sigs/dranet accepts them) this driver cannot honour yet.

    Refusing them at prepare time beats silently doing something else.
    """
    problems = []
    if cfg.interface.dhcp:
        problems.append(
            Problem(
                "interface.dhcp",
                "DHCP is not supported by this driver yet; set interface.addresses instead",
            )
        )
    return problems


def to_json(cfg: NetworkConfig) -> dict[str, Any]:
    """Canonical camelCase JSON; fields left at their defaults are left out.

    For every valid config, `parse_config(to_json(cfg)) == cfg`.
    """
    out: dict[str, Any] = {"interface": _obj_json(cfg.interface)}
    for key in ("routes", "rules", "neighbors"):
        if items := getattr(cfg, key):
            out[key] = [_obj_json(item) for item in items]
    if cfg.ethtool is not None:
        out["ethtool"] = _obj_json(cfg.ethtool)
    if cfg.profile:
        out["profile"] = cfg.profile
    return out


def _obj_json(obj: Any) -> dict[str, Any]:
    cls = type(obj)
    base = cls(**_REQUIRED.get(cls, {}))
    out: dict[str, Any] = {}
    for key, (attr, kind) in _SPECS[cls].items():
        val = getattr(obj, attr)
        if val == getattr(base, attr):
            continue
        if kind == "vrf":
            val = {"name": val.name, "table": val.table}
        out[key] = list(val) if kind == "strs" else dict(val) if kind == "flags" else val
    return out


def merge_configs(configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Resolve several opaque configs for one device into one (not yet validated) config.

    Apply them in order: DeviceClass configs first, then the claim's configs,
    each in list order, so later ones take precedence. Objects merge key by
    key, recursively; any other value (string, number, bool, null, list) is
    replaced whole by a later one, so a later `null` unsets a field and a later
    `routes` list replaces the earlier list. Inputs are not modified.

    dranet itself uses only the first config that parses (see
    shared/reference/dranet.md §2); merging lets a class set defaults a claim
    refines. Feed the result to `parse_config`.
    """
    merged: dict[str, Any] = {}
    for cfg in configs:
        merged = _merge(merged, cfg)
    return merged


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = _merge(old, value)
        else:
            out[key] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)
