"""Publishes the agent's inventory as this node's ResourceSlices.

Two loops:
- the watch loop follows the agent's `WatchDevices` stream (a SNAPSHOT, then
  changes) and keeps the current inventory, reconnecting when the stream
  ends; it only marks the publication dirty, so it never waits on the API;
- the sync loop publishes: at most one write burst per `min_interval`
  (changes arriving meanwhile are coalesced into the next burst), and every
  `resync_interval` it re-lists the slices and repairs them, which republishes
  slices someone deleted (the kubelet wipes a node's slices when it starts).
  A failed burst is retried with backoff; a conflict re-lists and re-plans.

Nothing is published before the first inventory snapshot arrives, so a
restarting plugin never replaces a node's slices with an empty pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import grpc
from opentelemetry import trace

from dranet.agent.v1 import agent_pb2
from dranet.errors import DranetError
from dranet_kubelet_plugin.attributes import device_attributes
from dranet_kubelet_plugin.filter import DeviceFilter
from dranet_kubelet_plugin.kube import Kube, KubeApiError, retry_conflicts
from dranet_kubelet_plugin.slices import (
    Body,
    Owner,
    SlicePlan,
    device_entry,
    plan_pool,
    split_devices,
)

if TYPE_CHECKING:
    from dranet.agent.v1.agent_pb2_grpc import NetlinkAgentAsyncStub

log = logging.getLogger(__name__)
tracer = trace.get_tracer("dranet.kubelet-plugin")


def _no_write(verb: str) -> None:
    return None


Kind = agent_pb2.DeviceEvent.Kind


class SlicePublisher:
    def __init__(
        self,
        *,
        kube: Kube,
        agent: NetlinkAgentAsyncStub,
        driver: str,
        node_name: str,
        device_filter: DeviceFilter,
        min_interval: float = 1.0,
        resync_interval: float = 30.0,
        reconnect_delay: float = 1.0,
        on_published: Callable[[int], None] | None = None,
        on_write: Callable[[str], None] = _no_write,
    ) -> None:
        self._kube = kube
        self._on_published = on_published  # e.g. a metrics gauge: devices published
        self._on_write = on_write  # called with create/update/delete per slice written
        self._agent = agent
        self._driver = driver
        self._node = node_name
        self._filter = device_filter
        self._min_interval = min_interval
        self._resync = resync_interval
        self._reconnect_delay = reconnect_delay
        self._devices: dict[str, agent_pb2.Device] = {}
        self._have_inventory = False
        self._dirty = asyncio.Event()
        self._owner: Owner | None = None
        self.published = asyncio.Event()  # set after the first successful burst
        self.bursts = 0

    # --- inventory ------------------------------------------------------------

    def apply_event(self, event: agent_pb2.DeviceEvent) -> None:
        if event.kind == Kind.SNAPSHOT:
            self._devices = {d.name: d for d in event.devices}
            self._have_inventory = True
        elif event.kind in (Kind.ADDED, Kind.MODIFIED):
            self._devices.update((d.name, d) for d in event.devices)
        elif event.kind == Kind.REMOVED:
            for device in event.devices:
                self._devices.pop(device.name, None)
        else:
            log.warning("ignoring device event of unknown kind %d", event.kind)
            return
        self._dirty.set()

    def desired_devices(self, devices: Iterable[agent_pb2.Device] | None = None) -> list[Body]:
        """Device entries for the devices that pass the filter."""
        entries = []
        for device in self._devices.values() if devices is None else devices:
            attributes = device_attributes(device, self._driver)
            if self._filter(attributes):
                entries.append(device_entry(device.name, attributes))
        return entries

    async def published_devices(self) -> set[str]:
        """Names of the devices this node publishes (asks the agent before the first snapshot)."""
        if self._have_inventory:
            return {entry["name"] for entry in self.desired_devices()}
        response = await self._agent.ListDevices(agent_pb2.ListDevicesRequest(), timeout=10)
        return {entry["name"] for entry in self.desired_devices(response.devices)}

    # --- loops ------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_loop(), name="watch-devices")
            group.create_task(self._sync_loop(), name="publish-slices")

    async def _watch_loop(self) -> None:
        while True:
            try:
                stream = self._agent.WatchDevices(agent_pb2.WatchDevicesRequest())
                async for event in stream:
                    self.apply_event(event)
                log.warning("the agent ended the device watch; reconnecting")
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "device watch failed (%s: %s); retrying", exc.code().name, exc.details()
                )
            await asyncio.sleep(self._reconnect_delay)

    async def _sync_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_burst = -self._min_interval
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):  # timeout = periodic repair
                await asyncio.wait_for(self._dirty.wait(), timeout=self._resync)
            if not self._have_inventory:
                self._dirty.clear()
                continue
            wait = last_burst + self._min_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # changes keep arriving; they join this burst
            self._dirty.clear()
            last_burst = loop.time()
            try:
                await self.sync_once()
                failures = 0
            except DranetError as exc:
                failures += 1
                delay = min(self._min_interval * 2**failures, 30.0)
                log.error("publishing ResourceSlices failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                self._dirty.set()

    # --- one burst ----------------------------------------------------------------

    async def _node_owner(self) -> Owner:
        if self._owner is None:
            node = await self._kube.get_node(self._node)
            self._owner = Owner(name=self._node, uid=node["metadata"]["uid"])
        return self._owner

    async def sync_once(self) -> SlicePlan:
        """List, plan and apply once (again after a conflict); returns the plan applied."""
        attributes = {"k8s.node.name": self._node, "dranet.driver": self._driver}
        with tracer.start_as_current_span("publish slices", attributes=attributes) as span:
            plan = await self._sync_once(span)
        return plan

    async def _sync_once(self, span: trace.Span) -> SlicePlan:
        owner = await self._node_owner()
        desired = split_devices(self.desired_devices())
        count = sum(len(chunk) for chunk in desired)
        span.set_attribute("dranet.devices", count)

        async def attempt() -> SlicePlan:
            current = await self._kube.list_slices(self._driver, self._node)
            plan = plan_pool(driver=self._driver, owner=owner, desired=desired, current=current)
            await self._apply(plan)
            return plan

        plan = await retry_conflicts(attempt)
        span.set_attributes({
            "dranet.slices.created": len(plan.create),
            "dranet.slices.updated": len(plan.update),
            "dranet.slices.deleted": len(plan.delete),
            "dranet.pool.generation": plan.generation,
        })  # fmt: skip
        self.bursts += 1
        self.published.set()
        if self._on_published is not None:
            self._on_published(count)
        return plan

    async def _apply(self, plan: SlicePlan) -> None:
        if plan.empty:
            return
        log.info(
            "ResourceSlices: %d deleted, %d updated, %d created (pool generation %d)",
            len(plan.delete),
            len(plan.update),
            len(plan.create),
            plan.generation,
        )
        # Obsolete slices go first: better to withdraw devices that are gone
        # even if the new slices cannot be written.
        for body in plan.delete:
            meta = body["metadata"]
            await self._kube.delete_slice(
                meta["name"],
                uid=meta.get("uid", ""),
                resource_version=meta.get("resourceVersion", ""),
            )
            self._on_write("delete")
        for body in plan.update:
            await self._kube.update_slice(body)
            self._on_write("update")
        for body in plan.create:
            try:
                await self._kube.create_slice(body)
                self._on_write("create")
            except KubeApiError as exc:
                if exc.status == 422:
                    causes = "; ".join(str(c.get("message", c)) for c in exc.causes)
                    log.error("the API server refused a ResourceSlice: %s", causes or exc)
                raise
