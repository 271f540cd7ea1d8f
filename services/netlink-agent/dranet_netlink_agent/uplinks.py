"""Which interfaces must never be offered: the node's uplinks and ignored names.

An uplink is an interface carrying the active default route of the main
table: per address family only the routes with the lowest metric count, ECMP
ties and every next hop of a multipath route are kept (as dranet's
`getExcludedUplinkInterfaces`). Everything that carries the same traffic is
excluded too: master-descendants (bond slaves, bridge ports, team members)
and lower devices (IFLA_LINK: the parent of a VLAN or macvlan, the
same-namespace peer of a veth), followed together until nothing new turns
up, so `bond0.100` protects `bond0` and its slaves and a bridge over
`eth0.100` protects `eth0`. Only downward links are followed: a macvlan child
*of* an uplink, or a sibling sharing its parent, stays offerable. Pure
functions over dumps.
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


def with_carriers(
    roots: Iterable[int], masters: Mapping[int, int], lowers: Mapping[int, int]
) -> frozenset[int]:
    """`roots` plus every interface their traffic depends on, transitively.

    From each interface: its lower device (`lowers`) and the interfaces
    enslaved to it (`masters`), and from those the same again (BFS; cycles
    such as a veth pair in one namespace end at the first repeat).
    """
    children: dict[int, list[int]] = {}
    for ifindex, master in masters.items():
        children.setdefault(master, []).append(ifindex)
    seen = set(roots)
    queue = list(seen)
    while queue:
        current = queue.pop(0)
        lower = lowers.get(current, 0)
        for nxt in (*children.get(current, ()), *((lower,) if lower else ())):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return frozenset(seen)


def uplink_ifindexes(
    routes: Iterable[RouteRecord],
    masters: Mapping[int, int],
    lowers: Mapping[int, int] | None = None,
) -> frozenset[int]:
    """Default-route interfaces, their bond/bridge members and their lower devices.

    `masters` maps an ifindex to its master's ifindex (only enslaved links);
    `lowers` maps an ifindex to its lower device's (IFLA_LINK, same namespace only).
    """
    return with_carriers(default_route_ifindexes(routes), masters, lowers or {})


def is_ignored(ifname: str, patterns: Sequence[str]) -> bool:
    """True when `ifname` matches one ignore entry (exact name or shell glob)."""
    return any(fnmatch.fnmatchcase(ifname, pattern) for pattern in patterns)
