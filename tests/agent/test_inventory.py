"""The inventory against the real kernel, in throwaway namespaces.

Every expected value is read independently with `ip -j`, never with pyroute2.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dranet.agent.v1 import agent_pb2
from dranet.store import AttachmentPhase, AttachmentRecord, Role, Store
from dranet_netlink_agent.inventory import Inventory
from dranet_sandbox.netlab import NetLab, ip, ip_json

pytestmark = pytest.mark.root
Kind = agent_pb2.DeviceEvent


@dataclass(frozen=True)
class FakeAttachment:
    claim_uid: str
    device: str
    pod_uid: str
    pod_namespace: str
    pod_name: str
    pod_ifname: str
    original: dict[str, Any] = field(default_factory=dict)


def _wait_operstate(lab: NetLab, names: list[str], state: str = "UP") -> None:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        states = {lk["ifname"]: lk["operstate"] for lk in lab.links(lab.node)}
        if all(states.get(n) == state for n in names):
            return
        time.sleep(0.02)
    raise AssertionError(f"{names} not {state} in time")


def _expected_addresses(netns: str, ifname: str) -> tuple[list[str], list[str]]:
    """Global addresses per `ip -j addr`, as sorted CIDR strings."""
    info = ip_json("addr", "show", "dev", ifname, netns=netns)[0]
    v4 = [f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if a["family"] == "inet"]
    v6 = [
        f"{a['local']}/{a['prefixlen']}"
        for a in info["addr_info"]
        if a["family"] == "inet6" and a["scope"] == "global"
    ]
    return sorted(v4), sorted(v6)


async def _next(stream: AsyncIterator[agent_pb2.DeviceEvent], deadline: float) -> Any:
    return await asyncio.wait_for(anext(stream), max(deadline - time.monotonic(), 0.001))


async def _until(
    stream: AsyncIterator[agent_pb2.DeviceEvent], kind: int, name: str, within: float
) -> agent_pb2.Device:
    """The first event of `kind` naming `name`, failing after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        event = await _next(stream, deadline)
        for dev in event.devices:
            if event.kind == kind and dev.name == name:
                found: agent_pb2.Device = dev
                return found


async def test_devices_carry_netlink_attributes() -> None:
    with NetLab() as lab:
        lab.add_nic("a1", node_cidr="10.1.0.9/24", mtu=9000)
        ip("addr", "add", "10.1.0.10/24", "dev", "a1", netns=lab.node)
        ip("addr", "add", "fd00:1::9/64", "dev", "a1", "nodad", netns=lab.node)
        ip("link", "set", "a1", "alias", "uplink to rack 7", netns=lab.node)
        lab.add_nic("Nic_B")
        _wait_operstate(lab, ["a1", "Nic_B"])
        inv = Inventory(netns=lab.path(lab.node))
        await inv.rescan()
        devices = {d.ifname: d for d in inv.devices()}
        assert set(devices) == {"a1", "Nic_B"}
        for lk in lab.links(lab.node):
            if lk["ifname"] == "lo":
                continue
            dev = devices[lk["ifname"]]
            assert dev.ifindex == lk["ifindex"]
            assert dev.mac == lk["address"]
            assert dev.mtu == lk["mtu"]
            assert dev.type == lk["linkinfo"]["info_kind"]
            assert dev.state == lk["operstate"].lower()
            assert dev.encapsulation == lk["link_type"]
            assert dev.alias == lk.get("ifalias", "")
            v4, v6 = _expected_addresses(lab.node, lk["ifname"])
            assert (list(dev.ipv4), list(dev.ipv6)) == (v4, v6)
            assert dev.virtual and not dev.HasField("allocation")
        assert devices["a1"].ipv4 == ["10.1.0.10/24", "10.1.0.9/24"]
        assert devices["a1"].ipv6 == ["fd00:1::9/64"]  # the fe80:: address is left out
        # Not a DNS label: base32 name, and found by it.
        assert devices["Nic_B"].name.startswith("net-")
        assert inv.find(devices["Nic_B"].name) is not None
        assert inv.find_by(ifname="a1") == inv.find("a1")


async def test_loopback_uplinks_bridge_members_and_ignored_are_not_offered() -> None:
    with NetLab() as lab:
        lab.add_nic("up0", node_cidr="10.2.0.1/24", fabric_cidr="10.2.0.2/24")
        lab.add_nic("m1")
        lab.add_nic("free1")
        lab.add_nic("ign7")
        ip("link", "add", "br0", "type", "bridge", netns=lab.node)
        ip("link", "set", "m1", "master", "br0", netns=lab.node)
        ip("link", "set", "br0", "up", netns=lab.node)
        ip("route", "add", "default", "via", "10.2.0.2", "metric", "100", netns=lab.node)
        _wait_operstate(lab, ["br0"])
        ip("-6", "route", "add", "default", "dev", "br0", "metric", "5", netns=lab.node)
        assert ip_json("route", "show", "default", netns=lab.node)[0]["dev"] == "up0"
        inv = Inventory(netns=lab.path(lab.node), ignore=["ign*"])
        await inv.rescan()
        assert [d.name for d in inv.devices()] == ["free1"]
        for uplink in ("up0", "br0", "m1"):
            assert inv.is_uplink(uplink)
            assert inv.find(uplink) is None
            assert inv.find_by(ifname=uplink) is not None  # still known, just not offered
        assert not inv.is_uplink("free1") and not inv.is_uplink("ign7")
        assert inv.find_by(ifname="lo") is None
        # The uplink goes away: up0 becomes offerable on the next scan.
        ip("route", "del", "default", netns=lab.node)
        await inv.rescan()
        assert [d.name for d in inv.devices()] == ["free1", "up0"]


async def test_subscriber_sees_veth_added_and_removed_within_a_second() -> None:
    with NetLab() as lab:
        lab.add_nic("a1")
        inv = Inventory(netns=lab.path(lab.node), resync_interval=3600)
        await inv.start()
        try:
            stream = inv.subscribe()
            first = await _next(stream, time.monotonic() + 1)
            assert first.kind == Kind.SNAPSHOT
            assert [d.name for d in first.devices] == ["a1"]
            ip("link", "add", "hot1", "type", "veth", "peer", "name", "hot1p", netns=lab.node)
            added = await _until(stream, Kind.ADDED, "hot1", within=1.0)
            assert added.type == "veth"
            ip("addr", "add", "10.9.0.1/24", "dev", "hot1", netns=lab.node)
            changed = await _until(stream, Kind.MODIFIED, "hot1", within=1.0)
            assert list(changed.ipv4) == ["10.9.0.1/24"]
            # A default route makes it an uplink (route events), and undoing it frees it.
            for name in ("hot1", "hot1p"):
                ip("link", "set", name, "up", netns=lab.node)
            ip("route", "add", "default", "dev", "hot1", netns=lab.node)
            await _until(stream, Kind.REMOVED, "hot1", within=1.0)
            ip("route", "del", "default", netns=lab.node)
            await _until(stream, Kind.ADDED, "hot1", within=1.0)
            ip("link", "del", "hot1", netns=lab.node)
            removed = await _until(stream, Kind.REMOVED, "hot1", within=1.0)
            assert removed.ifname == "hot1"
        finally:
            await inv.stop()
        # Stopping ends the stream.
        assert await anext(stream, None) is None


async def test_a_burst_of_changes_is_coalesced() -> None:
    with NetLab() as lab:
        inv = Inventory(netns=lab.path(lab.node), resync_interval=3600)
        await inv.start()
        scans = 0
        real = inv.rescan

        async def counting() -> None:
            nonlocal scans
            scans += 1
            await real()

        inv.rescan = counting  # type: ignore[method-assign]
        try:
            stream = inv.subscribe()
            await anext(stream)
            batch = "".join(f"link add b{i} type veth peer name b{i}p\n" for i in range(20))
            await asyncio.to_thread(_ip_batch, lab.node, batch)
            seen: set[str] = set()
            deadline = time.monotonic() + 2
            while len(seen) < 40:
                event = await _next(stream, deadline)
                seen |= {d.name for d in event.devices if event.kind == Kind.ADDED}
            # 40 links created, each a NEWLINK (plus flag changes): far fewer scans.
            assert scans < 10, scans
        finally:
            await inv.stop()


def _ip_batch(netns: str, batch: str) -> None:
    subprocess.run(["ip", "-n", netns, "-batch", "-"], input=batch, text=True, check=True)


async def test_event_socket_overflow_reopens_and_resyncs(caplog: pytest.LogCaptureFixture) -> None:
    with NetLab() as lab:
        inv = Inventory(netns=lab.path(lab.node), resync_interval=3600)
        await inv.start()
        try:
            stream = inv.subscribe()
            await anext(stream)
            sock = inv._events._sock
            assert sock is not None
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256)
            # Block the event loop while the kernel queues far more than 256 bytes.
            _ip_batch(
                lab.node, "".join(f"link add o{i} type veth peer name o{i}p\n" for i in range(30))
            )
            seen: set[str] = set()
            deadline = time.monotonic() + 3
            while len(seen) < 60:
                event = await _next(stream, deadline)
                seen |= {d.name for d in event.devices if event.kind == Kind.ADDED}
            assert "reopening" in caplog.text
            assert inv._events._sock is not sock  # a fresh socket replaced the overflowed one
        finally:
            await inv.stop()


async def test_attached_devices_stay_listed_as_allocated() -> None:
    with NetLab() as lab:
        lab.add_nic("a1", node_cidr="10.1.0.1/24", mtu=1400)
        lab.add_nic("a2")
        pod = lab.add_pod()
        rows: list[FakeAttachment] = []
        inv = Inventory(netns=lab.path(lab.node), attachments=lambda: rows, resync_interval=0.2)
        await inv.start()
        try:
            stream = inv.subscribe()
            await anext(stream)
            before = inv.find("a1")
            assert before is not None
            # What attach does: record the row, move the link into the pod.
            rows.append(FakeAttachment("claim-1", "a1", "pod-uid", "ns1", "web", "net1"))
            ip("link", "set", "a1", "netns", pod, netns=lab.node)
            assert lab.link("a1", pod) is not None and lab.link("a1", lab.node) is None
            await inv.rescan()
            assert inv.find("a1") is None
            listed = {d.name: d for d in inv.devices()}
            a1 = listed["a1"]
            assert a1.allocation.claim_uid == "claim-1"
            assert (a1.allocation.pod.uid, a1.allocation.pod.namespace) == ("pod-uid", "ns1")
            assert (a1.allocation.pod.name, a1.allocation.interface_name) == ("web", "net1")
            assert (a1.mtu, a1.mac, list(a1.ipv4)) == (1400, before.mac, ["10.1.0.1/24"])
            assert not listed["a2"].HasField("allocation")
            # An attachment the inventory never saw (agent restarted): from its record.
            rows.append(
                FakeAttachment(
                    "claim-2",
                    "pci-0000-99-00-0",
                    "pod-2",
                    "ns2",
                    "db",
                    "net1",
                    {
                        "ifname": "ens9",
                        "mtu": 9000,
                        "mac": "aa:bb:cc:00:00:01",
                        "pci_address": "0000:99:00.0",
                        "kind": "device",
                        "addresses": [
                            {"address": "10.5.0.2", "prefixlen": 24},
                            {"address": "fe80::1", "prefixlen": 64},
                            {"address": "2001:db8::2", "prefixlen": 64},
                        ],
                    },
                )
            )
            # No netlink event for that: the periodic resync publishes it.
            restarted = await _until(stream, Kind.ADDED, "pci-0000-99-00-0", within=2.0)
            assert restarted.ifname == "ens9" and restarted.mtu == 9000
            assert restarted.allocation.claim_uid == "claim-2"
            assert (restarted.type, restarted.pci_address) == ("device", "0000:99:00.0")
            assert (list(restarted.ipv4), list(restarted.ipv6)) == (
                ["10.5.0.2/24"],
                ["2001:db8::2/64"],
            )
            # Detached and gone (a veth dies with its pod): no longer listed.
            rows.clear()
            await inv.rescan()
            assert [d.name for d in inv.devices()] == ["a2"]
        finally:
            await inv.stop()


async def test_churn_never_drops_stable_devices_and_converges() -> None:
    """Dumps racing with constant link churn must not report stable NICs as removed."""
    with NetLab() as lab:
        _ip_batch(
            lab.node, "".join(f"link add s{i} type veth peer name s{i}p\n" for i in range(60))
        )
        stable = {f"s{i}" for i in range(60)} | {f"s{i}p" for i in range(60)}
        inv = Inventory(netns=lab.path(lab.node), resync_interval=3600)
        await inv.start()
        stop = threading.Event()

        def churn() -> None:
            while not stop.is_set():
                _ip_batch(lab.node, "link add c0 type veth peer name c0p\nlink del c0\n")

        worker = threading.Thread(target=churn)
        try:
            stream = inv.subscribe()
            assert {d.name for d in (await anext(stream)).devices} == stable
            removed: set[str] = set()
            worker.start()
            deadline = time.monotonic() + 1.5
            with contextlib.suppress(TimeoutError):
                while True:
                    event = await _next(stream, deadline)
                    if event.kind == Kind.REMOVED:
                        removed |= {d.name for d in event.devices}
            stop.set()
            await asyncio.to_thread(worker.join)
            assert not removed & stable
            # Once quiet, the view converges on what `ip` shows.
            deadline = time.monotonic() + 3
            names = {lk["ifname"] for lk in lab.links(lab.node)} - {"lo"}
            while {d.name for d in inv.devices()} != names:
                assert time.monotonic() < deadline, "inventory did not converge"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            if worker.is_alive():
                worker.join()
            await inv.stop()


async def test_scans_leak_no_file_descriptors() -> None:
    with NetLab() as lab:
        lab.add_nic("a1")
        inv = Inventory(netns=lab.path(lab.node))
        await inv.rescan()
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(30):
            await inv.rescan()
        assert len(os.listdir("/proc/self/fd")) <= before


async def test_attachments_from_the_real_store(tmp_path: Path) -> None:
    """The agent passes `Store.list_attachments`: read off the event loop, once per scan."""
    with NetLab() as lab, Store(tmp_path / "state.db", role=Role.AGENT, boot_id="b1") as store:
        lab.add_nic("a1")
        pod = lab.add_pod()
        inv = Inventory(netns=lab.path(lab.node), attachments=store.list_attachments)
        await inv.rescan()
        store.put_attachment(
            AttachmentRecord(
                claim_uid="c1",
                device="a1",
                pod_uid="p1",
                pod_namespace="ns",
                pod_name="web",
                netns_path=lab.path(pod),
                phase=AttachmentPhase.ATTACHED,
                host_ifname="a1",
                pod_ifname="net1",
                original={"ifname": "a1"},
            )
        )
        ip("link", "set", "a1", "netns", pod, netns=lab.node)
        await inv.rescan()
        [a1] = inv.devices()
        assert (a1.name, a1.allocation.claim_uid, a1.allocation.interface_name) == (
            "a1",
            "c1",
            "net1",
        )
