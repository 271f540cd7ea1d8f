"""Restoring an interface's recorded host-side state once it is back on the node.

`restore_on_node` gives a link in the node namespace what `hostread.capture`
recorded before the attach: name, MTU, MAC, alias and GSO/GRO sizes, its
master if that still exists, its ethtool settings, its per-interface conf
sysctls (those that differ; before addresses, so `disable_ipv6` is right
when IPv6 addresses go back), addresses (in the order a dump lists them),
routes once it is up (one held by a different route is logged, not forced:
`routing.restore_route`), and permanent neighbours. Rows written before a
field existed simply skip its restore.
"""

from __future__ import annotations

import errno
import logging
from socket import AF_INET, AF_INET6
from typing import Any

from pyroute2 import AsyncIPRoute

from dranet_netlink_agent.ethtool import restore_ethtool
from dranet_netlink_agent.hostread import (
    LINK_FIELDS,
    NUD_PERMANENT,
    in_netns_of,
    read_sysctls,
    sysctl_path,
)
from dranet_netlink_agent.linkops import get_link, set_link, set_state, tolerate
from dranet_netlink_agent.routing import link_scope_first, restore_route

log = logging.getLogger("dranet.agent")


def link_values(state: dict[str, Any]) -> dict[str, Any]:
    """The `set_link` keywords that put back name, MTU, MAC, alias and GSO/GRO sizes."""
    values = {key: state.get(key) for key in LINK_FIELDS if key != "up"}
    if not values.get("alias"):
        values.pop("alias")  # an empty IFLA_IFALIAS would be a change, not a restore
    return values


def restore_order(addresses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The order to add addresses so a dump lists them as recorded.

    The kernel lists IPv4 addresses oldest first (the first is primary) but
    IPv6 addresses newest first.
    """
    v4 = [a for a in addresses if a["family"] == 4]
    v6 = [a for a in addresses if a["family"] == 6]
    return v4 + v6[::-1]


async def restore_master(ipr: AsyncIPRoute, index: int, master: dict[str, Any]) -> None:
    """Enslaves the link again to its recorded master, if that master still exists."""
    if not master:
        return
    found = await get_link(ipr, index=master["ifindex"])
    if found is None or found["ifname"] != master["ifname"]:
        found = await get_link(ipr, ifname=master["ifname"])
    if found is None or found["kind"] != master["kind"]:
        log.warning(
            "%s %s, the master of ifindex %d, is gone from the node: left without one",
            master["kind"] or "master",
            master["ifname"],
            index,
        )
        return
    current = await get_link(ipr, index=index)
    if current is None or current["master"] == found["ifindex"]:
        return
    if current["up"]:
        await set_state(ipr, index, False)  # a bond takes only slaves that are down
    await ipr.link("set", index=index, master=found["ifindex"])


def changed_sysctls(recorded: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """The recorded sysctls whose value is not the current one, in recorded order (pure)."""
    return {key: value for key, value in recorded.items() if current.get(key) != value}


def write_changed_sysctls(
    ifname: str, recorded: dict[str, str], sysctl_root: str = "/proc/sys"
) -> list[str]:
    """Blocking; run in the node namespace. Writes what differs; returns what failed."""
    missed = []
    for key, value in changed_sysctls(recorded, read_sysctls(ifname, sysctl_root)).items():
        try:
            with open(sysctl_path(sysctl_root, ifname, key), "w", encoding="ascii") as f:
                f.write(value)
        except OSError as exc:
            missed.append(f"{key}={value} ({exc.strerror or exc})")
    return missed


async def restore_sysctls_on_node(
    ipr: AsyncIPRoute, index: int, recorded: dict[str, str], sysctl_root: str = "/proc/sys"
) -> None:
    link = await get_link(ipr, index=index)
    if link is None:
        raise LookupError(f"no link with index {index}")
    name = str(link["ifname"])
    missed = await in_netns_of(ipr, lambda: write_changed_sysctls(name, recorded, sysctl_root))
    if missed:
        log.warning("%s did not take back sysctl(s) %s", name, ", ".join(missed))


async def restore_ethtool_on_node(ipr: AsyncIPRoute, index: int, recorded: dict[str, Any]) -> None:
    link = await get_link(ipr, index=index)
    if link is None:
        raise LookupError(f"no link with index {index}")
    name = str(link["ifname"])
    missed = await in_netns_of(ipr, lambda: restore_ethtool(name, recorded))
    if missed:
        log.warning("%s did not take back ethtool setting(s) %s", name, ", ".join(missed))


async def restore_on_node(
    ipr: AsyncIPRoute, index: int, state: dict[str, Any], sysctl_root: str = "/proc/sys"
) -> None:
    """Gives a link that is back in the node namespace its recorded state.

    `sysctl_root` is the agent's procfs `sys` (`configure.write_sysctls`).
    Idempotent: run twice, the second run changes nothing.
    """
    current = await get_link(ipr, index=index)
    if current is None:
        raise LookupError(f"no link with index {index}")
    values = {k: v for k, v in link_values(state).items() if current.get(k) != v}
    if values:
        if current["up"]:
            await set_state(ipr, index, False)  # a rename needs the link down
        await set_link(ipr, index, **values)
    # Before addresses: enslaving may need the link down, and a VRF takes its routes.
    await restore_master(ipr, index, state.get("master") or {})
    if state.get("ethtool"):
        await restore_ethtool_on_node(ipr, index, state["ethtool"])
    if state.get("sysctls"):  # after the rename and MTU, before the addresses
        await restore_sysctls_on_node(ipr, index, state["sysctls"], sysctl_root)
    for addr in restore_order(state.get("addresses", [])):
        kwargs: dict[str, Any] = {
            "index": index,
            "address": addr["address"],
            "prefixlen": addr["prefixlen"],
            "family": AF_INET if addr["family"] == 4 else AF_INET6,
        }
        if addr.get("broadcast"):
            kwargs["broadcast"] = addr["broadcast"]
        if addr.get("label"):
            kwargs["label"] = addr["label"]
        if addr.get("flags"):
            kwargs["IFA_FLAGS"] = addr["flags"]
        await tolerate(ipr.addr("add", **kwargs), errno.EEXIST)
    up = bool(state.get("up", True))
    if up:  # a down link holds no routes; bringing it up and down would drop IPv6 addresses
        await set_state(ipr, index, True)
        for route in link_scope_first(state.get("routes", [])):
            await restore_route(ipr, index, route)
    for neigh in state.get("neighbors", []):
        await ipr.neigh(
            "replace",
            dst=neigh["dst"],
            lladdr=neigh["lladdr"],
            ifindex=index,
            state=NUD_PERMANENT,
            family=AF_INET if neigh["family"] == 4 else AF_INET6,
        )
