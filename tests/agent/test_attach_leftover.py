"""A leftover attachment that cannot be given back stops the new attach.

The finding: pod A has veth nicS attached (as net1). Another interface named
nicS appears on the node. AttachPod for the same pod into a new namespace B
first gives back the leftover row: the real NIC comes back under a temporary
name (its name is taken) and the restore fails. The attach must stop there:
not move the newcomer (found by the same name) into B, and not overwrite the
row that holds the real NIC's host state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from dranet.errors import NetworkStepError, RefusedError
from dranet.store import AttachmentPhase, Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import detach_pod
from dranet_sandbox.netlab import NetLab, ip

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-lo", "default", "lo-0")
CONFIG = {"interface": {"name": "net1"}}


async def test_failed_leftover_give_back_fails_the_attach(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nicS", node_cidr="10.71.0.2/24", mtu=1450)
    before = kit.snapshot(lab.node, "nicS")
    pod_a, pod_b = lab.add_pod(), lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicS", CONFIG))
    (first,) = await attach_pod(ctx, POD, lab.path(pod_a))
    lab.add_nic("nicS", node_cidr="10.72.0.2/24")  # a newcomer takes the name
    newcomer = kit.snapshot(lab.node, "nicS")

    with pytest.raises(NetworkStepError) as err:
        await attach_pod(ctx, POD, lab.path(pod_b))

    assert err.value.step == "restore on node"
    assert kit.pod_links(pod_b) == ["lo"]  # the newcomer was not moved
    assert kit.snapshot(lab.node, "nicS") == newcomer
    (row,) = ctx.store.list_attachments()
    assert (row.netns_path, row.phase) == (first.netns_path, AttachmentPhase.ATTACHED)
    assert row.original == first.original  # the real NIC's host state is kept

    # Once the name is free again, a detach restores the real NIC exactly.
    ip("link", "del", "nicS", netns=lab.node)
    await detach_pod(ctx, POD.uid)
    assert kit.snapshot(lab.node, "nicS") == before
    assert ctx.store.list_attachments() == []


@dataclass
class FrozenResolver:
    """An inventory that has not seen the latest change yet (its rescan finds nothing new)."""

    devices: dict[str, Any]

    def find(self, name: str) -> Any:
        return self.devices.get(name)

    def find_by(self, *, permanent_mac: str = "", pci_address: str = "", ifname: str = "") -> Any:
        return next((d for d in self.devices.values() if ifname and d.ifname == ifname), None)

    def is_uplink(self, ifname: str) -> bool:
        return False

    async def rescan(self) -> None:
        return None


async def test_an_interface_that_took_the_name_is_not_moved(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nicT", node_cidr="10.73.0.2/24")
    ctx.resolver = FrozenResolver({"nicT": ctx.resolver.find("nicT")})
    ip("link", "del", "nicT", netns=lab.node)
    ip("link", "add", "other0", "type", "veth", "peer", "name", "other1", netns=lab.node)
    ip("link", "add", "nicT", "type", "veth", "peer", "name", "nicT1", netns=lab.node)
    newcomer = kit.snapshot(lab.node, "nicT")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicT", CONFIG))

    with pytest.raises(RefusedError, match=r"named nicT on the node is not that device \(ifindex"):
        await attach_pod(ctx, POD, lab.path(pod))

    assert kit.pod_links(pod) == ["lo"]
    assert kit.snapshot(lab.node, "nicT") == newcomer
    assert ctx.store.list_attachments() == []
