"""ResourceClaim.status.devices[] from the agent's attachment stream.

For each interface the agent attached, the claim gets an entry
`{driver, pool, device, conditions, networkData{interfaceName, ips,
hardwareAddress}}`; on detach the entry is removed. Entries of other drivers
and of devices we have nothing to say about are left untouched.

Writes go through the status subresource as read-modify-write PUTs carrying
the claim's resourceVersion, retried on conflicts (a merge patch would
replace the whole list, other drivers' entries included). The stream reader
never waits for the API: it records the desired state and wakes a writer
task, so attaching is never slowed down by the API server.

The ResourceClaim's namespace/name come from the store row, and are kept in
memory from the ATTACHED (or SNAPSHOT) event on: when the agent detaches
inside ReleaseClaim, unprepare has already deleted the row, and the DETACHED
entry must still be written.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import trace

from dranet.agent.v1 import agent_pb2
from dranet.errors import DranetError, NotFoundError
from dranet.store import Store
from dranet_kubelet_plugin.kube import Kube, retry_conflicts

if TYPE_CHECKING:
    from dranet.agent.v1.agent_pb2_grpc import NetlinkAgentAsyncStub

log = logging.getLogger(__name__)
tracer = trace.get_tracer("dranet.kubelet-plugin")


def _nothing() -> None:
    return None


Kind = agent_pb2.AttachmentEvent.Kind
DeviceKey = tuple[str, str]  # (pool, device)
MAX_IPS = 16


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def status_entry(
    driver: str,
    iface: agent_pb2.InterfaceResult,
    *,
    now: datetime,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One `status.devices[]` entry; keeps lastTransitionTime of unchanged conditions."""
    old = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    conditions = []
    given = list(iface.conditions) or [
        agent_pb2.Condition(type="Ready", status="True", reason="NetworkDeviceReady")
    ]
    for cond in given[:8]:
        before = old.get(cond.type) or {}
        changed = not before or before.get("status") != cond.status
        conditions.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason or "Unspecified",
                "message": cond.message,
                "lastTransitionTime": _timestamp(now) if changed else before["lastTransitionTime"],
            }
        )
    network: dict[str, Any] = {}
    if iface.interface_name:
        network["interfaceName"] = iface.interface_name
    ips = list(dict.fromkeys(iface.ips))[:MAX_IPS]
    if ips:
        network["ips"] = ips
    if iface.mac:
        network["hardwareAddress"] = iface.mac
    entry: dict[str, Any] = {
        "driver": driver,
        "pool": iface.pool,
        "device": iface.device,
        "conditions": conditions,
    }
    if network:
        entry["networkData"] = network
    return entry


def allocated(claim: Mapping[str, Any], driver: str) -> set[DeviceKey]:
    allocation = (claim.get("status") or {}).get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or []
    return {(r["pool"], r["device"]) for r in results if r.get("driver") == driver}


def updated_status_devices(
    claim: Mapping[str, Any],
    driver: str,
    attached: Mapping[DeviceKey, agent_pb2.InterfaceResult],
    *,
    now: datetime,
) -> list[dict[str, Any]] | None:
    """The new status.devices list, or None when nothing changes.

    Our entries are exactly the attached devices that are allocated in the
    claim (the API server refuses others); everyone else's are kept.
    """
    current = list((claim.get("status") or {}).get("devices") or [])
    mine = allocated(claim, driver)
    ours_before = {
        (e.get("pool"), e.get("device")): e for e in current if e.get("driver") == driver
    }
    result = [e for e in current if e.get("driver") != driver]
    for key in sorted(attached):
        if key not in mine:
            continue
        result.append(status_entry(driver, attached[key], now=now, previous=ours_before.get(key)))
    return None if result == current else result


class ClaimStatusWriter:
    """Follows WatchAttachments and keeps the claims' status.devices in line."""

    def __init__(
        self,
        *,
        kube: Kube,
        store: Store,
        agent: NetlinkAgentAsyncStub,
        driver: str,
        reconnect_delay: float = 1.0,
        on_write: Callable[[], None] = _nothing,
    ) -> None:
        self._on_write = on_write  # e.g. a metrics counter
        self._kube = kube
        self._store = store
        self._agent = agent
        self._driver = driver
        self._reconnect_delay = reconnect_delay
        # claim uid -> attached devices of that claim
        self._attached: dict[str, dict[DeviceKey, agent_pb2.InterfaceResult]] = {}
        # claim uid -> (namespace, name), learnt while the row exists
        self._names: dict[str, tuple[str, str]] = {}
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self.writes = 0

    async def handle_event(self, event: agent_pb2.AttachmentEvent) -> None:
        """Learns the names of newly attached claims, then applies the event."""
        if event.kind in (Kind.SNAPSHOT, Kind.ATTACHED):
            for uid in sorted({a.interface.claim_uid for a in event.attachments}):
                if uid not in self._names:
                    await self._learn_name(uid)
        self.apply_event(event)

    async def _learn_name(self, uid: str) -> None:
        try:
            record = await asyncio.to_thread(self._store.get_claim, uid)
        except DranetError as exc:  # the writer reads the row again; only a late detach loses
            log.warning("cannot read claim %s from the store: %s", uid, exc)
            return
        if record is not None:
            self._names[uid] = (record.namespace, record.name)

    def apply_event(self, event: agent_pb2.AttachmentEvent) -> None:
        touched: set[str] = set()
        if event.kind == Kind.SNAPSHOT:
            touched |= set(self._attached)
            self._attached = {}
        for attachment in event.attachments:
            iface = attachment.interface
            key = (iface.pool, iface.device)
            touched.add(iface.claim_uid)
            if event.kind == Kind.DETACHED:
                self._attached.get(iface.claim_uid, {}).pop(key, None)
            elif event.kind in (Kind.SNAPSHOT, Kind.ATTACHED):
                self._attached.setdefault(iface.claim_uid, {})[key] = iface
        self._attached = {uid: devs for uid, devs in self._attached.items() if devs}
        self._pending |= touched
        if touched:
            self._wake.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_loop(), name="watch-attachments")
            group.create_task(self._write_loop(), name="write-claim-status")

    async def _watch_loop(self) -> None:
        while True:
            try:
                async for event in self._agent.WatchAttachments(
                    agent_pb2.WatchAttachmentsRequest()
                ):
                    await self.handle_event(event)
                log.warning("the agent ended the attachment watch; reconnecting")
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "attachment watch failed (%s: %s); retrying", exc.code().name, exc.details()
                )
            await asyncio.sleep(self._reconnect_delay)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, set()
            for uid in sorted(pending):
                try:
                    await self.write_claim(uid)
                except DranetError as exc:
                    log.warning("writing status of claim %s failed, will retry: %s", uid, exc)
                    self._pending.add(uid)
                except Exception:  # a malformed claim must not stop status for the others
                    log.exception("cannot write status of claim %s; skipped", uid)
            if self._pending:
                await asyncio.sleep(self._reconnect_delay)
                self._wake.set()

    async def write_claim(self, uid: str) -> bool:
        """Brings one claim's status in line; False if there was nothing to write."""
        attributes = {"dranet.claim.uid": uid}
        with tracer.start_as_current_span("write claim status", attributes=attributes) as span:
            written = await self._write_claim(uid, span)
            span.set_attribute("dranet.written", written)
            return written

    async def _write_claim(self, uid: str, span: trace.Span) -> bool:
        record = await asyncio.to_thread(self._store.get_claim, uid)
        if record is not None:
            self._names[uid] = (record.namespace, record.name)
            if len(record.pod_uids) == 1:
                span.set_attribute("k8s.pod.uid", record.pod_uids[0])
        names = self._names.get(uid)
        if names is None:
            log.debug("claim %s is not in the store (already unprepared); status left alone", uid)
            return False
        written = await self._write_status(uid, names, span)
        if uid not in self._attached and uid not in self._pending:
            self._names.pop(uid, None)  # nothing left to say about it
        return written

    async def _write_status(self, uid: str, names: tuple[str, str], span: trace.Span) -> bool:
        namespace, name = names
        attached = dict(self._attached.get(uid, {}))
        span.set_attributes({
            "dranet.claim.name": f"{namespace}/{name}",
            "k8s.namespace.name": namespace,
            "dranet.devices": len(attached),
        })  # fmt: skip

        async def attempt() -> bool:
            claim = await self._kube.get_claim(namespace, name)
            if claim.get("metadata", {}).get("uid") != uid:
                return False  # replaced by a new claim of the same name: not ours to touch
            devices = updated_status_devices(claim, self._driver, attached, now=datetime.now(UTC))
            if devices is None:
                return False
            body = copy.deepcopy(claim)
            body.setdefault("status", {})["devices"] = devices
            await self._kube.replace_claim_status(body)
            return True

        try:
            written = await retry_conflicts(attempt)
        except NotFoundError:
            return False  # the claim is gone: nothing to report on
        if written:
            self.writes += 1
            self._on_write()
            log.info("updated status.devices of claim %s/%s", namespace, name)
        return written
