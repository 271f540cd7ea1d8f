"""An attached device republished after an agent restart looks as it did before the attach.

Regression: a fresh Inventory (the agent restarted while a veth sat in a pod)
rebuilt the device from its host-state record, which lacked operstate, link
type and `virtual`, so it came back with empty `state`/`encapsulation` and
`virtual=false` and the ResourceSlice churned after every restart.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from dranet.agent.v1 import agent_pb2
from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.inventory import Inventory
from dranet_sandbox.netlab import NetLab, ip

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-restart", "default", "restart-0")


def _wait_up(lab: NetLab, ifname: str) -> None:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        states = {lk["ifname"]: lk["operstate"] for lk in lab.links(lab.node)}
        if states.get(ifname) == "UP":
            return
        time.sleep(0.02)
    raise AssertionError(f"{ifname} not UP in time")


def _published(inv: Inventory, name: str) -> agent_pb2.Device:
    return next(d for d in inv.devices() if d.name == name)


async def test_restarted_inventory_republishes_an_attached_veth_unchanged(
    lab: NetLab, ctx: AgentContext, agent_store: Store, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nicq", node_cidr="10.46.0.2/24", fabric_cidr="10.46.0.1/24")
    ip("link", "set", "nicq", "alias", "uplink to rack 7", netns=lab.node)
    _wait_up(lab, "nicq")
    node = lab.path(lab.node)
    before_inv = Inventory(netns=node)
    await before_inv.rescan()
    before = _published(before_inv, "nicq")
    assert before.state == "up" and before.encapsulation == "ether"  # the case at stake
    assert before.virtual and before.type == "veth"

    ctx.resolver = before_inv  # attach resolves through the real inventory
    kit.claim(plugin_store, POD.uid, ("nicq", {"interface": {"name": "net1"}}))
    await attach_pod(ctx, POD, lab.path(lab.add_pod()))

    restarted = Inventory(netns=node, attachments=agent_store.list_attachments)
    await restarted.rescan()
    after = _published(restarted, "nicq")

    assert after.HasField("allocation") and after.allocation.pod.uid == POD.uid
    after.ClearField("allocation")
    assert after == before, f"before:\n{before}\nafter:\n{after}"
