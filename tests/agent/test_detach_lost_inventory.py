"""A device destroyed with its pod namespace leaves the inventory when its row goes.

Regression (found by the node sandbox): the inventory lists attached devices
from the attachments table as of its last scan, and nothing on the node
announces a veth that died inside a pod, so the lost device stayed
published until the periodic resync (60 s) unless detach rescans.
"""

from __future__ import annotations

from typing import Any

import pytest

from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import Outcome, detach_pod
from dranet_sandbox.netlab import NetLab

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-lost", "default", "lost-0")


async def test_a_lost_device_triggers_a_rescan(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nicl", node_cidr="10.43.0.2/24", fabric_cidr="10.43.0.1/24")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicl", {"interface": {"name": "net1"}}))
    await attach_pod(ctx, POD, lab.path(pod))
    lab.delete_netns(pod)  # the veth dies with the namespace
    scans = ctx.resolver.rescans  # type: ignore[attr-defined]

    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.LOST
    assert ctx.resolver.rescans == scans + 1  # type: ignore[attr-defined]


async def test_a_restored_device_needs_no_extra_rescan(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    # Its return to the node is a netlink event the inventory already follows.
    lab.add_nic("nicr", node_cidr="10.44.0.2/24", fabric_cidr="10.44.0.1/24")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicr", {"interface": {"name": "net1"}}))
    await attach_pod(ctx, POD, lab.path(pod))
    scans = ctx.resolver.rescans  # type: ignore[attr-defined]

    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.RESTORED
    assert ctx.resolver.rescans == scans  # type: ignore[attr-defined]
