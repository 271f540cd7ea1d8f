"""Looking at interfaces independently of the agent: `ip -j` snapshots and commands
run inside a network namespace given by path (containerd's pod netns)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from dranet.errors import PeerError
from dranet_sandbox.netlab import ip, ip_json

# `ip -j -d` fields that change without anyone configuring anything: indexes
# and peer ids (a move renumbers), operational state and counters, queue
# discipline, address lifetimes and DAD state. `same_as_before` ignores them.
VOLATILE = frozenset({
    "ifindex", "link_index", "link", "link_netnsid", "operstate", "linkmode", "qdisc",
    "stats", "stats64", "carrier_changes", "carrier_up_count", "carrier_down_count",
    "valid_life_time", "preferred_life_time", "tentative",
})  # fmt: skip
VOLATILE_FLAGS = frozenset({"LOWER_UP", "M-DOWN", "NO-CARRIER"})


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def nic_snapshot(netns: str, ifname: str) -> dict[str, Any] | None:
    """`ip -j -d` link, addresses and routes (all tables) of one interface, minus VOLATILE."""
    done = ip("-j", "-d", "link", "show", "dev", ifname, netns=netns, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return None
    link = json.loads(done.stdout)[0]
    addrs = ip_json("addr", "show", "dev", ifname, netns=netns)
    routes = []
    for family in ("-4", "-6"):
        routes += ip_json(family, "route", "show", "table", "all", "dev", ifname, netns=netns)
    return {
        "link": {**_clean(link), "flags": sorted(set(link["flags"]) - VOLATILE_FLAGS)},
        "addr": [_clean(a) for a in addrs[0]["addr_info"]] if addrs else [],
        "route": sorted(json.dumps(_clean(r), sort_keys=True) for r in routes),
    }


def in_netns(path: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs `cmd` in the network namespace at `path` (nsenter: the mount ns stays ours)."""
    done = subprocess.run(
        ["nsenter", f"--net={path}", "--", *cmd], check=False, capture_output=True, text=True
    )
    if check and done.returncode != 0:
        raise PeerError(f"{' '.join(cmd)} in {path}: {(done.stderr or done.stdout).strip()}")
    return done
