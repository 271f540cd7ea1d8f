"""The claim configuration schema: exactly the JSON kubernetes-sigs/dranet accepts.

A ResourceClaim's `opaque.parameters` for driver `dra.net` look like
`{"interface": {...}, "routes": [...], "rules": [...], "neighbors": [...],
"ethtool": {...}, "profile": "..."}` (field names camelCase, as in dranet's
`pkg/apis/types.go`). This module is the one to import from: it holds what
is done with a configuration (`merge_configs` several into one, `to_json`,
`unsupported` settings) and re-exports the rest, which lives in:

- `dranet.netmodel`: the typed model (frozen dataclasses, `vrf_table_for`)
  and the JSON field names;
- `dranet.netparse`: `parse_config`, the strict reading (unknown fields,
  duplicate keys and wrong types are errors, all collected into one
  `ConfigError`);
- `dranet.netvalidate`: the value rules `parse_config` applies.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from dranet.errors import Problem
from dranet.netmodel import (
    _REQUIRED,
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
from dranet.netmodel import _SPECS as _SPECS  # noqa: PLC0414 (re-export: the docs test reads it)
from dranet.netmodel import _TOP as _TOP  # noqa: PLC0414 (re-export: the docs test reads it)
from dranet.netparse import parse_config

__all__ = [
    "VRF_TABLE_OFFSET",
    "EthtoolConfig",
    "FlagMap",
    "InterfaceConfig",
    "NeighborConfig",
    "NetworkConfig",
    "RouteConfig",
    "RuleConfig",
    "VRFConfig",
    "merge_configs",
    "parse_config",
    "to_json",
    "unsupported",
    "vrf_table_for",
]


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
