"""The claim configuration's typed model: frozen dataclasses and their JSON names.

One dataclass per object of the JSON kubernetes-sigs/dranet accepts
(`pkg/apis/types.go`), all frozen and hashable, plus the table that spells
each field in camelCase JSON (`_SPECS`, `_TOP`, `_REQUIRED`), shared by the
reader (`dranet.netparse`) and the writer (`dranet.netconfig.to_json`), and
dranet's default VRF table (`vrf_table_for`). Import these from
`dranet.netconfig`, the package's one public face for claim configurations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

VRF_TABLE_OFFSET = 1000
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


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
# as int64 by netparse and by value in netvalidate.
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
