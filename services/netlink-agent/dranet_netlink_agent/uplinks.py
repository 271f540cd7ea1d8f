"""Which interfaces must never be offered: the node's uplinks and ignored names.

An uplink is an interface carrying the active default route of the main
table: per address family only the routes with the lowest metric count, ECMP
ties and every next hop of a multipath route are kept (as dranet's
`getExcludedUplinkInterfaces`). Their master-descendants — bond slaves,
bridge ports, team members, found by following `master` links breadth-first —
carry the same traffic and are excluded too. macvlan/ipvlan children hang off
a *parent*, not a master, and stay offerable. Pure functions over dumps.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MAIN_TABLE = 254

# Names dranet never offers (Cilium's host plumbing, Docker's bridge); the
# agent's settings may pass these as its ignore list.
DEFAULT_IGNORE: tuple[str, ...] = ("cilium_net", "cilium_host", "docker0")


@dataclass(frozen=True)
class RouteRecord:
    """The parts of one route that decide uplinks."""

    family: int
    table: int
    dst_len: int
    metric: int
    oifs: tuple[int, ...]  # the output interface, or every next hop's


def default_route_ifindexes(routes: Iterable[RouteRecord]) -> frozenset[int]:
    """Interfaces of the lowest-metric default routes of the main table, per family."""
    best: dict[int, tuple[int, set[int]]] = {}
    for route in routes:
        if route.table != MAIN_TABLE or route.dst_len != 0 or not route.oifs:
            continue
        current = best.get(route.family)
        if current is None or route.metric < current[0]:
            best[route.family] = (route.metric, set(route.oifs))
        elif route.metric == current[0]:
            current[1].update(route.oifs)
    return frozenset(i for _, oifs in best.values() for i in oifs)


def with_master_descendants(roots: Iterable[int], masters: Mapping[int, int]) -> frozenset[int]:
    """`roots` plus every interface enslaved to one of them, transitively (BFS)."""
    children: dict[int, list[int]] = {}
    for ifindex, master in masters.items():
        children.setdefault(master, []).append(ifindex)
    seen = set(roots)
    queue = list(seen)
    while queue:
        for child in children.get(queue.pop(0), ()):
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return frozenset(seen)


def uplink_ifindexes(routes: Iterable[RouteRecord], masters: Mapping[int, int]) -> frozenset[int]:
    """Default-route interfaces and their bond/bridge members.

    `masters` maps an ifindex to its master's ifindex (only enslaved links).
    """
    return with_master_descendants(default_route_ifindexes(routes), masters)


def is_ignored(ifname: str, patterns: Sequence[str]) -> bool:
    """True when `ifname` matches one ignore entry (exact name or shell glob)."""
    return any(fnmatch.fnmatchcase(ifname, pattern) for pattern in patterns)
