"""DRA device health: `v1alpha1.DRAResourceHealth/NodeWatchResources` from the agent's inventory.

The netlink agent's `WatchDevices` stream (a SNAPSHOT, then changes) feeds a
`DeviceHealthTracker`, pure state turning device events into one health per
device; `DeviceHealthServicer` streams the complete list (pool = node name) to
every kubelet watcher, at once on each change and every `interval` seconds.

Rules (decided here, kept in one place):
- operstate `up` or `unknown` (drivers without carrier reporting, e.g. some
  virtual links) -> HEALTHY; `down`, `lowerlayerdown`, `notpresent` ->
  UNHEALTHY; anything else (`dormant`, `testing`, empty) -> UNKNOWN.
- A device attached to a pod is HEALTHY whatever state the agent lists for
  it: the agent does not watch links inside pods, and the state it lists is
  the last one seen on the node, often taken mid-attach (moving a link to
  another namespace takes it down), so it is no evidence either way. The
  agent "says otherwise" by removing the device from its inventory (below)
  or by becoming unreachable.
- A device that leaves the inventory (REMOVED, or missing from a new
  SNAPSHOT) is reported UNHEALTHY ("gone from the node"), not UNKNOWN: a pod
  holding a claim on it cannot get it. It is dropped from the list
  `forget_after` seconds later (the kubelet then turns it Unknown), so
  vanished virtual links do not pile up; it is HEALTHY again if it comes back.
- While the agent is unreachable every device is UNKNOWN: nothing is watched.
- `last_updated_time` is when the health was last confirmed: the send time
  while the agent stream is live, the moment it was lost otherwise.
- `health_check_timeout_seconds` (default 3 x interval) is sent so that one
  late periodic send does not make the kubelet flip devices to Unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from enum import IntEnum
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc

from dranet.agent.v1 import agent_pb2
from dranet.kubelet.drahealth.v1alpha1 import api_pb2 as health_pb2
from dranet.kubelet.drahealth.v1alpha1 import api_pb2_grpc as health_grpc

if TYPE_CHECKING:
    from dranet.agent.v1.agent_pb2_grpc import NetlinkAgentAsyncStub

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
Kind = agent_pb2.DeviceEvent.Kind

HEALTHY_STATES = frozenset({"up", "unknown"})
UNHEALTHY_STATES = frozenset({"down", "lowerlayerdown", "notpresent"})
DEFAULT_INTERVAL = 30.0
DEFAULT_FORGET_AFTER = 600.0
MESSAGE_LIMIT = 1024  # the kubelet truncates longer messages the same way


class Health(IntEnum):
    """Numbered as `v1alpha1.HealthStatus`."""

    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2


@dataclass(frozen=True)
class DeviceHealthEntry:
    device: str
    health: Health
    message: str
    changed_at: float  # when `health` last changed


@dataclass(frozen=True)
class _Known:
    entry: DeviceHealthEntry
    ifname: str
    detail: str  # the message from the agent's last live report
    removed_at: float | None = None


def state_health(state: str) -> Health:
    """A link operstate (as netlink names it) -> health."""
    state = state.lower()
    if state in HEALTHY_STATES:
        return Health.HEALTHY
    if state in UNHEALTHY_STATES:
        return Health.UNHEALTHY
    return Health.UNKNOWN


def truncate(message: str, limit: int = MESSAGE_LIMIT) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _link(ifname: str, device: str) -> str:
    return f"link {ifname}" if ifname else f"device {device}"


class DeviceHealthTracker:
    """Device events in, one health per device out. No I/O; times are passed in.

    `include` limits tracking to the devices the plugin publishes (the publish
    filter); devices it rejects are not reported at all.
    """

    def __init__(
        self,
        *,
        include: Callable[[agent_pb2.Device], bool] | None = None,
        forget_after: float = DEFAULT_FORGET_AFTER,
    ) -> None:
        self._include = include
        self._forget_after = forget_after
        self._known: dict[str, _Known] = {}
        self.connected = False
        self.ready = False  # a first SNAPSHOT has arrived
        self.last_contact = 0.0  # when the agent stream was last known live

    # --- input ----------------------------------------------------------------

    def apply(self, event: agent_pb2.DeviceEvent, now: float) -> bool:
        """Applies one event; True when some device's health or message changed."""
        before = self._view()
        if event.kind == Kind.SNAPSHOT:
            self.connected = self.ready = True
            names = {d.name for d in event.devices}
            for name in [n for n in self._known if n not in names]:
                self._remove(name, now)
            for device in event.devices:
                self._upsert(device, now)
        elif event.kind in (Kind.ADDED, Kind.MODIFIED):
            for device in event.devices:
                self._upsert(device, now)
        elif event.kind == Kind.REMOVED:
            for device in event.devices:
                self._remove(device.name, now)
        else:
            log.warning("ignoring device event of unknown kind %d", event.kind)
            return False
        self.last_contact = now
        return self._view() != before

    def disconnected(self, now: float, reason: str) -> bool:
        """The agent stream is gone: every device turns UNKNOWN until the next SNAPSHOT.

        Failed reconnects change nothing: the first loss's reason is kept.
        """
        if not self.connected and self.ready:
            return False
        before = self._view()
        if self.connected:
            self.last_contact = now
        self.connected = False
        for name, known in self._known.items():
            message = f"the netlink agent is unreachable ({reason}); last known: {known.detail}"
            entry = self._entry(known, Health.UNKNOWN, message, now)
            self._known[name] = replace(known, entry=entry)
        return self._view() != before

    # --- output ---------------------------------------------------------------

    def devices(self, now: float) -> list[DeviceHealthEntry]:
        """Every tracked device, sorted by name; long-removed ones are forgotten here."""
        for name in [n for n, k in self._known.items() if self._expired(k, now)]:
            del self._known[name]
        return [self._known[name].entry for name in sorted(self._known)]

    # --- internals ------------------------------------------------------------

    def _view(self) -> dict[str, tuple[Health, str]]:
        return {n: (k.entry.health, k.entry.message) for n, k in self._known.items()}

    def _expired(self, known: _Known, now: float) -> bool:
        return known.removed_at is not None and now - known.removed_at >= self._forget_after

    @staticmethod
    def _entry(known: _Known, health: Health, message: str, now: float) -> DeviceHealthEntry:
        """`known`'s entry with a new health and message; changed_at moves only with health."""
        changed_at = known.entry.changed_at if known.entry.health == health else now
        return DeviceHealthEntry(known.entry.device, health, truncate(message), changed_at)

    def _upsert(self, device: agent_pb2.Device, now: float) -> None:
        previous = self._known.get(device.name)
        if self._include is not None and not self._include(device):
            self._known.pop(device.name, None)
            return
        state = device.state.lower()
        link = _link(device.ifname, device.name)
        if device.HasField("allocation"):
            alloc = device.allocation
            health = Health.HEALTHY
            message = (
                f"attached to pod {alloc.pod.namespace}/{alloc.pod.name}"
                + (f" as {alloc.interface_name}" if alloc.interface_name else "")
                + f"; {link} is not watched inside the pod"
                + (f" (last seen on the node: {state})" if state else "")
            )
        else:
            health = state_health(state)
            message = f"{link} operstate {state or 'not reported'}"
        if previous is None:
            entry = DeviceHealthEntry(device.name, health, truncate(message), now)
        else:
            entry = self._entry(previous, health, message, now)
        self._known[device.name] = _Known(entry, device.ifname, message)

    def _remove(self, name: str, now: float) -> None:
        known = self._known.get(name)
        if known is None:
            return
        removed_at = known.removed_at if known.removed_at is not None else now
        message = (
            f"{_link(known.ifname, name)} is gone from the node "
            "(no longer in the netlink agent's inventory)"
        )
        entry = self._entry(known, Health.UNHEALTHY, message, now)
        self._known[name] = replace(known, entry=entry, detail=message, removed_at=removed_at)


# --- gRPC ---------------------------------------------------------------------


def health_response(
    entries: list[DeviceHealthEntry], *, pool: str, updated: float, timeout_seconds: int
) -> health_pb2.NodeWatchResourcesResponse:
    """The complete list as the kubelet wants it."""
    response = health_pb2.NodeWatchResourcesResponse()
    for entry in entries:
        response.devices.add(
            device=health_pb2.DeviceIdentifier(pool_name=pool, device_name=entry.device),
            health=health_pb2.HealthStatus.ValueType(int(entry.health)),
            last_updated_time=int(updated),
            health_check_timeout_seconds=timeout_seconds,
            message=entry.message,
        )
    return response


class DeviceHealthServicer(health_grpc.DRAResourceHealthServicer):
    """Streams the tracker's list to every watcher; `follow` feeds the tracker from the agent."""

    def __init__(
        self,
        tracker: DeviceHealthTracker,
        *,
        pool: str,
        interval: float = DEFAULT_INTERVAL,
        health_check_timeout: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not pool:
            raise ValueError("pool is empty; pass the node name (the pool dranet publishes)")
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.tracker = tracker
        self._pool = pool
        self._interval = interval
        self._timeout = (
            health_check_timeout if health_check_timeout is not None else int(3 * interval + 0.5)
        )
        self._clock = clock
        # Replaced on every change: a watcher holding the old one wakes up once.
        self._changed = asyncio.Event()
        self.watchers = 0

    def changed(self) -> None:
        """Wake every watcher to send the current list."""
        self._changed.set()
        self._changed = asyncio.Event()

    def response(self) -> health_pb2.NodeWatchResourcesResponse:
        now = self._clock()
        updated = now if self.tracker.connected else self.tracker.last_contact
        return health_response(
            self.tracker.devices(now),
            pool=self._pool,
            updated=updated,
            timeout_seconds=self._timeout,
        )

    async def NodeWatchResources(
        self, request: health_pb2.NodeWatchResourcesRequest, context: Context
    ) -> AsyncIterator[health_pb2.NodeWatchResourcesResponse]:
        self.watchers += 1
        log.info("kubelet started watching device health (%d watchers)", self.watchers)
        try:
            # Before the first inventory there is nothing true to say; wait for it.
            send = self.tracker.ready
            while True:
                wake = self._changed  # taken before building, so no change is missed
                if send:
                    yield self.response()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=self._interval)
                send = True
        finally:
            self.watchers -= 1

    async def follow(self, agent: NetlinkAgentAsyncStub, *, reconnect_delay: float = 1.0) -> None:
        """Applies the agent's device stream to the tracker, reconnecting forever."""
        while True:
            reason = "the agent ended the device watch"
            try:
                async for event in agent.WatchDevices(agent_pb2.WatchDevicesRequest()):
                    if self.tracker.apply(event, self._clock()):
                        self.changed()
            except grpc.aio.AioRpcError as exc:
                reason = f"device watch failed: {exc.code().name}: {exc.details()}"
            # Said once per loss, not on every failed reconnect.
            if self.tracker.connected or not self.tracker.ready:
                log.warning("%s; device health is UNKNOWN until it reconnects", reason)
            if self.tracker.disconnected(self._clock(), reason):
                self.changed()
            await asyncio.sleep(reconnect_delay)


def add_device_health_servicer(server: grpc.aio.Server, servicer: DeviceHealthServicer) -> None:
    health_grpc.add_DRAResourceHealthServicer_to_server(servicer, server)


def device_health_servicer_adder(
    servicer: DeviceHealthServicer,
) -> Callable[[grpc.aio.Server], None]:
    """A callback registering `v1alpha1.DRAResourceHealth` (for `UnixServer(adders=...)`)."""
    return partial(add_device_health_servicer, servicer=servicer)
