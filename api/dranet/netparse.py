"""Strict reading of a claim configuration: JSON in, `NetworkConfig` out.

Parsing is strict like Go's `UnmarshalStrict`: unknown fields (with a "did
you mean" hint), duplicate keys and wrong types (a bool is not a number, 1.0
is not an integer) are errors. As in Go, a JSON `null` leaves a field unset.
Every problem is collected and raised at once as `ConfigError`; the value
rules live in `dranet.netvalidate`, the dataclasses and field names in
`dranet.netmodel`. Callers import `parse_config` from `dranet.netconfig`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from dranet import netvalidate
from dranet.errors import ConfigError, Problem
from dranet.netmodel import (
    _REQUIRED,
    _SPECS,
    _TOP,
    VRF_TABLE_OFFSET,
    EthtoolConfig,
    FlagMap,
    InterfaceConfig,
    NeighborConfig,
    NetworkConfig,
    RouteConfig,
    RuleConfig,
    VRFConfig,
    vrf_table_for,
)

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)  # Go `int` on 64-bit nodes
T = TypeVar("T")

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
