"""A route the pod already has: identical is fine, a different one fails the attach.

The kernel answers EEXIST for any route with the same table, destination and
metric, whatever its gateway or device; counting that as done left pods
Ready without the route they asked for.
"""

from __future__ import annotations

from typing import Any

import pytest

from dranet.errors import NetworkStepError
from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import detach_pod
from dranet_sandbox.netlab import NetLab, ip, ip_json

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-rc", "default", "rc-0")


def _pod_with_eth0(lab: NetLab) -> str:
    """A pod whose CNI interface eth0 holds the default route, as every pod has."""
    pod = lab.add_pod()
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "cni0", "netns", lab.fabric,
       netns=pod)  # fmt: skip
    ip("addr", "add", "10.99.0.2/24", "dev", "eth0", netns=pod)
    ip("link", "set", "eth0", "up", netns=pod)
    ip("route", "add", "default", "via", "10.99.0.1", "dev", "eth0", netns=pod)
    return pod


def _routes(netns: str, *args: str) -> list[dict[str, Any]]:
    return ip_json("route", "show", *args, netns=netns)


async def test_a_conflicting_default_route_fails_the_attach_and_rolls_back(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nicc", node_cidr="10.44.0.2/24", fabric_cidr="10.44.0.1/24")
    pod = _pod_with_eth0(lab)
    before = kit.snapshot(lab.node, "nicc")
    config = {
        "interface": {"name": "net1", "addresses": ["192.0.2.2/24"]},
        "routes": [{"destination": "0.0.0.0/0", "gateway": "192.0.2.1"}],
    }
    kit.claim(plugin_store, POD.uid, ("nicc", config))

    with pytest.raises(NetworkStepError) as err:
        await attach_pod(ctx, POD, lab.path(pod))

    message = str(err.value)
    assert err.value.step == "routes", message
    assert "0.0.0.0/0" in message and "table main" in message
    assert "via 10.99.0.1 dev eth0" in message and "via 192.0.2.1 dev net1" in message
    assert "another table" in message
    # Rolled back: the NIC is on the node as it was, the pod keeps its own route.
    assert kit.snapshot(lab.node, "nicc") == before
    assert kit.pod_links(pod) == ["lo", "eth0"]
    assert [(r["dst"], r.get("gateway"), r["dev"]) for r in _routes(pod, "default")] == [
        ("default", "10.99.0.1", "eth0")
    ]
    assert ctx.store.list_attachments() == []


async def test_a_route_identical_to_an_existing_one_counts_as_done(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nicc", node_cidr="10.44.0.2/24", fabric_cidr="10.44.0.1/24")
    pod = _pod_with_eth0(lab)
    # The subnet route is the kernel's own once the address is up: same
    # table, destination, metric, device, scope and no gateway: the same route.
    config = {
        "interface": {"name": "net1", "addresses": ["192.0.2.2/24"]},
        "routes": [
            {"destination": "192.0.2.0/24", "scope": 253},
            {"destination": "198.51.100.0/24", "gateway": "192.0.2.1"},
        ],
    }
    kit.claim(plugin_store, POD.uid, ("nicc", config))

    (rec,) = await attach_pod(ctx, POD, lab.path(pod))

    assert rec.result["name"] == "net1"
    assert [(r["dst"], r["dev"]) for r in _routes(pod, "192.0.2.0/24")] == [
        ("192.0.2.0/24", "net1")
    ]
    assert [(r["dst"], r["gateway"]) for r in _routes(pod, "198.51.100.0/24")] == [
        ("198.51.100.0/24", "192.0.2.1")
    ]
    await detach_pod(ctx, POD.uid)


async def test_a_rule_the_pod_already_has_is_kept_after_detach(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    """Rules are added with NLM_F_EXCL: EEXIST means an identical rule (same
    priority and selectors) is there; it is not ours, so detach leaves it."""
    lab.add_nic("nicc", node_cidr="10.44.0.2/24", fabric_cidr="10.44.0.1/24")
    pod = _pod_with_eth0(lab)
    ip("rule", "add", "to", "10.145.0.0/16", "table", "45", "prio", "450", netns=pod)
    config = {
        "interface": {"name": "net1", "addresses": ["192.0.2.2/24"]},
        "rules": [{"priority": 450, "destination": "10.145.0.0/16", "table": 45}],
    }
    kit.claim(plugin_store, POD.uid, ("nicc", config))

    (rec,) = await attach_pod(ctx, POD, lab.path(pod))
    assert rec.result["pod_changes"]["rules"] == []
    await detach_pod(ctx, POD.uid)

    kept = [r for r in kit.rules(pod) if r["priority"] == 450]
    assert [(r["dst"], r["dstlen"], r["table"]) for r in kept] == [("10.145.0.0", 16, "45")]
