"""The node's network devices: what the agent offers and what is attached.

A full scan (netlink dumps + sysfs) builds the device list; netlink
link/address/default-route events trigger a new scan (a burst coalesces into
one), and a periodic resync catches anything missed. Each scan is diffed
against what subscribers last saw, so they get a SNAPSHOT then
ADDED/MODIFIED/REMOVED events. Devices attached to pods (from the
attachments table) stay listed, with their last known attributes and the
allocation set, although their netdev has left the node namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from dranet.agent.v1 import agent_pb2
from dranet_netlink_agent.discovery import (
    Discovery,
    EventSocket,
    LinkRecord,
    discover,
    is_overflow,
)
from dranet_netlink_agent.naming import device_name, interface_device_name
from dranet_netlink_agent.sysfs import PciInfo, Sysfs
from dranet_netlink_agent.uplinks import is_ignored, uplink_ifindexes

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.05  # how long a burst of events may grow before one scan
RETRY_SECONDS = 1.0  # after a failed scan
QUEUE_LIMIT = 256  # events a subscriber may lag before it is resent a snapshot
Kind = agent_pb2.DeviceEvent


class AttachmentLike(Protocol):
    """The fields of `dranet.store.AttachmentRecord` the inventory reads."""

    @property
    def claim_uid(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def pod_uid(self) -> str: ...
    @property
    def pod_namespace(self) -> str: ...
    @property
    def pod_name(self) -> str: ...
    @property
    def pod_ifname(self) -> str: ...
    @property
    def original(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class NetDevice:
    """One discovered device."""

    name: str
    ifname: str
    ifindex: int
    mac: str
    permanent_mac: str
    mtu: int
    kind: str
    state: str
    alias: str
    encapsulation: str
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    pci_address: str = ""
    pci_vendor: str = ""
    pci_device: str = ""
    pci_subsystem: str = ""
    numa_node: int | None = None
    pcie_root: str = ""
    sriov: bool = False
    sriov_vfs: int = 0
    is_sriov_vf: bool = False
    virtual: bool = False
    rdma: bool = False
    rdma_device: str = ""

    def to_proto(self, allocation: agent_pb2.Allocation | None = None) -> agent_pb2.Device:
        dev = agent_pb2.Device(
            name=self.name, ifname=self.ifname, ifindex=self.ifindex, mac=self.mac,
            permanent_mac=self.permanent_mac, mtu=self.mtu, type=self.kind, state=self.state,
            alias=self.alias, encapsulation=self.encapsulation, ipv4=self.ipv4, ipv6=self.ipv6,
            pci_address=self.pci_address, pci_vendor=self.pci_vendor,
            pci_device=self.pci_device, pci_subsystem=self.pci_subsystem,
            pcie_root=self.pcie_root, sriov=self.sriov, sriov_vfs=self.sriov_vfs,
            is_sriov_vf=self.is_sriov_vf, virtual=self.virtual, rdma=self.rdma,
            rdma_device=self.rdma_device,
        )  # fmt: skip
        if self.numa_node is not None:
            dev.numa_node = self.numa_node
        if allocation is not None:
            dev.allocation.CopyFrom(allocation)
        return dev


def build_device(link: LinkRecord, addresses: Discovery, sysfs: Sysfs) -> NetDevice:
    """Joins a link with its addresses and its sysfs facts (blocking reads)."""
    v4, v6 = addresses.addresses.get(link.ifindex, ((), ()))
    info = sysfs.netdev(link.ifname, ifindex=link.ifindex, mac=link.mac)
    pci: PciInfo | None
    if info is not None:
        pci, virtual, rdma = info.pci, info.virtual, info.rdma_device
    else:
        # class/net belongs to another namespace: trust the netlink parent device.
        pci = sysfs.parent(link.parent_bus, link.parent_dev)
        virtual, rdma = not link.parent_dev, pci.rdma_device if pci else ""
    dev = NetDevice(
        name=device_name(link.ifname), ifname=link.ifname, ifindex=link.ifindex,
        mac=link.mac, permanent_mac=link.permanent_mac, mtu=link.mtu, kind=link.kind,
        state=link.state, alias=link.alias, encapsulation=link.encapsulation,
        ipv4=v4, ipv6=v6, virtual=virtual, rdma=bool(rdma), rdma_device=rdma,
    )  # fmt: skip
    if pci is None:
        return dev
    return replace(
        dev, name=device_name(link.ifname, pci.address), pci_address=pci.address,
        pci_vendor=pci.vendor, pci_device=pci.device, pci_subsystem=pci.subsystem,
        numa_node=pci.numa_node, pcie_root=pci.pcie_root, sriov=pci.sriov,
        sriov_vfs=pci.sriov_vfs, is_sriov_vf=pci.is_sriov_vf,
    )  # fmt: skip


def recorded_addresses(original: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Global (v4, v6) CIDRs of a host-state record's `addresses` [{address, prefixlen}]."""
    v4: list[str] = []
    v6: list[str] = []
    for entry in original.get("addresses") or ():
        try:
            iface = ipaddress.ip_interface(f"{entry['address']}/{int(entry['prefixlen'])}")
        except (KeyError, TypeError, ValueError):
            continue
        if iface.ip.is_link_local or iface.ip.is_loopback or iface.ip.is_multicast:
            continue
        (v4 if iface.version == 4 else v6).append(str(iface))
    return tuple(sorted(v4)), tuple(sorted(v6))


def device_from_original(name: str, original: dict[str, Any]) -> NetDevice:
    """A stand-in for an attached device never seen by this process (agent restart)."""

    def text(key: str) -> str:
        return str(original.get(key) or "")

    v4, v6 = recorded_addresses(original)
    numa = original.get("numa_node")
    return NetDevice(
        name=name, ifname=text("ifname"), ifindex=int(original.get("ifindex") or 0),
        mac=text("mac"), permanent_mac=text("permanent_mac"),
        mtu=int(original.get("mtu") or 0), kind=text("kind"), state=text("state"),
        alias=text("alias"), encapsulation=text("encapsulation"), ipv4=v4, ipv6=v6,
        pci_address=text("pci_address"), numa_node=int(numa) if isinstance(numa, int) else None,
    )  # fmt: skip


def allocation_of(rec: AttachmentLike) -> agent_pb2.Allocation:
    return agent_pb2.Allocation(
        pod=agent_pb2.PodRef(uid=rec.pod_uid, namespace=rec.pod_namespace, name=rec.pod_name),
        claim_uid=rec.claim_uid,
        interface_name=rec.pod_ifname,
    )


_RESYNC = "resync"  # queue marker: the subscriber lagged; send it a snapshot
_Item = agent_pb2.DeviceEvent | str | None  # None: the inventory stopped


def _replace_backlog(queue: asyncio.Queue[_Item], item: _Item) -> None:
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(item)


class Inventory:
    """Devices of the node namespace `netns` (a path; None for our own)."""

    def __init__(
        self,
        *,
        netns: str | None = None,
        sysfs_root: Path = Path("/sys"),
        ignore: Sequence[str] = (),
        resync_interval: float = 60.0,
        attachments: Callable[[], Sequence[AttachmentLike]] = lambda: (),
    ) -> None:
        self._netns = netns
        self._sysfs = Sysfs(sysfs_root)
        self._ignore = tuple(ignore)
        self._resync = resync_interval
        self._attachments = attachments
        self._attached: dict[str, AttachmentLike] = {}  # as of the last scan, by device
        self._present: dict[str, NetDevice] = {}  # every non-loopback link, by DRA name
        self._offered: dict[str, NetDevice] = {}
        self._uplinks: frozenset[str] = frozenset()
        self._last_known: dict[str, NetDevice] = {}
        self._published: dict[str, agent_pb2.Device] = {}
        self._subscribers: set[asyncio.Queue[_Item]] = set()
        self._lagging: set[asyncio.Queue[_Item]] = set()
        self._dirty = asyncio.Event()
        self._scan_lock = asyncio.Lock()
        self._events = EventSocket(netns)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    async def start(self) -> None:
        """Opens the event socket, then scans (so no change falls in between)."""
        await asyncio.to_thread(self._events.open)
        await self.rescan()
        self._tasks = [
            asyncio.create_task(self._watch(), name="inventory-events"),
            asyncio.create_task(self._rescan_loop(), name="inventory-rescan"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._events.close()
        self._stopped = True
        for queue in self._subscribers:
            _replace_backlog(queue, None)

    # -- queries -----------------------------------------------------------

    def devices(self) -> list[agent_pb2.Device]:
        """Offered devices plus devices attached to pods (allocation set), as of the last scan."""
        attached = self._attached
        out: dict[str, agent_pb2.Device] = {}
        for name, dev in self._offered.items():
            rec = attached.get(name)
            out[name] = dev.to_proto(allocation_of(rec) if rec else None)
        for name, rec in attached.items():
            if name in out:
                continue
            known = self._present.get(name) or self._last_known.get(name)
            known = known or device_from_original(name, rec.original)
            out[name] = known.to_proto(allocation_of(rec))
        return [out[n] for n in sorted(out)]

    def find(self, name: str) -> NetDevice | None:
        """An offered device (in the node namespace) by DRA name."""
        return self._offered.get(name)

    def find_by(
        self, *, permanent_mac: str = "", pci_address: str = "", ifname: str = ""
    ) -> NetDevice | None:
        """A link of the last scan (offered or not, never loopback) matching every given key."""
        if not (permanent_mac or pci_address or ifname):
            return None
        for dev in self._present.values():
            if permanent_mac and dev.permanent_mac.lower() != permanent_mac.lower():
                continue
            if pci_address and dev.pci_address != pci_address.lower():
                continue
            if ifname and dev.ifname != ifname:
                continue
            return dev
        return None

    def is_uplink(self, ifname: str) -> bool:
        return ifname in self._uplinks

    # -- scanning ----------------------------------------------------------

    async def rescan(self) -> None:
        """A full scan now; subscribers get the differences."""
        async with self._scan_lock:
            found = await discover(self._netns)
            # The attachments table is a SQLite read: off the event loop, once per scan.
            rows = await asyncio.to_thread(self._attachments)
            self._attached = {rec.device: rec for rec in rows}
            devices = await asyncio.to_thread(self._build, found)
            self._apply(found, devices)
        self._publish()

    def _build(self, found: Discovery) -> list[tuple[LinkRecord, NetDevice]]:
        return [
            (link, build_device(link, found, self._sysfs))
            for link in sorted(found.links, key=lambda lk: lk.ifindex)
            if not link.loopback
        ]

    def _apply(self, found: Discovery, devices: list[tuple[LinkRecord, NetDevice]]) -> None:
        masters = {lk.ifindex: lk.master for lk in found.links if lk.master}
        uplinks = uplink_ifindexes(found.routes, masters)
        present: dict[str, NetDevice] = {}
        offered: dict[str, NetDevice] = {}
        for link, built in devices:
            dev = built
            if dev.name in present:
                # Several netdevs on one PCI function (ports, representors): the
                # first keeps the PCI name, the others go by interface name.
                log.warning("%s shares %s with %s", link.ifname, dev.name, present[dev.name].ifname)
                dev = replace(dev, name=interface_device_name(link.ifname))
                if dev.name in present:
                    continue
            present[dev.name] = dev
            if link.ifindex not in uplinks and not is_ignored(link.ifname, self._ignore):
                offered[dev.name] = dev
        if not found.complete:
            # The dump raced with changes and may have skipped entries: keep what
            # it did not show rather than report a removal, and look again soon.
            log.info("netlink dumps kept racing with changes; rescanning shortly")
            kept = {n: d for n, d in self._present.items() if n not in present}
            present |= kept
            offered |= {n: d for n, d in self._offered.items() if n in kept}
            asyncio.get_running_loop().call_later(RETRY_SECONDS, self._dirty.set)
        self._uplinks = frozenset(lk.ifname for lk in found.links if lk.ifindex in uplinks)
        self._present, self._offered = present, offered

    def _publish(self) -> None:
        """Diffs `devices()` against what subscribers saw and sends the changes."""
        attached = set(self._attached)
        keep = {n: d for n, d in self._last_known.items() if n in attached}
        self._last_known = keep | self._present
        current = {d.name: d for d in self.devices()}
        previous, self._published = self._published, current
        added = [d for n, d in current.items() if n not in previous]
        modified = [d for n, d in current.items() if n in previous and previous[n] != d]
        removed = [d for n, d in previous.items() if n not in current]
        for kind, devs in ((Kind.ADDED, added), (Kind.MODIFIED, modified), (Kind.REMOVED, removed)):
            if devs:
                self._send(agent_pb2.DeviceEvent(kind=kind, devices=devs))

    def _send(self, event: agent_pb2.DeviceEvent) -> None:
        for queue in self._subscribers:
            if queue in self._lagging:
                continue  # its coming snapshot will include this change
            if queue.full():
                _replace_backlog(queue, _RESYNC)  # a fresh snapshot instead of the backlog
                self._lagging.add(queue)
            else:
                queue.put_nowait(event)

    def _snapshot(self) -> agent_pb2.DeviceEvent:
        return agent_pb2.DeviceEvent(kind=Kind.SNAPSHOT, devices=list(self._published.values()))

    async def subscribe(self) -> AsyncIterator[agent_pb2.DeviceEvent]:
        """SNAPSHOT first, then ADDED/MODIFIED/REMOVED; ends when the inventory stops."""
        queue: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        if self._stopped:
            _replace_backlog(queue, None)
        try:
            yield self._snapshot()
            while (item := await queue.get()) is not None:
                if isinstance(item, str):
                    self._lagging.discard(queue)
                    yield self._snapshot()
                else:
                    yield item
        finally:
            self._subscribers.discard(queue)
            self._lagging.discard(queue)

    async def _watch(self) -> None:
        while True:
            try:
                if await self._events.changed():
                    self._dirty.set()
            except OSError as exc:
                # ENOBUFS: events were lost; anything else: the socket is unusable.
                log.warning("netlink event socket failed (%s); reopening and rescanning", exc)
                await asyncio.to_thread(self._events.open)
                self._dirty.set()
                if not is_overflow(exc):
                    await asyncio.sleep(RETRY_SECONDS)

    async def _rescan_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self._resync)
                await asyncio.sleep(COALESCE_SECONDS)
            self._dirty.clear()
            try:
                await self.rescan()
            except Exception as exc:  # keep serving the last good scan
                log.warning("inventory scan failed: %s; retrying", exc)
                await asyncio.sleep(RETRY_SECONDS)
                self._dirty.set()
