"""ethtool features and private flags, set inside the pod namespace.

The SIOCETHTOOL ioctl acts on an interface *name* in the namespace of the
socket it is issued on, so `apply_ethtool` must run in a thread that has
entered the pod namespace (`netns.arun_in_netns`). Features go through
pyroute2's ioctl helper; private flags (ETHTOOL_GPFLAGS/SPFLAGS, string set
ETH_SS_PRIV_FLAGS) have no pyroute2 API, so they are issued here.

`read_ethtool` records, on the node before a move, the requested state of
every feature the driver lets change and the private flags; `restore_ethtool`
gives those back after the device returns (features and flags live on the
device, so whatever the pod or the claim changed comes back with it).
"""

from __future__ import annotations

import ctypes
import fcntl
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pyroute2.ethtool.ioctl import (
    SIOCETHTOOL,
    EthtoolError,
    EthtoolValue,
    IfReq,
    IoctlEthtool,
)

ETH_SS_PRIV_FLAGS = 2
ETHTOOL_GPFLAGS = 0x27
ETHTOOL_SPFLAGS = 0x28

# Legacy names accepted by `ethtool -K` (short and long), as kernel-name globs.
ALIASES = {
    "rx": "rx-checksum",
    "rx-checksumming": "rx-checksum",
    "tx": "tx-checksum-*",
    "tx-checksumming": "tx-checksum-*",
    "sg": "tx-scatter-gather*",
    "scatter-gather": "tx-scatter-gather*",
    "tso": "tx-tcp*-segmentation",
    "tcp-segmentation-offload": "tx-tcp*-segmentation",
    "ufo": "tx-udp-fragmentation",
    "udp-fragmentation-offload": "tx-udp-fragmentation",
    "gso": "tx-generic-segmentation",
    "generic-segmentation-offload": "tx-generic-segmentation",
    "gro": "rx-gro",
    "generic-receive-offload": "rx-gro",
    "lro": "rx-lro",
    "large-receive-offload": "rx-lro",
    "rxvlan": "rx-vlan-hw-parse",
    "rx-vlan-offload": "rx-vlan-hw-parse",
    "txvlan": "tx-vlan-hw-insert",
    "tx-vlan-offload": "tx-vlan-hw-insert",
    "ntuple": "rx-ntuple-filter",
    "ntuple-filters": "rx-ntuple-filter",
    "rxhash": "rx-hashing",
    "receive-hashing": "rx-hashing",
}


def resolve_features(requested: Mapping[str, bool], available: Iterable[str]) -> dict[str, bool]:
    """Kernel feature name -> wanted state; raises ValueError naming unknown features."""
    names = list(available)
    out: dict[str, bool] = {}
    unknown = []
    for name, wanted in requested.items():
        if name in names:
            out[name] = wanted
            continue
        matches = fnmatch.filter(names, ALIASES.get(name, "\0"))
        if not matches:
            unknown.append(name)
        for match in matches:
            out[match] = wanted
    if unknown:
        raise ValueError(
            f"unknown ethtool feature(s) {', '.join(sorted(unknown))}; "
            "use kernel names as `ethtool -k` lists them"
        )
    return out


def _features(eth: IoctlEthtool, requested: Mapping[str, bool]) -> None:
    current = eth.get_features()
    wanted = resolve_features(requested, current.keys())
    fixed = [n for n, v in wanted.items() if current[n] != v and not current.is_available(n)]
    if fixed:
        raise ValueError(f"ethtool feature(s) {', '.join(sorted(fixed))} cannot be changed")
    changes = {n: v for n, v in wanted.items() if current[n] != v}
    if not changes:
        return
    for name, value in changes.items():
        current[name] = value
    eth.set_features(current)
    after = eth.get_features()
    refused = [n for n, v in changes.items() if after[n] != v]
    if refused:
        raise ValueError(f"the driver refused ethtool feature(s) {', '.join(sorted(refused))}")


def _pflags_ioctl(eth: IoctlEthtool, ifname: str, cmd: int, data: int = 0) -> int:
    value = EthtoolValue(cmd=cmd, data=data)
    req = IfReq()
    raw = ifname.encode()
    req.ifr_name = (ctypes.c_uint8 * 16)(*raw, *([0] * (16 - len(raw))))
    req.value = ctypes.pointer(value)
    fcntl.ioctl(eth.sock, SIOCETHTOOL, req)
    return int(value.data)


def flags_to_bits(names: Sequence[str], bits: int, wanted: Mapping[str, bool]) -> int:
    """`bits` with each named private flag set or cleared (pure; flag i is bit i)."""
    for name, value in wanted.items():
        bit = 1 << names.index(name)
        bits = (bits | bit) if value else (bits & ~bit)
    return bits


def bits_to_flags(names: Sequence[str], bits: int) -> dict[str, bool]:
    """Private flag name -> on/off (pure)."""
    return {name: bool(bits >> i & 1) for i, name in enumerate(names)}


def _private_flag_names(eth: IoctlEthtool) -> list[str]:
    try:
        if not eth.get_stringset_length(ETH_SS_PRIV_FLAGS):
            return []  # most virtual devices have none
        return list(eth.get_stringset(set_id=ETH_SS_PRIV_FLAGS))
    except (OSError, EthtoolError):
        return []


def _private_flags(eth: IoctlEthtool, ifname: str, requested: Mapping[str, bool]) -> None:
    names = _private_flag_names(eth)
    unknown = sorted(set(requested) - set(names))
    if unknown:
        have = ", ".join(names) or "none"
        raise ValueError(f"unknown private flag(s) {', '.join(unknown)} (device has: {have})")
    flags = _pflags_ioctl(eth, ifname, ETHTOOL_GPFLAGS)
    new = flags_to_bits(names, flags, requested)
    if new != flags:
        _pflags_ioctl(eth, ifname, ETHTOOL_SPFLAGS, new)


def apply_ethtool(
    ifname: str, features: Mapping[str, bool], private_flags: Mapping[str, bool]
) -> None:
    """Sets features and private flags on `ifname` in the calling thread's namespace."""
    eth = IoctlEthtool(ifname)
    try:
        if features:
            _features(eth, features)
        if private_flags:
            _private_flags(eth, ifname, private_flags)
    finally:
        eth.close()


def read_ethtool(ifname: str) -> dict[str, Any]:
    """The requested state of each changeable feature and the private flags of `ifname`.

    Requested, not active: that is what a set changes, and restoring it lets
    the kernel derive the same active set (a feature may be wanted but off
    while one it depends on is off).
    """
    eth = IoctlEthtool(ifname)
    try:
        current = eth.get_features()
        every = list(current.keys())  # iterating the list itself yields tuples
        features = {n: current.is_requested(n) for n in every if current.is_available(n)}
        names = _private_flag_names(eth)
        flags = bits_to_flags(names, _pflags_ioctl(eth, ifname, ETHTOOL_GPFLAGS)) if names else {}
    finally:
        eth.close()
    return {"features": features, "private_flags": flags}


def restore_ethtool(ifname: str, recorded: Mapping[str, Any]) -> list[str]:
    """Gives `ifname` the features and private flags `read_ethtool` recorded.

    Idempotent (only differences are set). Returns the names the device did
    not take back (a feature no longer changeable, a flag it no longer has).
    """
    eth = IoctlEthtool(ifname)
    missed: list[str] = []
    try:
        current = eth.get_features()
        changes = {}
        for name, value in dict(recorded.get("features") or {}).items():
            if name not in current or not current.is_available(name):
                missed.append(name)
            elif current.is_requested(name) != value:
                changes[name] = value
        if changes:
            for name, value in changes.items():
                current[name] = value
            eth.set_features(current)
            after = eth.get_features()
            missed += [n for n, v in changes.items() if after.is_requested(n) != v]
        flags = dict(recorded.get("private_flags") or {})
        if flags:
            names = _private_flag_names(eth)
            missed += [n for n in flags if n not in names]
            keep = {n: v for n, v in flags.items() if n in names}
            bits = _pflags_ioctl(eth, ifname, ETHTOOL_GPFLAGS) if keep else 0
            if keep and flags_to_bits(names, bits, keep) != bits:
                _pflags_ioctl(eth, ifname, ETHTOOL_SPFLAGS, flags_to_bits(names, bits, keep))
    finally:
        eth.close()
    return sorted(missed)
