"""Start-up reconcile, in-process: rows left by a crash at each phase."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dranet.store import AttachmentPhase, AttachmentRecord, Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.hoststate import capture
from dranet_netlink_agent.linkops import get_link
from dranet_netlink_agent.netns import rtnl
from dranet_netlink_agent.recovery import reconcile
from dranet_sandbox.netlab import NetLab, ip

pytestmark = pytest.mark.root
POD = PodRef("pod-r", "default", "r-0")


async def _row(lab: NetLab, pod: str, phase: AttachmentPhase, name: str) -> AttachmentRecord:
    async with rtnl(lab.path(lab.node)) as ipr:
        link = await get_link(ipr, ifname=name)
        assert link is not None
        original = await capture(ipr, link["ifindex"])
    return AttachmentRecord(
        claim_uid="claim-1", device=name, pod_uid=POD.uid, pod_namespace=POD.namespace,
        pod_name=POD.name, netns_path=lab.path(pod), phase=phase, host_ifname=name,
        pod_ifname="net1", original=original,
    )  # fmt: skip


def _nic(lab: NetLab) -> None:
    lab.add_nic("nicc", node_cidr="10.61.0.2/24", fabric_cidr="10.61.0.1/24", mtu=1400)
    ip("route", "add", "10.161.0.0/16", "via", "10.61.0.1", netns=lab.node)


async def test_pending_row_whose_move_never_happened_is_dropped(
    lab: NetLab, ctx: AgentContext, kit: Any
) -> None:
    _nic(lab)
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicc")
    await ctx.put(await _row(lab, pod, AttachmentPhase.PENDING, "nicc"))
    ip("link", "set", "nicc", "down", netns=lab.node)  # the crash came right after this

    report = await reconcile(ctx)

    assert report.rolled_back == ["claim-1/nicc"] and not report.failed
    assert kit.snapshot(lab.node, "nicc") == before
    assert ctx.store.list_attachments() == []


async def test_moved_row_is_rolled_back_to_the_node(
    lab: NetLab, ctx: AgentContext, kit: Any
) -> None:
    _nic(lab)
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicc")
    await ctx.put(await _row(lab, pod, AttachmentPhase.MOVED, "nicc"))
    ip("link", "set", "nicc", "down", netns=lab.node)
    ip("link", "set", "nicc", "netns", pod, "name", "net1", "mtu", "1300", netns=lab.node)
    ip("addr", "add", "192.168.61.2/24", "dev", "net1", netns=pod)  # half-configured

    report = await reconcile(ctx)

    assert report.rolled_back == ["claim-1/nicc"]
    assert kit.pod_links(pod) == ["lo"]
    assert kit.snapshot(lab.node, "nicc") == before
    assert ctx.store.list_attachments() == []


async def test_attached_rows_are_kept_and_moved_rows_of_a_dead_netns_are_lost(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _nic(lab)
    lab.add_nic("nicl")
    pod, gone = lab.add_pod(), lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicc", {}))
    (attached,) = await attach_pod(ctx, POD, lab.path(pod))
    lost = dataclasses.replace(
        await _row(lab, gone, AttachmentPhase.MOVED, "nicl"), claim_uid="claim-2"
    )
    await ctx.put(lost)
    ip("link", "set", "nicl", "netns", gone, "name", "net1", netns=lab.node)
    lab.delete_netns(gone)

    report = await reconcile(ctx)

    assert report.kept == [f"{attached.claim_uid}/{attached.device}"]
    assert report.lost == ["claim-2/nicl"]
    rows = ctx.store.list_attachments()
    assert [(r.device, r.phase) for r in rows] == [("nicc", AttachmentPhase.ATTACHED)]
    assert kit.pod_links(pod) == ["lo", "nicc"]
