"""AttachPod: move every device prepared for a pod into its namespace, atomically.

Per device: record the host state in a write-ahead row (phase PENDING)
before touching anything; take the link down and, in ONE netlink request,
rename it, set MTU/MAC/GSO/GRO and move it into the pod (phase MOVED);
configure it there (configure.py); mark the row ATTACHED with the result.
Any failure gives back everything this call did (detach.give_back) and
raises the step's error. A second call for an attached pod changes nothing
and returns the same result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dranet.errors import DranetError, InvalidArgumentError, NetworkStepError, RefusedError
from dranet.logs import log_context
from dranet.netconfig import NetworkConfig, parse_config
from dranet.store import AttachmentPhase, AttachmentRecord, ClaimRecord, PreparedDevice
from dranet.telemetry import link_from_carrier
from dranet_netlink_agent.configure import (
    PodChanges,
    configure_pod,
    reason,
    step,
    undo_pod_changes,
)
from dranet_netlink_agent.context import AgentContext, NetDeviceLike, Resolver, log
from dranet_netlink_agent.detach import give_back, recorded_netns
from dranet_netlink_agent.hostread import capture
from dranet_netlink_agent.linkops import get_link, set_link, set_state
from dranet_netlink_agent.netns import NetnsId, netns_id, open_netns, rtnl, same_netns
from dranet_netlink_agent.netnspaths import check_netns_path

__all__ = ["AgentContext", "PodRef", "Resolver", "attach_pod"]

READY_CONDITIONS = (
    {"type": "Ready", "status": "True", "reason": "NetworkDeviceReady", "message": ""},
    {"type": "NetworkReady", "status": "True", "reason": "NetworkReady", "message": ""},
)


@dataclass(frozen=True)
class PodRef:
    uid: str
    namespace: str = ""
    name: str = ""


@dataclass(frozen=True)
class _Plan:
    claim: ClaimRecord
    prepared: PreparedDevice
    device: NetDeviceLike
    config: NetworkConfig

    @property
    def pod_ifname(self) -> str:
        return self.config.interface.name or self.device.ifname


async def _resolve(ctx: AgentContext, claim: ClaimRecord, prepared: PreparedDevice) -> _Plan:
    where = f"device {prepared.device} of claim {claim.namespace}/{claim.name}"
    found = ctx.resolver.find(prepared.device)
    if found is None:
        await ctx.resolver.rescan()
        found = ctx.resolver.find(prepared.device)
    if found is None:
        other = ctx.resolver.find_by(ifname=prepared.device)
        if other is not None and ctx.resolver.is_uplink(other.ifname):
            found = other  # refused below with the reason
    if found is None:
        raise RefusedError(
            f"{where} is not a device of this node",
            hint="the claim was prepared for a device the agent cannot see; check ListDevices",
        )
    if ctx.resolver.is_uplink(found.ifname):
        raise RefusedError(
            f"{where} is the node uplink {found.ifname}; moving it would cut the node off",
            hint="uplinks are never offered; the allocation is wrong",
        )
    return _Plan(claim, prepared, found, parse_config(prepared.config))


@dataclass(frozen=True)
class _Target:
    """The pod namespace of one AttachPod call, opened once.

    Every step of the call uses `fd`, never the path again: a path like
    /proc/<pid>/ns/net may name another namespace a moment later.
    """

    path: str  # resolved; recorded in the rows
    fd: int
    ident: NetnsId


def _open_target(ctx: AgentContext, path: str) -> _Target:
    resolved = check_netns_path(path, ctx.netns_roots)
    fd = open_netns(resolved)  # raises when it is not a network namespace
    try:
        ident = netns_id(fd)
        what = ctx.host_netns_ids().get(ident)
        if what:
            raise RefusedError(
                f"netns path {path!r} is {what}, not a pod's; refusing to move devices there",
                hint="pass the pod sandbox's own network namespace",
            )
    except BaseException:
        os.close(fd)
        raise
    return _Target(resolved, fd, ident)


def _is_current(row: AttachmentRecord, target: _Target) -> bool:
    recorded = recorded_netns(row)
    if recorded is not None:
        return recorded == target.ident
    return row.netns_path == target.path or same_netns(row.netns_path, target.path)


async def _refuse_foreign(
    ctx: AgentContext, pod: PodRef, wanted: Sequence[tuple[ClaimRecord, PreparedDevice]]
) -> None:
    rows = await ctx.rows()
    for _, prepared in wanted:
        for row in rows:
            if row.device == prepared.device and row.pod_uid != pod.uid:
                raise RefusedError(
                    f"device {row.device} is attached to pod {row.pod_namespace}/{row.pod_name} "
                    f"({row.pod_uid}), not to {pod.namespace}/{pod.name} ({pod.uid})",
                    hint="a device serves one pod at a time; detach the other pod first",
                )


async def _check_pod_names(target: _Target, plans: Sequence[_Plan]) -> None:
    names = [p.pod_ifname for p in plans]
    if len(set(names)) != len(names):
        raise RefusedError(f"two devices would get the same name in the pod: {sorted(names)}")
    async with rtnl(target.fd) as pod:
        for name in names:
            if await get_link(pod, ifname=name) is not None:
                raise RefusedError(
                    f"the pod already has an interface named {name}",
                    hint="set interface.name in the claim configuration to another name",
                )


def pod_attributes(pod: PodRef, netns_path: str = "") -> dict[str, str]:
    attributes = {
        "k8s.pod.uid": pod.uid,
        "k8s.namespace.name": pod.namespace,
        "k8s.pod.name": pod.name,
    }
    if netns_path:
        attributes["dranet.netns.path"] = netns_path
    return attributes


def span_attributes(
    pod: PodRef, claim: ClaimRecord, device: str, ifname: str, netns_path: str = ""
) -> dict[str, str]:
    return {
        **pod_attributes(pod, netns_path),
        "dranet.claim.uid": claim.uid,
        "dranet.claim.name": f"{claim.namespace}/{claim.name}",
        "dranet.device": device,
        "dranet.interface.name": ifname,
    }


def failed_step(exc: BaseException) -> str:
    """The metrics label of a failure: the step's name, or what kind of refusal."""
    if isinstance(exc, NetworkStepError):
        return exc.step
    if isinstance(exc, DranetError):
        return type(exc).__name__.removesuffix("Error").lower() or "error"
    return "cancelled" if isinstance(exc, asyncio.CancelledError) else "internal"


async def attach_device(
    ctx: AgentContext, pod: PodRef, target: _Target, plan: _Plan
) -> AttachmentRecord:
    """One traced device transaction, linked to the claim's prepare span."""
    link = link_from_carrier(plan.claim.trace_context)
    attributes = span_attributes(
        pod, plan.claim, plan.prepared.device, plan.pod_ifname, target.path
    )
    with (
        log_context(
            pod=f"{pod.namespace}/{pod.name}", claim=plan.claim.uid, device=plan.prepared.device
        ),  # fmt: skip
        ctx.tracer.start_as_current_span(
            "attach device", links=[link] if link else None, attributes=attributes
        ) as span,
    ):
        try:
            rec = await _attach_device(ctx, pod, target, plan)
        except NetworkStepError as exc:
            span.set_attribute("dranet.failed_step", exc.step)
            raise
        log.info("attached %s as %s", plan.device.ifname, rec.pod_ifname)
        return rec


async def _attach_device(
    ctx: AgentContext, pod: PodRef, target: _Target, plan: _Plan
) -> AttachmentRecord:
    """The per-device transaction; on failure the device is back on the node."""
    cfg, name = plan.config, plan.prepared.device
    async with rtnl(ctx.node_netns) as node:
        dev, link = await _find_on_node(ctx, node, plan)
        async with step("record host state", name):
            original = await capture(
                node,
                link["ifindex"],
                permanent_mac=dev.permanent_mac,
                pci_address=dev.pci_address,
            )
        rec = AttachmentRecord(
            claim_uid=plan.claim.uid,
            device=name,
            pod_uid=pod.uid,
            pod_namespace=pod.namespace,
            pod_name=pod.name,
            netns_path=target.path,
            phase=AttachmentPhase.PENDING,
            host_ifname=dev.ifname,
            pod_ifname=plan.pod_ifname,
            original=original,
            result={
                "request": plan.prepared.request,
                "pool": plan.prepared.pool,
                "netns_id": list(target.ident),  # detach/reap re-open only this namespace
            },
        )
        await ctx.insert(rec)  # write-ahead: nothing has changed yet; never replaces a row
        ctx.checkpoint("pending")
        try:
            iface = cfg.interface
            async with step("move into pod", name):
                if link["up"]:
                    await set_state(node, link["ifindex"], False)  # a rename needs it down
                await set_link(
                    node,
                    link["ifindex"],
                    ifname=plan.pod_ifname,
                    mtu=iface.mtu,
                    mac=iface.hardware_addr,
                    gso_max_size=iface.gso_max_size,
                    gro_max_size=iface.gro_max_size,
                    gso_ipv4_max_size=iface.gso_ipv4_max_size,
                    gro_ipv4_max_size=iface.gro_ipv4_max_size,
                    netns_fd=target.fd,
                )
            rec = dataclasses.replace(rec, phase=AttachmentPhase.MOVED)
            await ctx.put(rec)
            ctx.checkpoint("moved")
            rec = await _configure(ctx, target.fd, rec, cfg)
        except BaseException as exc:
            await _rollback(ctx, rec, exc)
            raise
    return rec


def identity_mismatch(link: dict[str, Any], dev: NetDeviceLike, parent: str = "") -> str:
    """Why the link found under the device's name is not the device ("" when it is).

    `parent` is the link's parent device (its PCI address for a PCI NIC),
    "" when the kernel does not say.
    """
    if dev.ifindex and link["ifindex"] != dev.ifindex:
        return f"ifindex {link['ifindex']}, the device has {dev.ifindex}"
    perm = dev.permanent_mac.lower()
    if perm and str(link.get("permanent_mac") or "").lower() != perm:
        return f"permanent MAC {link.get('permanent_mac') or 'none'}, the device has {perm}"
    if dev.pci_address and parent and parent != dev.pci_address:
        return f"PCI address {parent}, the device has {dev.pci_address}"
    return ""


async def _parent_device(node: AsyncIPRoute, index: int) -> str:
    """IFLA_PARENT_DEV_NAME of a link (a PCI NIC's PCI address); "" if none."""
    try:
        found = await node.link("get", index=index)
    except NetlinkError:  # gone meanwhile: the move step reports it
        return ""
    return str(found[0].get("IFLA_PARENT_DEV_NAME") or "") if found else ""


async def _find_on_node(
    ctx: AgentContext, node: AsyncIPRoute, plan: _Plan
) -> tuple[NetDeviceLike, dict[str, Any]]:
    """The planned device's node link, checked against the inventory's identity.

    The device is found by its name, and a name can be taken by another
    interface since the inventory last looked: rescan once, then refuse.
    """
    dev, name = plan.device, plan.prepared.device
    for attempt in range(2):
        link = await get_link(node, ifname=dev.ifname)
        if link is None:
            raise NetworkStepError("find link on node", name, f"no interface {dev.ifname}")
        parent = await _parent_device(node, link["ifindex"]) if dev.pci_address else ""
        why = identity_mismatch(link, dev, parent)
        if not why:
            return dev, link
        if attempt == 0:
            await ctx.resolver.rescan()
            dev = ctx.resolver.find(name) or dev
    raise RefusedError(
        f"device {name}: the interface named {dev.ifname} on the node is not that device "
        f"({why}); refusing to move it",
        hint="another interface took the device's name; check the node's interfaces and "
        "ListDevices",
    )


async def _configure(
    ctx: AgentContext, fd: int, rec: AttachmentRecord, cfg: NetworkConfig
) -> AttachmentRecord:
    async with rtnl(fd) as pod:
        link = await get_link(pod, ifname=rec.pod_ifname)
        if link is None:
            raise NetworkStepError("find link in pod", rec.device, f"no {rec.pod_ifname} in pod")
        # Saved before configuring: recovery finds the device by this index.
        rec = dataclasses.replace(rec, result={**rec.result, "ifindex": link["ifindex"]})
        await ctx.put(rec)
        changes = SavedPodChanges(on_change=_saver(ctx, rec))
        try:
            result = await configure_pod(
                pod,
                fd,
                link["ifindex"],
                cfg=cfg,
                original=rec.original,
                device=rec.device,
                changes=changes,
                sysctl_root=ctx.sysctl_root,
            )
        except BaseException:
            await undo_pod_changes(pod, changes)
            raise
    result.update(rec.result)
    result["conditions"] = [dict(c) for c in READY_CONDITIONS]
    result["pod_changes"] = changes.to_json()
    done = dataclasses.replace(rec, phase=AttachmentPhase.ATTACHED, result=result)
    await ctx.put(done)
    return done


class _SavingRules(list[dict[str, Any]]):
    """A rules list that reports each addition (configure_pod extends it per step)."""

    def __init__(self, changed: Callable[[], None]) -> None:
        super().__init__()
        self._changed = changed

    def append(self, item: dict[str, Any]) -> None:
        super().append(item)
        self._changed()

    def extend(self, items: Any) -> None:
        super().extend(items)
        self._changed()


@dataclass
class SavedPodChanges(PodChanges):
    """PodChanges that calls `on_change` as soon as configure_pod records something
    it created (a rule, a VRF), so a crash before the attach completes still
    leaves the row saying what to remove from the pod."""

    on_change: Callable[[PodChanges], None] = lambda changes: None

    def __post_init__(self) -> None:
        self.rules = _SavingRules(lambda: self.on_change(self))

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "vrf_created" and value and "on_change" in self.__dict__:
            self.on_change(self)


def _saver(ctx: AgentContext, rec: AttachmentRecord) -> Callable[[PodChanges], None]:
    def save(changes: PodChanges) -> None:
        # Synchronous on purpose: it must land before configure_pod's next
        # step; one small SQLite write.
        result = {**rec.result, "pod_changes": changes.to_json()}
        ctx.store.put_attachment(dataclasses.replace(rec, result=result))

    return save


async def _rollback(
    ctx: AgentContext, rec: AttachmentRecord, cause: BaseException, *, strict: bool = False
) -> None:
    """Gives the device of `rec` back and drops the row.

    On failure the row is kept (start-up recovery retries it); `strict` then
    raises the failure, for a leftover row that must be gone before a new
    attach may touch the device or its row.
    """
    attributes = {
        "dranet.claim.uid": rec.claim_uid,
        "dranet.device": rec.device,
        "dranet.rollback.cause": reason(cause),
    }
    with ctx.tracer.start_as_current_span("rollback", attributes=attributes) as span:
        try:
            await give_back(ctx, rec)
        except Exception as exc:  # keep the row: start-up recovery retries it
            log.error("rollback of %s failed (%s) after: %s", rec.device, reason(exc), cause)
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"rollback failed: {exc}"))
            ctx.metrics.detach_failures.labels("rollback").inc()
            if strict:
                raise
            return
        await ctx.delete(rec)


async def attach_pod(ctx: AgentContext, pod: PodRef, netns_path: str) -> list[AttachmentRecord]:
    """Attaches every device prepared for `pod`; all or nothing."""
    if not pod.uid:
        raise InvalidArgumentError("pod uid is empty", hint="pass the pod's metadata.uid")
    attributes = pod_attributes(pod, netns_path)
    with ctx.tracer.start_as_current_span("attach pod", attributes=attributes) as span:
        try:
            done = await _attach_pod(ctx, pod, netns_path)
        except BaseException as exc:
            ctx.metrics.attach_failures.labels(failed_step(exc)).inc()
            raise
        span.set_attribute("dranet.devices", len(done))
        return done


async def _attach_pod(ctx: AgentContext, pod: PodRef, netns_path: str) -> list[AttachmentRecord]:
    # Most pods have no dranet claim: answer them without queueing behind a
    # slow attach, detach or reap. Claims are written by the plugin before the
    # pod starts, so one read outside the lock cannot miss them.
    if not await asyncio.to_thread(ctx.store.claims_for_pod, pod.uid):
        return []
    async with ctx.lock:
        claims = await asyncio.to_thread(ctx.store.claims_for_pod, pod.uid)
        if not claims:
            return []  # released meanwhile
        target = _open_target(ctx, netns_path)
        try:
            return await _attach_claims(ctx, pod, target, claims)
        finally:
            os.close(target.fd)


async def _attach_claims(
    ctx: AgentContext, pod: PodRef, target: _Target, claims: Sequence[ClaimRecord]
) -> list[AttachmentRecord]:
    wanted = [(c, d) for c in claims for d in c.devices]
    await _refuse_foreign(ctx, pod, wanted)
    ready: dict[tuple[str, str], AttachmentRecord] = {}
    for row in await ctx.rows(pod_uid=pod.uid):
        if row.phase == AttachmentPhase.ATTACHED and _is_current(row, target):
            ready[(row.claim_uid, row.device)] = row
        else:  # half-done or an older sandbox: give it back first
            await _rollback(ctx, row, RuntimeError("stale attachment"), strict=True)
    plans = [await _resolve(ctx, c, d) for c, d in wanted if (c.uid, d.device) not in ready]
    await _check_pod_names(target, plans)
    done_now: list[AttachmentRecord] = []
    try:
        for plan in plans:
            done_now.append(await attach_device(ctx, pod, target, plan))
    except BaseException as exc:
        for rec in reversed(done_now):
            await _rollback(ctx, rec, exc)
        raise
    for rec in done_now:
        ctx.listener("attached", rec)
    by_key = {**ready, **{(r.claim_uid, r.device): r for r in done_now}}
    return [by_key[(c.uid, d.device)] for c, d in wanted]


def result_fields(rec: AttachmentRecord) -> dict[str, Any]:
    """The InterfaceResult fields of an attached row."""
    res = rec.result
    return {
        "claim_uid": rec.claim_uid,
        "request": res.get("request", ""),
        "pool": res.get("pool", ""),
        "device": rec.device,
        "interface_name": res.get("name", rec.pod_ifname),
        "mac": res.get("mac", ""),
        "ips": list(res.get("ips", [])),
        "mtu": int(res.get("mtu") or 0),
        "conditions": list(res.get("conditions", [])),
    }
