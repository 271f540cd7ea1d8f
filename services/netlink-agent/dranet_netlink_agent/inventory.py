"""The node's network devices: what the agent offers and what is attached.

A full scan (netlink dumps + sysfs) builds the device list; netlink
link/address/default-route events trigger a new scan (a burst coalesces into
one), and a periodic resync catches anything missed. Each scan is diffed
against what subscribers last saw, so they get a SNAPSHOT then
ADDED/MODIFIED/REMOVED events. Devices attached to pods (from the
attachments table) stay listed, with their last known attributes and the
allocation set, although their netdev has left the node namespace.

The devices themselves (`NetDevice`, `build_device`, ...) live in
`dranet_netlink_agent.device`; their names are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from dranet.agent.v1 import agent_pb2
from dranet_netlink_agent.device import (
    AttachmentLike,
    NetDevice,
    allocation_of,
    build_device,
    device_from_original,
    recorded_addresses,
)
from dranet_netlink_agent.discovery import (
    Discovery,
    EventSocket,
    LinkRecord,
    discover,
    is_overflow,
)
from dranet_netlink_agent.naming import interface_device_name
from dranet_netlink_agent.sysfs import Sysfs
from dranet_netlink_agent.uplinks import is_ignored, uplink_ifindexes

__all__ = [
    "COALESCE_SECONDS",
    "QUEUE_LIMIT",
    "RETRY_SECONDS",
    "AttachmentLike",
    "Inventory",
    "Kind",
    "NetDevice",
    "allocation_of",
    "build_device",
    "device_from_original",
    "recorded_addresses",
]


log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.05  # how long a burst of events may grow before one scan
RETRY_SECONDS = 1.0  # after a failed scan
QUEUE_LIMIT = 256  # events a subscriber may lag before it is resent a snapshot
Kind = agent_pb2.DeviceEvent


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
        self._uplinks: frozenset[str] = frozenset()  # names, for is_uplink
        self._uplink_indexes: frozenset[int] = frozenset()
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
            stand_ins = await asyncio.to_thread(self._stand_ins)
            self._last_known = stand_ins | self._last_known
            self._apply(found, devices)
        self._publish()

    def _build(self, found: Discovery) -> list[tuple[LinkRecord, NetDevice]]:
        return [
            (link, build_device(link, found, self._sysfs))
            for link in sorted(found.links, key=lambda lk: lk.ifindex)
            if not link.loopback
        ]

    def _stand_ins(self) -> dict[str, NetDevice]:
        """Attached devices this process never saw (a restart), from their records and sysfs."""
        return {
            name: device_from_original(name, rec.original, self._sysfs)
            for name, rec in self._attached.items()
            if name not in self._last_known
        }

    def _apply(self, found: Discovery, devices: list[tuple[LinkRecord, NetDevice]]) -> None:
        masters = {lk.ifindex: lk.master for lk in found.links if lk.master}
        lowers = {lk.ifindex: lk.lower for lk in found.links if lk.lower}
        uplinks = uplink_ifindexes(found.routes, masters, lowers)
        uplink_names = {lk.ifname for lk in found.links if lk.ifindex in uplinks}
        if not found.complete:
            # A racing route dump may have missed the default route: keep the
            # previous uplinks protected too, never offer them on a partial view.
            uplinks |= self._uplink_indexes
            uplink_names |= self._uplinks
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
            uplink = link.ifindex in uplinks or link.ifname in uplink_names
            if not uplink and not is_ignored(link.ifname, self._ignore):
                offered[dev.name] = dev
        if not found.complete:
            # The dump raced with changes and may have skipped entries: keep what
            # it did not show rather than report a removal, and look again soon.
            log.info("netlink dumps kept racing with changes; rescanning shortly")
            kept = {n: d for n, d in self._present.items() if n not in present}
            present |= kept
            offered |= {n: d for n, d in self._offered.items() if n in kept}
            asyncio.get_running_loop().call_later(RETRY_SECONDS, self._dirty.set)
        self._uplinks, self._uplink_indexes = frozenset(uplink_names), uplinks
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
