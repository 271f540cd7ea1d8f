"""An incomplete scan never un-protects an uplink (fake dumps, no kernel needed)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dranet_netlink_agent import inventory
from dranet_netlink_agent.discovery import Discovery, LinkRecord
from dranet_netlink_agent.uplinks import RouteRecord


def _veth(ifindex: int, ifname: str) -> LinkRecord:
    return LinkRecord(
        ifindex=ifindex, ifname=ifname, mac=f"aa:00:00:00:00:{ifindex:02x}", permanent_mac="",
        mtu=1500, kind="veth", state="up", alias="", encapsulation="ether", loopback=False,
        master=0, parent_bus="", parent_dev="",
    )  # fmt: skip


def _default(oif: int) -> RouteRecord:
    return RouteRecord(family=socket.AF_INET, table=254, dst_len=0, metric=0, oifs=(oif,))


async def test_a_partial_route_dump_keeps_the_previous_uplinks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    links = (_veth(2, "up0"), _veth(3, "b"), _veth(4, "c"))
    scans = [
        Discovery(links=links, addresses={}, routes=(_default(2),)),
        # The route dump raced and missed up0's default route.
        Discovery(links=links, addresses={}, routes=(), complete=False),
        # Still racing; this partial view shows a new default route on c: both protected.
        Discovery(links=links, addresses={}, routes=(_default(4),), complete=False),
        # A complete scan is trusted as it is: only c carries the default route now.
        Discovery(links=links, addresses={}, routes=(_default(4),)),
    ]

    async def fake_discover(target: object) -> Discovery:
        return scans.pop(0)

    monkeypatch.setattr(inventory, "discover", fake_discover)
    inv = inventory.Inventory(netns="/nonexistent", sysfs_root=tmp_path)
    await inv.rescan()
    assert [d.name for d in inv.devices()] == ["b", "c"] and inv.is_uplink("up0")
    await inv.rescan()
    assert [d.name for d in inv.devices()] == ["b", "c"]
    assert inv.is_uplink("up0") and inv.find("up0") is None
    await inv.rescan()
    assert [d.name for d in inv.devices()] == ["b"]
    assert inv.is_uplink("up0") and inv.is_uplink("c")
    await inv.rescan()
    assert [d.name for d in inv.devices()] == ["b", "up0"]
    assert not inv.is_uplink("up0") and inv.is_uplink("c")
