"""Detach finds the pod-side device by the ifindex it got in the pod, not by its name."""

from __future__ import annotations

from typing import Any

import pytest

from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import Outcome, detach_pod
from dranet_sandbox.netlab import NetLab, ip

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-rn", "default", "rn-0")


async def test_a_renamed_device_is_found_and_the_new_holder_of_its_name_stays(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nicX", node_cidr="10.91.0.2/24", mtu=1450)
    before = kit.snapshot(lab.node, "nicX")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicX", {"interface": {"name": "net1"}}))
    await attach_pod(ctx, POD, lab.path(pod))
    # The pod renames our device and gives its name to a veth of its own.
    ip("link", "set", "net1", "down", netns=pod)
    ip("link", "set", "net1", "name", "mine", netns=pod)
    ip("link", "add", "net1", "type", "veth", "peer", "name", "net1p", netns=pod)

    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.RESTORED
    assert sorted(kit.pod_links(pod)) == ["lo", "net1", "net1p"]  # the pod's own veth stays
    assert kit.snapshot(lab.node, "nicX") == before
