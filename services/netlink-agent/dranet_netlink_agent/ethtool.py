"""ethtool features and private flags, set inside the pod namespace.

The SIOCETHTOOL ioctl acts on an interface *name* in the namespace of the
socket it is issued on, so `apply_ethtool` must run in a thread that has
entered the pod namespace (`netns.arun_in_netns`). Features go through
pyroute2's ioctl helper; private flags (ETHTOOL_GPFLAGS/SPFLAGS, string set
ETH_SS_PRIV_FLAGS) have no pyroute2 API, so they are issued here.
"""

from __future__ import annotations

import ctypes
import fcntl
import fnmatch
from collections.abc import Iterable, Mapping

from pyroute2.ethtool.ioctl import SIOCETHTOOL, EthtoolValue, IfReq, IoctlEthtool

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


def _private_flags(eth: IoctlEthtool, ifname: str, requested: Mapping[str, bool]) -> None:
    try:
        names = eth.get_stringset(set_id=ETH_SS_PRIV_FLAGS)
    except OSError:
        names = []
    unknown = sorted(set(requested) - set(names))
    if unknown:
        have = ", ".join(names) or "none"
        raise ValueError(f"unknown private flag(s) {', '.join(unknown)} (device has: {have})")
    flags = _pflags_ioctl(eth, ifname, ETHTOOL_GPFLAGS)
    new = flags
    for name, value in requested.items():
        bit = 1 << names.index(name)
        new = (new | bit) if value else (new & ~bit)
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
