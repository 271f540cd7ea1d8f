"""Pod-side L3 beyond addresses: routes, rules, permanent neighbours, VRF.

The `plan_*` functions are pure: they turn a claim's configuration plus the
recorded host state into the exact entries to add. The `apply_*` functions
add them in the pod namespace, idempotently (EEXIST counts as done).
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Sequence
from socket import AF_INET, AF_INET6
from typing import Any

from pyroute2 import AsyncIPRoute

from dranet.netconfig import NetworkConfig
from dranet_netlink_agent.hoststate import NUD_PERMANENT, link_scope_first, route_kwargs
from dranet_netlink_agent.linkops import get_link, tolerate

RT_TABLE_MAIN = 254
RTPROT_BOOT = 3  # what `ip route add` uses


def _net(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text.split("/", maxsplit=1)[0])


def plan_routes(
    cfg: NetworkConfig, host_routes: list[dict[str, Any]], pod_ips: list[str]
) -> list[dict[str, Any]]:
    """The routes to add in the pod, link-scope ones first.

    Configured routes, then the host's routes of the interface (carried over
    as dranet does) unless a configured route has the same destination and
    table. A host route's prefsrc that is not on the pod interface is dropped
    (the kernel would refuse it). With a VRF every route goes to its table.
    """
    vrf_table = cfg.interface.vrf.table if cfg.interface.vrf else 0
    on_pod = {str(_ip(ip)) for ip in pod_ips}
    planned: list[dict[str, Any]] = []
    for conf in cfg.routes:
        net = _net(conf.destination)
        planned.append(
            {
                "family": net.version,
                "dst": str(net.network_address) if net.prefixlen else "",
                "dst_len": net.prefixlen,
                "gateway": conf.gateway,
                "prefsrc": conf.source,
                "scope": conf.scope,
                "table": vrf_table or conf.table or RT_TABLE_MAIN,
                "proto": RTPROT_BOOT,
                "type": 1,
                "priority": None,
            }
        )
    taken = {(r["family"], r["dst"], r["dst_len"], r["table"]) for r in planned}
    reachable = [ipaddress.ip_interface(ip).network for ip in pod_ips] + [
        _net(f"{r['dst'] or ('0.0.0.0' if r['family'] == 4 else '::')}/{r['dst_len']}")
        for r in planned
        if not r["gateway"]
    ]
    for host in host_routes:
        gateway = host.get("gateway")
        if gateway and not any(_ip(gateway) in net for net in reachable):
            continue  # the pod's addresses cannot reach it: the kernel would refuse
        route = dict(host)
        route["table"] = vrf_table or route["table"]
        if route.get("prefsrc") and route["prefsrc"] not in on_pod:
            route["prefsrc"] = ""
        key = (route["family"], route["dst"], route["dst_len"], route["table"])
        if key not in taken:
            taken.add(key)
            planned.append(route)
    return link_scope_first(planned)


def plan_rules(
    cfg: NetworkConfig, host_rules: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Policy rules as pyroute2 keywords: configured ones, then the host's rules
    for the tables of the carried-over routes (none at all with a VRF)."""
    if cfg.interface.vrf:
        return []
    rules: list[dict[str, Any]] = []
    for rule in cfg.rules:
        entry: dict[str, Any] = {"table": rule.table or RT_TABLE_MAIN, "family": AF_INET}
        if rule.priority:
            entry["priority"] = rule.priority
        for key, cidr in (("src", rule.source), ("dst", rule.destination)):
            if cidr:
                net = _net(cidr)
                entry[key] = str(net.network_address)
                entry[f"{key}_len"] = net.prefixlen
                entry["family"] = AF_INET if net.version == 4 else AF_INET6
        rules.append(entry)
    for host in host_rules:
        if host not in rules:
            rules.append(dict(host))
    return rules


async def apply_routes(ipr: AsyncIPRoute, index: int, routes: list[dict[str, Any]]) -> None:
    for route in routes:
        await tolerate(ipr.route("add", **route_kwargs(route, index)), errno.EEXIST)


async def apply_rules(ipr: AsyncIPRoute, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds the rules; returns those this call created (for undo)."""
    created = []
    for rule in rules:
        if await tolerate(ipr.rule("add", **rule), errno.EEXIST):
            created.append(rule)
    return created


async def delete_rules(ipr: AsyncIPRoute, rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        await tolerate(ipr.rule("del", **rule), errno.ENOENT, errno.ESRCH)


async def apply_neighbors(ipr: AsyncIPRoute, index: int, cfg: NetworkConfig) -> None:
    for neigh in cfg.neighbors:
        family = AF_INET if _ip(neigh.destination).version == 4 else AF_INET6
        await ipr.neigh(
            "replace",
            dst=str(_ip(neigh.destination)),
            lladdr=neigh.hardware_addr.lower(),
            ifindex=index,
            state=NUD_PERMANENT,
            family=family,
        )


async def ensure_vrf(ipr: AsyncIPRoute, name: str, table: int) -> tuple[int, bool]:
    """The VRF device `name` with `table`, created if absent; (ifindex, created)."""
    created = False
    link = await get_link(ipr, ifname=name)
    if link is None:
        await ipr.link("add", ifname=name, kind="vrf", vrf_table=table)
        created = True
    found = await ipr.link("get", ifname=name)
    msg = found[0]
    kind = msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
    have = msg.get(("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_VRF_TABLE"))
    if kind != "vrf":
        raise ValueError(f"{name} exists in the pod and is a {kind or 'non-VRF'} device")
    if have is not None and have != table:
        raise ValueError(f"VRF {name} exists in the pod with table {have}, not {table}")
    await ipr.link("set", index=msg["index"], state="up")
    return int(msg["index"]), created
