"""Atomic attach: a failing step leaves the node exactly as before and the pod empty."""

from __future__ import annotations

from typing import Any

import pytest

from dranet.errors import NetworkStepError
from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_sandbox.netlab import NetLab, ip

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-rb", "default", "rb-0")


def _prepare_node(lab: NetLab, name: str, net: str) -> None:
    lab.add_nic(name, node_cidr=f"{net}.2/24", fabric_cidr=f"{net}.1/24", mtu=1450)
    ip("addr", "add", "fd77::2/64", "dev", name, netns=lab.node)
    ip("route", "add", "10.123.0.0/16", "via", f"{net}.1", netns=lab.node)
    ip("route", "add", "10.124.0.0/16", "via", f"{net}.1", "table", "77", netns=lab.node)
    ip("link", "set", name, "alias", "uplink-to-fabric", netns=lab.node)


def _assert_untouched(lab: NetLab, pod: str, ctx: AgentContext, before: Any, kit: Any) -> None:
    assert kit.snapshot(lab.node, "nicr") == before
    assert kit.pod_links(pod) == ["lo"]
    assert [r for r in kit.rules(pod) if r.get("priority") not in (0, 32766, 32767)] == []
    assert ctx.store.list_attachments() == []


async def test_unreachable_gateway_rolls_everything_back(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _prepare_node(lab, "nicr", "10.31.0")
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicr")
    config = {
        "interface": {
            "name": "net1",
            "addresses": ["192.168.80.2/24"],
            "mtu": 1300,
            "hardwareAddr": "02:00:00:00:80:02",
        },
        "rules": [{"priority": 900, "source": "192.168.80.0/24", "table": 90}],
        "routes": [{"destination": "10.200.0.0/16", "gateway": "172.31.99.1"}],
    }
    kit.claim(plugin_store, POD.uid, ("nicr", config))

    with pytest.raises(NetworkStepError) as err:
        await attach_pod(ctx, POD, lab.path(pod))

    assert err.value.step == "routes"
    assert "nicr" in str(err.value) and "unreachable" in str(err.value).lower()
    _assert_untouched(lab, pod, ctx, before, kit)


async def test_failure_on_second_device_gives_back_the_first(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _prepare_node(lab, "nicr", "10.32.0")
    lab.add_nic("nicb", node_cidr="10.33.0.2/24")
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicr")
    before_b = kit.snapshot(lab.node, "nicb")
    bad = {"ethtool": {"features": {"no-such-feature": True}}}
    kit.claim(plugin_store, POD.uid, ("nicr", {"interface": {"name": "net1"}}), ("nicb", bad))

    with pytest.raises(NetworkStepError) as err:
        await attach_pod(ctx, POD, lab.path(pod))

    assert err.value.step == "ethtool" and "no-such-feature" in str(err.value)
    _assert_untouched(lab, pod, ctx, before, kit)
    assert kit.snapshot(lab.node, "nicb") == before_b


async def test_vrf_either_works_or_rolls_back(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    _prepare_node(lab, "nicr", "10.34.0")
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicr")
    config = {
        "interface": {"addresses": ["192.168.90.2/24"], "vrf": {"name": "blue", "table": 1100}},
        "routes": [{"destination": "10.210.0.0/16", "gateway": "192.168.90.1"}],
    }
    kit.claim(plugin_store, POD.uid, ("nicr", config))
    if not kit.vrf_supported(lab):
        with pytest.raises(NetworkStepError) as err:
            await attach_pod(ctx, POD, lab.path(pod))
        assert err.value.step == "vrf"
        _assert_untouched(lab, pod, ctx, before, kit)
        pytest.skip("this kernel has no VRF support; checked the clean rollback instead")
    await attach_pod(ctx, POD, lab.path(pod))
    vrf = lab.link("blue", pod)
    assert vrf is not None and vrf["linkinfo"]["info_data"]["table"] == 1100
    nic = lab.link("nicr", pod)
    assert nic is not None and nic.get("master") == "blue"
    routes = kit.ip_json("route", "show", "table", "1100", netns=pod)
    assert any(r["dst"] == "10.210.0.0/16" for r in routes)
    assert kit.sysctl(pod, "ipv4/tcp_l3mdev_accept") == "1"
    assert kit.sysctl(pod, "ipv4/udp_l3mdev_accept") == "1"
