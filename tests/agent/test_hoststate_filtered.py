"""Capture on a busy node: the kernel sends one interface's state, and capture keeps all of it.

A node may hold tens of thousands of routes on other interfaces; `capture`
must neither miss any of the NIC's entries nor pay for the others (the
kernel filters the dumps: NETLINK_GET_STRICT_CHK). Expected values come from
`ip -j`, never from pyroute2.
"""

from __future__ import annotations

import subprocess
from socket import AF_INET, AF_INET6
from typing import Any

import pytest
from pyroute2.netlink.rtnl import RTM_GETROUTE
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from dranet_netlink_agent.hoststate import capture
from dranet_netlink_agent.linkops import get_link, kernel_dump
from dranet_netlink_agent.netns import rtnl
from dranet_sandbox.netlab import NetLab, ip_json

pytestmark = pytest.mark.root
OTHER_ROUTES = 3000


def _busy_node(lab: NetLab) -> None:
    """`nicf` with a little state; `busy` with thousands of routes, addresses, neighbours."""
    lab.add_nic("nicf", node_cidr="10.61.0.2/24", fabric_cidr="10.61.0.1/24")
    lab.add_nic("busy", node_cidr="10.62.0.2/16", fabric_cidr="10.62.0.1/16")
    batch = [
        "addr add fd61::2/64 dev nicf",
        "route add 10.161.0.0/16 via 10.61.0.1",
        "route add 10.162.0.0/16 via 10.61.0.1 table 61 metric 5",
        "route add fd99::/48 via fd61::1",
        "neigh add 10.61.0.77 lladdr 02:00:00:00:61:77 dev nicf nud permanent",
        "neigh add fd61::77 lladdr 02:00:00:00:61:78 dev nicf nud permanent",
    ]
    batch += [f"route add 10.{100 + i // 256}.{i % 256}.0/24 via 10.62.0.1"
              for i in range(OTHER_ROUTES)]  # fmt: skip
    batch += [f"route add 10.{100 + i // 256}.{i % 256}.0/24 via 10.62.0.1 table 61"
              for i in range(200)]  # fmt: skip
    batch += [f"addr add 10.63.{i}.2/24 dev busy" for i in range(40)]
    batch += [f"neigh add 10.62.1.{i} lladdr 02:00:00:00:62:{i:02x} dev busy nud permanent"
              for i in range(40)]  # fmt: skip
    subprocess.run(
        ["ip", "-n", lab.node, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True
    )


def _ip_routes(netns: str, dev: str) -> set[tuple[Any, ...]]:
    """The routes of `dev` a restore must add by hand, per `ip -j route show table all`."""
    found = set()
    for family in ("-4", "-6"):
        for r in ip_json(family, "route", "show", "table", "all", "dev", dev, netns=netns):
            if r.get("table") == "local" or r.get("protocol") == "kernel":
                continue
            if r["dst"].startswith(("fe80:", "ff00:")):
                continue
            dst = "" if r["dst"] == "default" else r["dst"].split("/")[0]
            table = str(r.get("table", "main"))
            table_id = 254 if table == "main" else int(table)
            found.add((dst, r.get("gateway", ""), table_id, r.get("metric")))
    return found


async def test_capture_records_exactly_the_interface_state_among_thousands(lab: NetLab) -> None:
    _busy_node(lab)

    async with rtnl(lab.path(lab.node)) as ipr:
        link = await get_link(ipr, ifname="nicf")
        assert link is not None
        state = await capture(ipr, link["ifindex"])

    routes = {(r["dst"], r["gateway"], r["table"], r["priority"]) for r in state["routes"]}
    assert routes == _ip_routes(lab.node, "nicf") and len(routes) == 3
    (addrs,) = ip_json("addr", "show", "dev", "nicf", netns=lab.node)
    want_addrs = {
        (a["local"], a["prefixlen"]) for a in addrs["addr_info"] if a.get("scope") == "global"
    }
    assert {(a["address"], a["prefixlen"]) for a in state["addresses"]} == want_addrs
    neigh = ip_json("neigh", "show", "dev", "nicf", "nud", "permanent", netns=lab.node)
    neigh += ip_json("-6", "neigh", "show", "dev", "nicf", "nud", "permanent", netns=lab.node)
    assert {(n["dst"], n["lladdr"]) for n in state["neighbors"]} == {
        (n["dst"], n["lladdr"]) for n in neigh
    }
    assert len(state["neighbors"]) == 2
    assert state["rules"] == []  # no rule points at table 61


async def test_the_kernel_sends_only_the_interface_routes(lab: NetLab) -> None:
    """`kernel_dump` filters nothing itself: what it returns is what the kernel sent."""
    _busy_node(lab)
    every = {
        family: ip_json(family, "route", "show", "table", "all", "dev", "nicf", netns=lab.node)
        for family in ("-4", "-6")
    }

    async with rtnl(lab.path(lab.node)) as ipr:
        link = await get_link(ipr, ifname="nicf")
        assert link is not None
        got = {}
        for family, name in ((AF_INET, "-4"), (AF_INET6, "-6")):
            req = rtmsg()
            req["family"] = family
            req["attrs"] = [("RTA_OIF", link["ifindex"])]
            got[name] = await kernel_dump(ipr, req, RTM_GETROUTE)
        # The socket is handed back unfiltered: a plain dump still sees everything.
        plain = [m async for m in await ipr.route("dump", family=AF_INET)]

    assert [len(got[name]) for name in every] == [len(every[name]) for name in every]
    assert len(got["-4"]) >= 4  # local, broadcast and subnet routes, plus the two added
    assert all(m.get("RTA_OIF") == link["ifindex"] for msgs in got.values() for m in msgs)
    assert len(plain) > OTHER_ROUTES
