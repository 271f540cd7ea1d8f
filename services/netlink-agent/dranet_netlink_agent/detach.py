"""Giving a device back to the node: move it out of the pod, restore its state.

`give_back` is the one path for detach, release, attach rollback and
start-up recovery. It finds the link where it is now — inside the pod
namespace (by its pod-side name), or already on the node (the netns was
destroyed and the kernel returned a physical device, maybe under a clashing
name; or the move never happened) by permanent MAC, PCI address, or recorded
ifindex and name — and restores the recorded host state. A link found
nowhere was a virtual device destroyed with the namespace: LOST, not an error.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pyroute2 import AsyncIPRoute

from dranet.errors import DranetError, NetworkStepError
from dranet.logs import log_context
from dranet.store import AttachmentPhase, AttachmentRecord
from dranet_netlink_agent.configure import (
    STEP_ATTRIBUTE,
    PodChanges,
    reason,
    step,
    undo_pod_changes,
)
from dranet_netlink_agent.context import AgentContext, log
from dranet_netlink_agent.hostrestore import link_values, restore_on_node
from dranet_netlink_agent.linkops import get_link, is_errno, links, set_link, set_state
from dranet_netlink_agent.netns import NetnsId, open_if_present, rtnl


class Outcome(StrEnum):
    RESTORED = "restored"
    LOST = "lost"


@dataclass(frozen=True)
class Detached:
    claim_uid: str
    device: str
    outcome: Outcome
    message: str


def recorded_netns(rec: AttachmentRecord) -> NetnsId | None:
    """The identity of the pod namespace the row was attached in (None: not recorded)."""
    ident = rec.result.get("netns_id")
    return (int(ident[0]), int(ident[1])) if ident else None


def open_pod_netns(rec: AttachmentRecord) -> int | None:
    """The row's pod namespace as an fd, or None when it is gone (see open_if_present).

    Raises NetworkStepError when it cannot tell (EMFILE, EACCES...): the row
    is kept rather than the pod's device being taken as lost.
    """
    try:
        return open_if_present(rec.netns_path, recorded_netns(rec))
    except OSError as exc:
        raise NetworkStepError(
            "move back to node",
            rec.device,
            f"cannot open {rec.netns_path}: {exc.strerror}",
            hint="the attachment is kept; the next detach or reap retries",
        ) from exc


def _netns_gone(rec: AttachmentRecord) -> bool:
    try:
        fd = open_pod_netns(rec)
    except NetworkStepError as exc:
        log.warning("cannot tell whether the pod of %s is gone, keeping it: %s", rec.device, exc)
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


def _same_device(link: dict[str, Any] | None, orig: dict[str, Any]) -> bool:
    if link is None or link.get("kind") != orig.get("kind"):
        return False
    perm = str(orig.get("permanent_mac") or "").lower()
    return not perm or link["permanent_mac"].lower() in ("", perm)


async def _find_in_pod(pod: AsyncIPRoute, rec: AttachmentRecord) -> dict[str, Any] | None:
    """The device in the pod: by the ifindex it got there, else by its pod-side name.

    The index first: the pod may rename the device and give its name to
    another interface of the same kind.
    """
    index = rec.result.get("ifindex")
    if index:
        link = await get_link(pod, index=int(index))
        if _same_device(link, rec.original):
            return link
    link = await get_link(pod, ifname=rec.pod_ifname)
    if _same_device(link, rec.original):
        return link
    return None


def temp_name(rec: AttachmentRecord) -> str:
    """The name a device comes back under when its recorded name is taken on the node."""
    return f"dranet{rec.result.get('ifindex') or rec.original.get('ifindex', 0)}"[:15]


async def _move(ctx: AgentContext, pod: AsyncIPRoute, index: int, rec: AttachmentRecord) -> str:
    """Moves the link to the node with its recorded L2 state; returns its name there."""
    values = link_values(rec.original)
    async with rtnl(ctx.node_netns) as node:
        if await get_link(node, ifname=values["ifname"]) is not None:
            # Its name is taken on the node: bring it back under a temporary
            # name rather than leave it in a namespace that may soon die.
            log.warning("%s is taken on the node; moving %s back as %s",
                        values["ifname"], rec.device, temp_name(rec))  # fmt: skip
            values["ifname"] = temp_name(rec)
    fd = ctx.node_fd()
    try:
        await set_link(pod, index, **values, netns_fd=fd)
    finally:
        os.close(fd)
    return str(values["ifname"])


async def _move_out_of_pod(ctx: AgentContext, rec: AttachmentRecord) -> str:
    """Moves the link from the pod to the node; its name there, or "" if it was not there."""
    fd = open_pod_netns(rec)
    if fd is None:
        return ""
    try:
        async with rtnl(fd) as pod:
            changes = PodChanges.from_json(rec.result.get("pod_changes"))
            link = await _find_in_pod(pod, rec)
            if link is None:
                with contextlib.suppress(Exception):
                    await undo_pod_changes(pod, changes)
                return ""
            async with step("move back to node", rec.device):
                await set_state(pod, link["ifindex"], False)
                name = await _move(ctx, pod, link["ifindex"], rec)
            with contextlib.suppress(Exception):
                await undo_pod_changes(pod, changes)
    finally:
        os.close(fd)
    return name


def pick_link(
    present: list[dict[str, Any]], rec: AttachmentRecord, moved_as: str = "", pci_ifname: str = ""
) -> int | None:
    """Which node link is the recorded device (pure): the ifindex, or None if none is.

    In order: the name we just moved it back under; its permanent MAC; the
    interface holding its PCI address; its temporary name; its recorded
    ifindex under its host or pod name (a veth or a device that never moved).
    """
    orig: dict[str, Any] = rec.original
    kind = orig.get("kind")
    perm = str(orig.get("permanent_mac") or "").lower()
    names = {orig.get("ifname"), rec.pod_ifname}
    tests: list[Callable[[dict[str, Any]], bool]] = [
        lambda link: bool(moved_as) and link["ifname"] == moved_as,
        lambda link: bool(perm) and link["permanent_mac"].lower() == perm,
        lambda link: bool(pci_ifname) and link["ifname"] == pci_ifname,
        lambda link: link["ifname"] == temp_name(rec) and link.get("kind") == kind,
        lambda link: (
            link["ifindex"] == orig.get("ifindex")
            and link["ifname"] in names
            and link.get("kind") == kind
        ),
    ]
    for test in tests:
        for link in present:
            if test(link):
                return int(link["ifindex"])
    return None


async def _find_on_node(
    ctx: AgentContext, node: AsyncIPRoute, rec: AttachmentRecord, moved_as: str
) -> int | None:
    """The node ifindex of the recorded device, or None."""
    pci_ifname = ""
    if not moved_as and rec.original.get("pci_address"):
        await ctx.resolver.rescan()
        dev = ctx.resolver.find_by(pci_address=rec.original["pci_address"])
        pci_ifname = dev.ifname if dev is not None else ""
    return pick_link(await links(node), rec, moved_as, pci_ifname)


async def give_back(ctx: AgentContext, rec: AttachmentRecord) -> Detached:
    """Returns the device of `rec` to the node as recorded. Idempotent."""
    attributes = {
        "k8s.pod.uid": rec.pod_uid,
        "k8s.namespace.name": rec.pod_namespace,
        "k8s.pod.name": rec.pod_name,
        "dranet.claim.uid": rec.claim_uid,
        "dranet.device": rec.device,
        "dranet.interface.name": rec.pod_ifname,
        "dranet.netns.path": rec.netns_path,
        "dranet.attachment.phase": str(rec.phase),
    }
    with (
        log_context(
            pod=f"{rec.pod_namespace}/{rec.pod_name}", claim=rec.claim_uid, device=rec.device
        ),  # fmt: skip
        ctx.tracer.start_as_current_span("give back device", attributes=attributes) as span,
    ):
        try:
            done = await _give_back(ctx, rec)
        except NetworkStepError as exc:
            span.set_attribute("dranet.failed_step", exc.step)
            ctx.metrics.detach_failures.labels(exc.step).inc()
            raise
        span.set_attribute("dranet.outcome", str(done.outcome))
        return done


async def _give_back(ctx: AgentContext, rec: AttachmentRecord) -> Detached:
    moved_as = await _move_out_of_pod(ctx, rec)
    async with rtnl(ctx.node_netns) as node:
        index = await _find_on_node(ctx, node, rec, moved_as)
        if index is None:
            log.info(
                "device %s of claim %s was destroyed with the pod namespace",
                rec.device,
                rec.claim_uid,
            )
            return Detached(
                rec.claim_uid,
                rec.device,
                Outcome.LOST,
                f"{rec.host_ifname} was destroyed with the pod network namespace "
                "(a virtual device does not return to the node)",
            )
        attributes = {STEP_ATTRIBUTE: "restore on node", "dranet.device": rec.device}
        with ctx.tracer.start_as_current_span("step restore on node", attributes=attributes):
            try:
                await restore_on_node(node, index, rec.original, sysctl_root=ctx.sysctl_root)
            except Exception as exc:
                hint = ""
                if is_errno(exc, errno.EEXIST) and await get_link(node, ifname=rec.host_ifname):
                    hint = (
                        f"{rec.host_ifname} is taken on the node by another interface; the "
                        f"device waits there as {temp_name(rec)}: free the name and detach again"
                    )
                raise NetworkStepError(
                    "restore on node", rec.device, reason(exc), hint=hint
                ) from exc
    return Detached(
        rec.claim_uid, rec.device, Outcome.RESTORED, f"{rec.host_ifname} restored on the node"
    )


async def detach_records(ctx: AgentContext, rows: list[AttachmentRecord]) -> list[Detached]:
    """Gives back every row's device and deletes the row; keeps a row whose move failed."""
    out: list[Detached] = []
    errors: list[DranetError] = []
    for rec in rows:
        try:
            done = await give_back(ctx, rec)
        except DranetError as exc:
            errors.append(exc)
            continue
        await ctx.delete(rec)
        ctx.listener("detached", rec)
        out.append(done)
    if any(done.outcome == Outcome.LOST for done in out):
        # No node-side netlink event announces a device that died in the pod:
        # rescan now so the inventory stops listing it (it is unpublished at once).
        await ctx.resolver.rescan()
    if errors:
        raise errors[0]
    return out


async def detach_pod(ctx: AgentContext, pod_uid: str) -> list[Detached]:
    with ctx.tracer.start_as_current_span("detach pod", attributes={"k8s.pod.uid": pod_uid}):
        async with ctx.lock:
            return await detach_records(ctx, await ctx.rows(pod_uid=pod_uid))


async def reap_orphans(ctx: AgentContext) -> list[Detached]:
    """Gives back the devices of pods whose network namespace is gone.

    A runtime may never say a pod stopped: containerd keeps in memory only
    which pods it told NRI about, so pods that were running when it restarted
    get no StopPodSandbox. Their namespace still disappears, and the agent
    notices that itself. A physical NIC is back on the node (the kernel
    returns it) and is restored; a veth died with the namespace (LOST).
    """
    async with ctx.lock:
        orphans = [
            rec
            for rec in await ctx.rows()
            if rec.phase == AttachmentPhase.ATTACHED and _netns_gone(rec)
        ]
        if not orphans:
            return []
        with ctx.tracer.start_as_current_span(
            "reap orphaned attachments", attributes={"dranet.attachments": len(orphans)}
        ):
            return await detach_records(ctx, orphans)


async def release_claim(ctx: AgentContext, claim_uid: str) -> list[Detached]:
    attributes = {"dranet.claim.uid": claim_uid}
    with ctx.tracer.start_as_current_span("release claim", attributes=attributes):
        async with ctx.lock:
            return await detach_records(ctx, await ctx.rows(claim_uid=claim_uid))
