"""AttachPod: move every device prepared for a pod into its namespace, atomically.

Per device: record the host state in a write-ahead row (phase PENDING)
before touching anything; take the link down and, in ONE netlink request,
rename it, set MTU/MAC/GSO/GRO and move it into the pod (phase MOVED);
configure it there (configure.py); mark the row ATTACHED with the result.
Any failure gives back everything this call did (detach.give_back) and
raises the step's error. A second call for an attached pod changes nothing
and returns the same result.

The parts live next door: plan.py resolves each prepared device (PodRef,
Plan), podns.py opens and checks the pod namespace once, identity.py compares
the node link with the device before the move, savedchanges.py writes
pod-side changes to the row as they are made. This module runs the
transaction and its rollback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from pyroute2 import AsyncIPRoute

from dranet.errors import InvalidArgumentError, NetworkStepError, RefusedError
from dranet.logs import log_context
from dranet.netconfig import NetworkConfig
from dranet.store import AttachmentPhase, AttachmentRecord, ClaimRecord
from dranet.telemetry import link_from_carrier, pod_attributes
from dranet_netlink_agent.configure import configure_pod, reason, step, undo_pod_changes
from dranet_netlink_agent.context import AgentContext, NetDeviceLike, Resolver, log
from dranet_netlink_agent.detach import give_back
from dranet_netlink_agent.device import DESCRIBED
from dranet_netlink_agent.hostread import capture
from dranet_netlink_agent.identity import identity_mismatch, parent_device
from dranet_netlink_agent.linkops import get_link, set_link, set_state
from dranet_netlink_agent.netns import rtnl
from dranet_netlink_agent.plan import Plan, PodRef, refuse_foreign, resolve
from dranet_netlink_agent.podns import PodTarget, is_current, open_target
from dranet_netlink_agent.savedchanges import SavedPodChanges, saver
from dranet_netlink_agent.spanattrs import failed_step, span_attributes

__all__ = [
    "AgentContext",
    "PodRef",
    "Resolver",
    "SavedPodChanges",
    "attach_pod",
    "identity_mismatch",
    "result_fields",
]

READY_CONDITIONS = (
    {"type": "Ready", "status": "True", "reason": "NetworkDeviceReady", "message": ""},
    {"type": "NetworkReady", "status": "True", "reason": "NetworkReady", "message": ""},
)


async def _check_pod_names(target: PodTarget, plans: Sequence[Plan]) -> None:
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


async def attach_device(
    ctx: AgentContext, pod: PodRef, target: PodTarget, plan: Plan
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
    ctx: AgentContext, pod: PodRef, target: PodTarget, plan: Plan
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
                sysctl_root=ctx.sysctl_root,
            )
            # The inventory decided `virtual` from sysfs, which capture cannot
            # always see; republishing after a restart must say the same.
            original.setdefault(DESCRIBED, {})["virtual"] = dev.virtual
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


async def _find_on_node(
    ctx: AgentContext, node: AsyncIPRoute, plan: Plan
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
        parent = await parent_device(node, link["ifindex"]) if dev.pci_address else ""
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
        changes = SavedPodChanges(on_change=saver(ctx, rec))
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
        target = open_target(ctx, netns_path)
        try:
            return await _attach_claims(ctx, pod, target, claims)
        finally:
            os.close(target.fd)


async def _attach_claims(
    ctx: AgentContext, pod: PodRef, target: PodTarget, claims: Sequence[ClaimRecord]
) -> list[AttachmentRecord]:
    wanted = [(c, d) for c in claims for d in c.devices]
    await refuse_foreign(ctx, pod, wanted)
    ready: dict[tuple[str, str], AttachmentRecord] = {}
    for row in await ctx.rows(pod_uid=pod.uid):
        if row.phase == AttachmentPhase.ATTACHED and is_current(row, target):
            ready[(row.claim_uid, row.device)] = row
        else:  # half-done or an older sandbox: give it back first
            await _rollback(ctx, row, RuntimeError("stale attachment"), strict=True)
    plans = [await resolve(ctx, c, d) for c, d in wanted if (c.uid, d.device) not in ready]
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
