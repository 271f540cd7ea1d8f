"""Pod-side L3 beyond addresses: routes, rules, permanent neighbours, VRF.

The `plan_*` functions are pure: they turn a claim's configuration plus the
recorded host state into the exact entries to add. The `apply_*` functions
add them in the pod namespace, idempotently. The kernel answers EEXIST for a
route whenever one with the same table, destination and metric exists, be
it ours or the pod's own (its CNI default route): such a route is read back
and counts as done only if it is the one asked for; otherwise the step
fails and the attach is rolled back. Rules are added with NLM_F_EXCL, which
the kernel refuses only for an identical rule (same priority and
selectors): that one counts as done, and is not ours to delete.
`restore_route` puts a recorded route back on the node at detach with the
same check, but a conflict there is logged, not raised: the device must come
back.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from collections.abc import Sequence
from socket import AF_INET, AF_INET6
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTM_GETROUTE
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from dranet.netconfig import NetworkConfig
from dranet_netlink_agent.hostread import NUD_PERMANENT, route_entry
from dranet_netlink_agent.linkops import get_link, kernel_dump, tolerate

RT_TABLE_MAIN = 254
RTPROT_BOOT = 3  # what `ip route add` uses
IP6_RT_PRIO_USER = 1024  # the metric the kernel gives an IPv6 route without one
TABLE_NAMES = {253: "default", 254: "main", 255: "local"}
RT_SCOPE_LINK = 253
log = logging.getLogger("dranet.agent")


def _net(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text.split("/", maxsplit=1)[0])


def route_kwargs(route: dict[str, Any], index: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "family": AF_INET if route["family"] == 4 else AF_INET6,
        "oif": index,
        "dst_len": route["dst_len"],
        "table": route["table"],
        "scope": route["scope"],
        "proto": route.get("proto", 3),
        "type": route.get("type", 1),
    }
    if route["dst"]:
        kwargs["dst"] = route["dst"]
    for key in ("gateway", "prefsrc", "priority"):
        if route.get(key):
            kwargs[key] = route[key]
    return kwargs


def link_scope_first(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Routes without a gateway first, so gateways are reachable when their turn comes."""
    return sorted(routes, key=lambda r: (bool(r.get("gateway")), r.get("scope") != RT_SCOPE_LINK))


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
                "origin": "claim",
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
        route = dict(host, origin="node")
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


def _addr(text: str | None) -> str:
    return str(ipaddress.ip_address(text)) if text else ""


def metric(route: dict[str, Any]) -> int:
    """The metric the kernel keys the route on (IPv6 turns 0 into 1024)."""
    if route.get("priority"):
        return int(route["priority"])
    return IP6_RT_PRIO_USER if route["family"] == 6 else 0


def route_mismatch(asked: dict[str, Any], index: int, have: dict[str, Any]) -> list[str]:
    """What differs between the route asked for on link `index` and one that exists
    with the same key (pure); [] when it is the same route.

    A source, or an IPv4 scope, left unset (""/0) in the request accepts any.
    """
    differ = []
    if have.get("oif") != index:
        differ.append("device")
    if _addr(asked.get("gateway")) != _addr(have.get("gateway")):
        differ.append("gateway")
    if asked.get("prefsrc") and _addr(asked["prefsrc"]) != _addr(have.get("prefsrc")):
        differ.append("source")
    if asked["family"] == 4 and asked.get("scope") and asked["scope"] != have.get("scope"):
        differ.append("scope")  # IPv6 routes have no scope: the kernel reports 0
    return differ


def describe_route(route: dict[str, Any], ifname: str) -> str:
    """`via GW dev NAME [src S] [scope N]`, as `ip route` would show it."""
    text = f"via {route['gateway']} dev {ifname}" if route.get("gateway") else f"dev {ifname}"
    if route.get("prefsrc"):
        text += f" src {route['prefsrc']}"
    if route["family"] == 4 and route.get("scope"):
        text += f" scope {route['scope']}"
    return text


async def existing_route(ipr: AsyncIPRoute, route: dict[str, Any]) -> dict[str, Any] | None:
    """The route holding `route`'s key (table, destination, metric), with its `oif`."""
    req = rtmsg()
    req["family"] = AF_INET if route["family"] == 4 else AF_INET6
    req["attrs"] = [("RTA_TABLE", route["table"])]  # the kernel sends that table only
    want = (_addr(route.get("dst")), route["dst_len"], route["table"], metric(route))
    for msg in await kernel_dump(ipr, req, RTM_GETROUTE):
        have = route_entry(msg)
        if (_addr(have["dst"]), have["dst_len"], have["table"], metric(have)) == want:
            multipath = bool(msg.get("RTA_MULTIPATH"))
            return {**have, "oif": None if multipath else msg.get("RTA_OIF")}
    return None


async def _name(ipr: AsyncIPRoute, index: int | None) -> str:
    link = await get_link(ipr, index=index) if index else None
    return str(link["ifname"]) if link else f"ifindex {index}"


def _where(route: dict[str, Any]) -> str:
    """`route DST/LEN in table T [metric M]`: the key the kernel answers EEXIST on."""
    dst = f"{route.get('dst') or ('0.0.0.0' if route['family'] == 4 else '::')}/{route['dst_len']}"
    where = f"route {dst} in table {TABLE_NAMES.get(route['table'], route['table'])}"
    if route.get("priority"):
        where += f" metric {route['priority']}"
    return where


async def route_conflict(
    ipr: AsyncIPRoute, index: int, route: dict[str, Any]
) -> tuple[str, str, str] | None:
    """After EEXIST: None if the existing route is `route` on link `index`; else
    (where, what exists, what was asked), "what exists" empty if it cannot be read back."""
    have = await existing_route(ipr, route)
    if have is not None and not route_mismatch(route, index, have):
        return None
    if have is None:
        exists = ""
    elif have["oif"] is None:
        exists = "as a multipath or typed (blackhole, unreachable...) route"
    else:
        exists = describe_route(have, await _name(ipr, have["oif"]))
    return _where(route), exists, describe_route(route, await _name(ipr, index))


async def check_existing(ipr: AsyncIPRoute, index: int, route: dict[str, Any]) -> None:
    """After EEXIST: returns if the existing route is `route`; else raises saying which."""
    conflict = await route_conflict(ipr, index, route)
    if conflict is None:
        return
    where, exists, asked = conflict
    if not exists:
        raise ValueError(f"{where} exists in the pod (EEXIST) but cannot be read back")
    if route.get("origin") == "node":
        who, fix = "the route carried over from the node", "remove it from the node or the pod"
    else:
        who, fix = "the claim", "give the claim's route another table, or free it in the pod"
    raise ValueError(f"{where} already exists {exists} in the pod; {who} asks {asked}: {fix}")


async def restore_route(ipr: AsyncIPRoute, index: int, route: dict[str, Any]) -> bool:
    """Adds a recorded route back on the node; True once it is there as recorded.

    A different route holding its key (added on the node while the device was
    in the pod) is left alone and logged, naming both: the detach still gives
    the device back, but does not claim a route it could not restore.
    """
    if await tolerate(ipr.route("add", **route_kwargs(route, index)), errno.EEXIST):
        return True
    conflict = await route_conflict(ipr, index, route)
    if conflict is None:
        return True
    where, exists, asked = conflict
    log.warning(
        "%s not restored: it already exists %s on the node; the record has %s: "
        "the other route stays, add the recorded one by hand if it is still wanted",
        where,
        exists or "(EEXIST, but it cannot be read back)",
        asked,
    )
    return False


async def apply_routes(ipr: AsyncIPRoute, index: int, routes: list[dict[str, Any]]) -> None:
    for route in routes:
        if not await tolerate(ipr.route("add", **route_kwargs(route, index)), errno.EEXIST):
            await check_existing(ipr, index, route)


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
