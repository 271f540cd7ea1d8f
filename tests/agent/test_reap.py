"""Pods whose network namespace vanished without a StopPodSandbox are noticed by the agent.

containerd forgets, when it restarts, which pods it told NRI about: those
pods never get a stop event. Their namespace still goes away, and the agent's
reaper gives their devices back.
"""

from __future__ import annotations

from typing import Any

import pytest

from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import Outcome, reap_orphans
from dranet_sandbox.netlab import NetLab, ip

pytestmark = pytest.mark.root

GONE = PodRef("pod-gone", "default", "gone-0")
LIVE = PodRef("pod-live", "default", "live-0")
CONFIG = {"interface": {"name": "net1", "addresses": ["192.168.80.2/24"], "mtu": 1400}}


async def test_only_devices_of_vanished_pods_are_given_back(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nicg", node_cidr="10.51.0.2/24", fabric_cidr="10.51.0.1/24")
    lab.add_nic("nicl", node_cidr="10.52.0.2/24", fabric_cidr="10.52.0.1/24")
    lab.add_nic("nicp", node_cidr="10.53.0.2/24", fabric_cidr="10.53.0.1/24", mtu=1450)
    before = kit.snapshot(lab.node, "nicp")
    gone, live = lab.add_pod(), lab.add_pod()
    kit.claim(plugin_store, GONE.uid, ("nicg", CONFIG), uid="claim-gone")
    kit.claim(plugin_store, LIVE.uid, ("nicl", CONFIG), uid="claim-live")
    await attach_pod(ctx, GONE, lab.path(gone))
    await attach_pod(ctx, LIVE, lab.path(live))
    assert await reap_orphans(ctx) == []  # both alive: nothing to do

    lab.delete_netns(gone)  # the runtime tore the pod down and told nobody
    (done,) = await reap_orphans(ctx)

    assert (done.device, done.outcome) == ("nicg", Outcome.LOST)  # a veth dies with its netns
    assert [r.pod_uid for r in ctx.store.list_attachments()] == [LIVE.uid]
    assert kit.pod_links(live) == ["lo", "net1"]
    assert kit.snapshot(lab.node, "nicp") == before  # bystanders untouched
    assert await reap_orphans(ctx) == []


async def test_a_physical_nic_returned_by_the_kernel_is_restored(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    # A physical NIC outlives the pod netns: the kernel moves it back to the
    # node under its pod-side name. Veths die instead, so the test moves it
    # back by hand just before deleting the namespace, as the kernel would.
    lab.add_nic("nicr", node_cidr="10.54.0.2/24", fabric_cidr="10.54.0.1/24", mtu=1450)
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicr")
    kit.claim(plugin_store, GONE.uid, ("nicr", CONFIG))
    await attach_pod(ctx, GONE, lab.path(pod))
    ip("link", "set", "net1", "netns", lab.node, netns=pod)
    lab.delete_netns(pod)

    (done,) = await reap_orphans(ctx)

    assert done.outcome == Outcome.RESTORED
    assert kit.snapshot(lab.node, "nicr") == before
    assert ctx.store.list_attachments() == []
