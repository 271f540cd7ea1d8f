"""Netlink parsing pieces of the inventory, without a kernel."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dranet.agent.v1 import agent_pb2
from dranet_netlink_agent import inventory
from dranet_netlink_agent.discovery import (
    NLM_F_DUMP_INTR,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    Discovery,
    LinkRecord,
    consistent_dump,
    global_address,
    is_relevant,
    link_record,
    route_record,
)

Kind = agent_pb2.DeviceEvent


def _msgs(*flags: int) -> list[dict[str, Any]]:
    return [{"header": {"flags": f}, "n": i} for i, f in enumerate(flags)]


class FakeDump:
    """Answers each dump with the next prepared batch of messages."""

    def __init__(self, *batches: list[dict[str, Any]]) -> None:
        self.batches = list(batches)
        self.calls = 0

    async def __call__(self) -> AsyncIterator[dict[str, Any]]:
        self.calls += 1
        batch = self.batches.pop(0)

        async def gen() -> AsyncIterator[dict[str, Any]]:
            for msg in batch:
                yield msg

        return gen()


async def test_interrupted_dump_is_retried() -> None:
    fetch = FakeDump(_msgs(2, NLM_F_DUMP_INTR | 2), _msgs(2, 2, 2))
    msgs, complete = await consistent_dump(fetch, "link")
    assert (len(msgs), complete) == (3, True)
    assert fetch.calls == 2


async def test_dump_interrupted_every_time_is_returned_as_incomplete() -> None:
    fetch = FakeDump(
        _msgs(NLM_F_DUMP_INTR), _msgs(2, NLM_F_DUMP_INTR), _msgs(NLM_F_DUMP_INTR, 2, 2)
    )
    msgs, complete = await consistent_dump(fetch, "link", attempts=3)
    assert not complete and fetch.calls == 3
    assert [m["n"] for m in msgs] == [0, 1, 2]  # the last attempt's messages


def _nlmsg(kind: int, body: bytes = b"") -> bytes:
    data = struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body
    return data + b"\0" * (-len(data) % 4)


def _rtmsg(dst_len: int, table: int) -> bytes:
    return bytes([socket.AF_INET, dst_len, 0, 0, table, 3, 0, 1]) + b"\0" * 4


def test_relevant_datagrams() -> None:
    assert is_relevant(_nlmsg(RTM_NEWLINK, b"\0" * 16))
    assert is_relevant(_nlmsg(RTM_NEWADDR, b"\0" * 8))
    assert is_relevant(_nlmsg(RTM_NEWROUTE, _rtmsg(0, 254)))
    assert not is_relevant(_nlmsg(RTM_NEWROUTE, _rtmsg(24, 254)))  # not a default route
    assert not is_relevant(_nlmsg(RTM_NEWROUTE, _rtmsg(0, 255)))  # local table
    # A default route behind an unrelated message in the same datagram still counts.
    assert is_relevant(_nlmsg(RTM_NEWROUTE, _rtmsg(8, 254)) + _nlmsg(RTM_NEWROUTE, _rtmsg(0, 254)))
    assert not is_relevant(b"")
    assert not is_relevant(b"\x01\x00")


def test_global_addresses_only() -> None:
    def addr(family: int, value: str, plen: int, **extra: str) -> dict[str, Any]:
        return {"family": family, "index": 3, "prefixlen": plen, "address": value, **extra}

    v4, v6 = socket.AF_INET, socket.AF_INET6
    assert global_address(addr(v4, "10.0.0.2", 24)) == (3, v4, "10.0.0.2/24")
    assert global_address(addr(v6, "fd00::2", 64)) == (3, v6, "fd00::2/64")
    assert global_address(addr(v6, "2001:db8::1", 48)) == (3, v6, "2001:db8::1/48")
    assert global_address(addr(v6, "fe80::1", 64)) is None
    assert global_address(addr(v4, "169.254.1.1", 16)) is None
    assert global_address(addr(v4, "127.0.0.1", 8)) is None
    # Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
    assert global_address(addr(v4, "10.0.0.9", 32, local="10.0.0.8")) == (3, v4, "10.0.0.8/32")


def test_link_and_route_records() -> None:
    msg: dict[str, Any] = {
        "index": 5, "ifname": "ens1", "address": "0C:42:A1:00:00:01", "mtu": 9000,
        "ifi_type": 1, "flags": 0x1003, "operstate": "UP", "master": 7,
        "perm_address": "0c:42:a1:00:00:01", "parent_dev_bus_name": "pci",
        "parent_dev_name": "0000:81:00.0",
    }  # fmt: skip
    rec = link_record(msg)
    assert (rec.kind, rec.state, rec.encapsulation, rec.mac) == (
        "device",
        "up",
        "ether",
        msg["address"].lower(),
    )
    assert (rec.master, rec.parent_bus, rec.parent_dev, rec.loopback) == (
        7,
        "pci",
        "0000:81:00.0",
        False,
    )
    lo = link_record({"index": 1, "ifname": "lo", "ifi_type": 772, "flags": 0x9})
    assert lo.loopback and lo.encapsulation == "loopback"
    route = route_record(
        {"family": 2, "table": 254, "dst_len": 0, "priority": 20,
         "multipath": [{"oif": 3}, {"oif": 4}]}
    )  # fmt: skip
    assert (route.metric, route.oifs, route.table) == (20, (3, 4), 254)


def _veth(ifindex: int, ifname: str) -> LinkRecord:
    return LinkRecord(
        ifindex=ifindex, ifname=ifname, mac=f"aa:00:00:00:00:{ifindex:02x}", permanent_mac="",
        mtu=1500, kind="veth", state="up", alias="", encapsulation="ether", loopback=False,
        master=0, parent_bus="", parent_dev="",
    )  # fmt: skip


async def test_an_incomplete_scan_removes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A dump that kept racing may have skipped links: they stay until a complete scan."""
    scans = [
        Discovery(links=(_veth(2, "a"), _veth(3, "b")), addresses={}, routes=()),
        Discovery(links=(_veth(2, "a"), _veth(4, "c")), addresses={}, routes=(), complete=False),
        Discovery(links=(_veth(2, "a"), _veth(4, "c")), addresses={}, routes=()),
    ]

    async def fake_discover(target: object) -> Discovery:
        return scans.pop(0)

    monkeypatch.setattr(inventory, "discover", fake_discover)
    inv = inventory.Inventory(netns="/nonexistent", sysfs_root=tmp_path)
    await inv.rescan()
    assert [d.name for d in inv.devices()] == ["a", "b"]
    await inv.rescan()  # incomplete: c is new, b was not seen but is kept
    assert [d.name for d in inv.devices()] == ["a", "b", "c"]
    assert inv.find("b") is not None
    await inv.rescan()  # complete: b really is gone
    assert [d.name for d in inv.devices()] == ["a", "c"]
    assert inv.find("b") is None


async def test_a_lagging_subscriber_gets_a_fresh_snapshot_instead_of_a_backlog(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    links: list[LinkRecord] = []

    async def fake_discover(target: object) -> Discovery:
        return Discovery(links=tuple(links), addresses={}, routes=())

    monkeypatch.setattr(inventory, "discover", fake_discover)
    inv = inventory.Inventory(netns="/nonexistent", sysfs_root=tmp_path)
    slow, fast = inv.subscribe(), inv.subscribe()
    assert (await anext(slow)).kind == Kind.SNAPSHOT
    assert (await anext(fast)).kind == Kind.SNAPSHOT
    total = inventory.QUEUE_LIMIT + 10
    for i in range(total):
        links.append(_veth(i + 2, f"v{i}"))
        await inv.rescan()
        event = await anext(fast)  # a subscriber keeping up sees each change
        assert (event.kind, [d.name for d in event.devices]) == (Kind.ADDED, [f"v{i}"])
    event = await anext(slow)
    assert event.kind == Kind.SNAPSHOT and len(event.devices) == total
    links.pop()
    await inv.rescan()
    event = await anext(slow)
    assert (event.kind, [d.name for d in event.devices]) == (Kind.REMOVED, [f"v{total - 1}"])
    await inv.stop()
    assert await anext(slow, None) is None
    # Subscribing after stop: the snapshot, then the end.
    late = inv.subscribe()
    assert (await anext(late)).kind == Kind.SNAPSHOT
    assert await anext(late, None) is None
