"""Lower devices (IFLA_LINK) under an uplink are never offered.

Pure cases over route/link data, plus the real kernel in NetLab namespaces:
macvlan stands in for VLAN (no 8021q module here); both reach their parent
through the same IFLA_LINK attribute. Expected links are read with `ip -j`.
"""

from __future__ import annotations

import socket

import pytest

from dranet_netlink_agent.discovery import discover, link_record, lower_ifindex
from dranet_netlink_agent.inventory import Inventory
from dranet_netlink_agent.uplinks import RouteRecord, uplink_ifindexes, with_carriers
from dranet_sandbox.netlab import NetLab, ip, ip_json


def default(*oifs: int) -> RouteRecord:
    return RouteRecord(family=socket.AF_INET, table=254, dst_len=0, metric=0, oifs=oifs)


def test_vlan_on_bond_protects_the_bond_and_its_slaves() -> None:
    # 30 = bond0.100 (uplink) on 20 = bond0 with slaves 21, 22; 40 = other vlan on bond0;
    # 50 = macvlan child of the uplink; 60 = unrelated NIC.
    masters = {21: 20, 22: 20}
    lowers = {30: 20, 40: 20, 50: 30}
    assert uplink_ifindexes([default(30)], masters, lowers) == {30, 20, 21, 22}


def test_bridge_over_vlan_protects_the_vlan_parent() -> None:
    # 10 = br0 (uplink) with port 11 = eth0.100 on 12 = eth0; 13 = plain port.
    masters = {11: 10, 13: 10}
    lowers = {11: 12}
    assert uplink_ifindexes([default(10)], masters, lowers) == {10, 11, 12, 13}


def test_a_same_namespace_veth_pair_cycle_ends() -> None:
    assert with_carriers([5], {}, {5: 6, 6: 5}) == {5, 6}
    assert uplink_ifindexes([default(5)], {}) == {5}  # lowers optional


def test_lower_index_from_another_namespace_is_ignored() -> None:
    base = {"index": 7, "ifname": "v", "ifi_type": 1, "flags": 0}
    assert lower_ifindex(base | {"link": 3}) == 3
    assert lower_ifindex(base | {"link": 3, "link_netnsid": 0}) == 0
    assert lower_ifindex(base | {"link": 7}) == 0  # hardware: IFLA_LINK is itself
    assert lower_ifindex(base) == 0
    assert link_record(base | {"link": 3}).lower == 3


def _index(netns: str, name: str) -> int:
    return int(ip_json("link", "show", "dev", name, netns=netns)[0]["ifindex"])


@pytest.mark.root
async def test_discovery_records_same_namespace_lower_only() -> None:
    with NetLab() as lab:
        lab.add_nic("low0")
        ip("link", "add", "mv0", "link", "low0", "type", "macvlan", netns=lab.node)
        found = {lk.ifname: lk for lk in (await discover(lab.path(lab.node))).links}
        assert found["mv0"].lower == _index(lab.node, "low0")
        # low0's IFLA_LINK is its peer in the fabric namespace: not recorded.
        assert "link_netnsid" in ip_json("link", "show", "dev", "low0", netns=lab.node)[0]
        assert found["low0"].lower == 0
        inv = Inventory(netns=lab.path(lab.node))
        await inv.rescan()
        assert inv.find("mv0") is not None and inv.find("low0") is not None


@pytest.mark.root
async def test_macvlan_uplink_on_a_veth_protects_the_veth() -> None:
    with NetLab() as lab:
        lab.add_nic("low0")
        lab.add_nic("free1")
        ip("link", "add", "mv0", "link", "low0", "type", "macvlan", netns=lab.node)
        ip("link", "add", "mv1", "link", "low0", "type", "macvlan", netns=lab.node)
        ip("addr", "add", "10.3.0.1/24", "dev", "mv0", netns=lab.node)
        ip("link", "set", "mv0", "up", netns=lab.node)
        ip("route", "add", "default", "via", "10.3.0.2", "dev", "mv0", netns=lab.node)
        assert ip_json("route", "show", "default", netns=lab.node)[0]["dev"] == "mv0"
        inv = Inventory(netns=lab.path(lab.node))
        await inv.rescan()
        assert inv.is_uplink("mv0") and inv.is_uplink("low0")
        assert inv.find("low0") is None and inv.find_by(ifname="low0") is not None
        # A sibling macvlan and an unrelated NIC stay offerable.
        assert sorted(d.ifname for d in inv.devices()) == ["free1", "mv1"]
        ip("route", "del", "default", netns=lab.node)
        await inv.rescan()
        assert not inv.is_uplink("low0") and inv.find("low0") is not None


@pytest.mark.root
async def test_macvlan_uplink_on_a_bridge_protects_the_bridge_and_its_ports() -> None:
    with NetLab() as lab:
        for name in ("m1", "m2", "free1"):
            lab.add_nic(name)
        ip("link", "add", "br0", "type", "bridge", netns=lab.node)
        for name in ("m1", "m2"):
            ip("link", "set", name, "master", "br0", netns=lab.node)
        ip("link", "set", "br0", "up", netns=lab.node)
        ip("link", "add", "mv0", "link", "br0", "type", "macvlan", netns=lab.node)
        ip("addr", "add", "10.4.0.1/24", "dev", "mv0", netns=lab.node)
        ip("link", "set", "mv0", "up", netns=lab.node)
        ip("route", "add", "default", "via", "10.4.0.2", "dev", "mv0", netns=lab.node)
        inv = Inventory(netns=lab.path(lab.node))
        await inv.rescan()
        for name in ("mv0", "br0", "m1", "m2"):
            assert inv.is_uplink(name), name
            assert inv.find(name) is None, name
        assert [d.ifname for d in inv.devices()] == ["free1"]


@pytest.mark.root
async def test_the_same_namespace_peer_of_a_veth_uplink_is_protected() -> None:
    """Moving that peer away would cut the uplink's only path: it is a lower device."""
    with NetLab() as lab:
        ip("link", "add", "up0", "type", "veth", "peer", "name", "up0p", netns=lab.node)
        lab.add_nic("free1")
        for name in ("up0", "up0p"):
            ip("link", "set", name, "up", netns=lab.node)
        ip("route", "add", "default", "dev", "up0", netns=lab.node)
        inv = Inventory(netns=lab.path(lab.node))
        await inv.rescan()
        assert inv.is_uplink("up0p") and inv.find("up0p") is None
        assert [d.ifname for d in inv.devices()] == ["free1"]
