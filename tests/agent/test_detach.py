"""Detach and release: the NIC comes back exactly as recorded, rows never linger."""

from __future__ import annotations

from typing import Any

import pytest

from dranet.errors import NetworkStepError
from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import Outcome, detach_pod, release_claim
from dranet_netlink_agent.hoststate import capture, diff
from dranet_netlink_agent.linkops import get_link
from dranet_netlink_agent.netns import rtnl
from dranet_sandbox.netlab import NetLab, ip

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-d", "default", "d-0")
CONFIG = {
    "interface": {
        "name": "net1",
        "addresses": ["192.168.70.2/24", "fd70::2/64"],
        "mtu": 1280,
        "hardwareAddr": "02:00:00:00:70:02",
        "gsoMaxSize": 30000,
    },
    "routes": [{"destination": "10.71.0.0/16", "gateway": "192.168.70.1"}],
}


def _rich_nic(lab: NetLab, name: str = "nicd", *, up: bool = True) -> None:
    lab.add_nic(name, node_cidr="10.41.0.2/24", fabric_cidr="10.41.0.1/24", mtu=1450, up=up)
    ip("addr", "add", "10.41.0.9/24", "dev", name, netns=lab.node)  # a secondary
    ip("addr", "add", "fd41::2/64", "dev", name, netns=lab.node)
    ip("addr", "add", "fd41::3/64", "dev", name, netns=lab.node)
    ip("link", "set", name, "alias", "to-fabric", netns=lab.node)
    if up:
        ip("route", "add", "10.142.0.0/16", "via", "10.41.0.1", netns=lab.node)
        ip("route", "add", "10.143.0.0/16", "via", "10.41.0.1", "table", "43", netns=lab.node)
        ip("rule", "add", "to", "10.143.0.0/16", "table", "43", "prio", "430", netns=lab.node)
        ip("route", "add", "10.144.0.0/16", "dev", name, "src", "10.41.0.9", netns=lab.node)
        ip("neigh", "add", "10.41.0.77", "lladdr", "02:00:00:00:41:77", "dev", name,
           "nud", "permanent", netns=lab.node)  # fmt: skip


async def _record(lab: NetLab, name: str) -> dict[str, Any]:
    async with rtnl(lab.path(lab.node)) as ipr:
        link = await get_link(ipr, ifname=name)
        assert link is not None
        return await capture(ipr, link["ifindex"])


@pytest.mark.parametrize("up", [True, False])
async def test_detach_restores_the_recorded_state(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any, up: bool
) -> None:
    _rich_nic(lab, up=up)
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicd")
    recorded = await _record(lab, "nicd")
    kit.claim(plugin_store, POD.uid, ("nicd", CONFIG))
    (rec,) = await attach_pod(ctx, POD, lab.path(pod))
    assert rec.original == recorded  # the write-ahead row holds what `capture` sees
    assert lab.link("nicd", lab.node) is None

    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.RESTORED
    assert kit.pod_links(pod) == ["lo"]
    assert not [r for r in kit.rules(pod) if r.get("table") == "43"]  # carried rule removed
    assert kit.snapshot(lab.node, "nicd") == before
    assert diff(recorded, await _record(lab, "nicd")) == []
    assert ctx.store.list_attachments() == []
    # Idempotent: nothing left to do, nothing changes.
    assert await detach_pod(ctx, POD.uid) == []
    assert kit.snapshot(lab.node, "nicd") == before


async def test_release_claim_detaches_what_is_still_attached(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _rich_nic(lab)
    lab.add_nic("nice", node_cidr="10.42.0.2/24")
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicd")
    kit.claim(plugin_store, POD.uid, ("nicd", CONFIG))
    kit.claim(plugin_store, POD.uid, ("nice", {}), uid="claim-2", name="c2")
    await attach_pod(ctx, POD, lab.path(pod))

    released = await release_claim(ctx, "claim-1")

    assert [(d.device, d.outcome) for d in released] == [("nicd", Outcome.RESTORED)]
    assert kit.snapshot(lab.node, "nicd") == before
    assert kit.pod_links(pod) == ["lo", "nice"]
    assert [r.device for r in ctx.store.list_attachments()] == ["nice"]
    assert await release_claim(ctx, "claim-1") == []


async def test_netns_deleted_before_detach_records_a_lost_veth(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _rich_nic(lab)
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicd", CONFIG))
    await attach_pod(ctx, POD, lab.path(pod))
    lab.delete_netns(pod)  # destroys the veth, as CRI-O's early netns removal would

    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.LOST and "destroyed" in done.message
    assert ctx.store.list_attachments() == []
    assert lab.link("nicd", lab.node) is None


async def test_device_returned_under_its_pod_name_is_found_and_restored(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    # What the kernel does with a physical NIC when the pod netns dies: it
    # comes back to the node under its pod-side name with pod-side settings.
    _rich_nic(lab)
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicd")
    kit.claim(plugin_store, POD.uid, ("nicd", CONFIG))
    await attach_pod(ctx, POD, lab.path(pod))
    ip("link", "set", "net1", "netns", lab.node, netns=pod)
    lab.delete_netns(pod)
    assert lab.link("net1", lab.node) is not None

    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.RESTORED
    assert lab.link("net1", lab.node) is None
    assert kit.snapshot(lab.node, "nicd") == before


async def test_a_device_renamed_inside_the_pod_is_still_given_back(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _rich_nic(lab)
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicd")
    kit.claim(plugin_store, POD.uid, ("nicd", CONFIG))
    await attach_pod(ctx, POD, lab.path(pod))
    ip("link", "set", "net1", "down", netns=pod)
    ip("link", "set", "net1", "name", "renamed0", netns=pod)

    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.RESTORED
    assert kit.pod_links(pod) == ["lo"]
    assert kit.snapshot(lab.node, "nicd") == before


async def test_a_name_taken_on_the_node_keeps_the_row_until_it_is_freed(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _rich_nic(lab)
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicd")
    kit.claim(plugin_store, POD.uid, ("nicd", CONFIG))
    await attach_pod(ctx, POD, lab.path(pod))
    ip("link", "add", "nicd", "type", "veth", "peer", "name", "squat", netns=lab.node)

    with pytest.raises(NetworkStepError, match="is taken on the node") as err:
        await detach_pod(ctx, POD.uid)

    assert err.value.step == "restore on node"
    assert kit.pod_links(pod) == ["lo"]  # out of the pod, waiting under a temporary name
    assert len(ctx.store.list_attachments()) == 1
    ip("link", "del", "nicd", netns=lab.node)
    (done,) = await detach_pod(ctx, POD.uid)
    assert done.outcome == Outcome.RESTORED
    assert kit.snapshot(lab.node, "nicd") == before
    assert ctx.store.list_attachments() == []


async def test_carried_routes_and_rules_leave_the_pod_with_the_device(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _rich_nic(lab)
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicd")
    kit.claim(plugin_store, POD.uid, ("nicd", {}))  # host addresses, routes and rules carried
    await attach_pod(ctx, POD, lab.path(pod))
    assert [r["priority"] for r in kit.rules(pod) if r.get("table") == "43"] == [430]
    assert kit.ip_json("route", "show", "table", "43", netns=pod)

    await detach_pod(ctx, POD.uid)

    assert not [r for r in kit.rules(pod) if r.get("table") == "43"]
    assert kit.snapshot(lab.node, "nicd") == before
    assert [r["priority"] for r in kit.rules(lab.node) if r.get("table") == "43"] == [430]
