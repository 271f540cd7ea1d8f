"""The device comes back as it left: ethtool features and its bridge master too.

Features and private flags live on the device and travel with it into the
pod; the bridge (or bond) releases it when it leaves the namespace. The
node's view is read with `ethtool -k` and `ip -j`, never through pyroute2.
"""

from __future__ import annotations

from typing import Any

import pytest

from dranet.errors import NetworkStepError
from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import Outcome, detach_pod
from dranet_netlink_agent.hoststate import capture, diff, restore_on_node
from dranet_netlink_agent.linkops import get_link
from dranet_netlink_agent.netns import rtnl
from dranet_sandbox.netlab import NetLab, ip, netns_exec

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-rd", "default", "rd-0")
FEATURES = {"tx-checksum-ip-generic": False, "tso": False, "rx-gro-list": True,
            "rx-udp-gro-forwarding": False}  # fmt: skip


def _features(netns: str, ifname: str) -> str:
    return netns_exec(netns, "ethtool", "-k", ifname).stdout


def _nic(lab: NetLab) -> str:
    lab.add_nic("nicx", node_cidr="10.45.0.2/24", fabric_cidr="10.45.0.1/24")
    # A node setting that is not the default: it must come back, not the default.
    netns_exec(lab.node, "ethtool", "-K", "nicx", "rx-udp-gro-forwarding", "on")
    return _features(lab.node, "nicx")


async def test_features_changed_by_the_claim_are_restored_on_detach(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    before = _nic(lab)
    assert "rx-udp-gro-forwarding: on" in before
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicx", {"ethtool": {"features": FEATURES}}))
    await attach_pod(ctx, POD, lab.path(pod))
    inside = _features(pod, "nicx")
    assert "tx-checksum-ip-generic: off" in inside and "rx-gro-list: on" in inside
    assert "tcp-segmentation-offload: off" in inside

    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.RESTORED
    assert _features(lab.node, "nicx") == before


async def test_a_failed_ethtool_step_gives_the_features_back(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    """Features are set before private flags: a bad flag fails the step after them."""
    before = _nic(lab)
    snapshot = kit.snapshot(lab.node, "nicx")
    pod = lab.add_pod()
    bad = {"ethtool": {"features": FEATURES, "privateFlags": {"no-such-flag": True}}}
    kit.claim(plugin_store, POD.uid, ("nicx", bad))

    with pytest.raises(NetworkStepError) as err:
        await attach_pod(ctx, POD, lab.path(pod))

    assert err.value.step == "ethtool"
    assert _features(lab.node, "nicx") == before
    assert kit.snapshot(lab.node, "nicx") == snapshot
    assert "no-such-flag" in str(err.value) and "device has: none" in str(err.value)
    assert ctx.store.list_attachments() == []


def _bridge(lab: NetLab) -> None:
    ip("link", "add", "br0", "type", "bridge", netns=lab.node)
    ip("link", "set", "br0", "up", netns=lab.node)
    lab.add_nic("nicb")
    ip("link", "set", "nicb", "master", "br0", netns=lab.node)


def _master(lab: NetLab) -> str | None:
    link = lab.link("nicb", lab.node)
    assert link is not None
    master = link.get("master")
    return str(master) if master else None


async def test_a_bridge_port_comes_back_into_its_bridge(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _bridge(lab)
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicb", {"interface": {"addresses": ["10.46.0.2/24"]}}))
    (rec,) = await attach_pod(ctx, POD, lab.path(pod))
    assert rec.original["master"]["ifname"] == "br0"
    assert kit.pod_links(pod) == ["lo", "nicb"]

    await detach_pod(ctx, POD.uid)

    assert _master(lab) == "br0"
    ports = kit.ip_json("link", "show", "master", "br0", netns=lab.node)
    assert [p["ifname"] for p in ports] == ["nicb"]
    # Restoring again changes nothing (idempotent).
    async with rtnl(lab.path(lab.node)) as ipr:
        link = await get_link(ipr, ifname="nicb")
        assert link is not None
        await restore_on_node(ipr, link["ifindex"], rec.original)
        assert diff(rec.original, await capture(ipr, link["ifindex"])) == []
    assert _master(lab) == "br0"


async def test_a_bridge_deleted_meanwhile_is_not_required(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _bridge(lab)
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicb", {}))
    await attach_pod(ctx, POD, lab.path(pod))
    ip("link", "del", "br0", netns=lab.node)

    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.RESTORED
    assert _master(lab) is None
    assert ctx.store.list_attachments() == []
