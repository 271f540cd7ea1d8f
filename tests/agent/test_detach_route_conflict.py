"""A node route taken by another route while the NIC was in a pod.

The kernel answers EEXIST for any route with the same table, destination and
metric; restore counted that as done. Now it reads the route back: a
different one is logged naming both, and the detach still gives the NIC back.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import Outcome, detach_pod
from dranet_netlink_agent.hostread import capture
from dranet_netlink_agent.hostrestore import restore_on_node
from dranet_netlink_agent.linkops import get_link
from dranet_netlink_agent.netns import rtnl
from dranet_sandbox.netlab import NetLab, ip, ip_json

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-nr", "default", "nr-0")
CONFIG = {"interface": {"name": "net1"}}


def _route(lab: NetLab, dst: str) -> list[tuple[str | None, str]]:
    return [(r.get("gateway"), r["dev"]) for r in ip_json("route", "show", dst, netns=lab.node)]


def _nics(lab: NetLab) -> None:
    lab.add_nic("nicx", node_cidr="10.49.0.2/24", fabric_cidr="10.49.0.1/24")
    lab.add_nic("nicy", node_cidr="10.50.0.2/24", fabric_cidr="10.50.0.1/24")
    ip("route", "add", "10.150.0.0/16", "via", "10.49.0.1", "dev", "nicx", netns=lab.node)
    ip("route", "add", "10.151.0.0/16", "via", "10.49.0.1", "dev", "nicx", netns=lab.node)


async def test_a_route_taken_on_the_node_is_logged_and_the_nic_comes_back(
    lab: NetLab,
    ctx: AgentContext,
    plugin_store: Store,
    kit: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _nics(lab)
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicx", CONFIG))
    await attach_pod(ctx, POD, lab.path(pod))
    ip("route", "add", "10.150.0.0/16", "via", "10.50.0.1", "dev", "nicy", netns=lab.node)

    with caplog.at_level(logging.WARNING, logger="dranet.agent"):
        (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.RESTORED
    assert lab.link("nicx", lab.node) is not None
    warned = [r.getMessage() for r in caplog.records if "not restored" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "route 10.150.0.0/16 in table main" in warned[0]
    assert "via 10.50.0.1 dev nicy" in warned[0] and "via 10.49.0.1 dev nicx" in warned[0]
    assert _route(lab, "10.150.0.0/16") == [("10.50.0.1", "nicy")]  # the other one stays
    assert _route(lab, "10.151.0.0/16") == [("10.49.0.1", "nicx")]  # the rest came back
    assert ctx.store.list_attachments() == []


async def test_a_route_identical_to_the_recorded_one_counts_as_restored(
    lab: NetLab, caplog: pytest.LogCaptureFixture
) -> None:
    _nics(lab)
    async with rtnl(lab.path(lab.node)) as ipr:
        link = await get_link(ipr, ifname="nicx")
        assert link is not None
        state = await capture(ipr, link["ifindex"])
        assert {r["dst"] for r in state["routes"]} == {"10.150.0.0", "10.151.0.0"}
        # Every recorded route is there already: each add meets EEXIST and reads back the same.
        with caplog.at_level(logging.WARNING, logger="dranet.agent"):
            await restore_on_node(ipr, link["ifindex"], state)

    assert not [r for r in caplog.records if "not restored" in r.getMessage()]
    assert _route(lab, "10.150.0.0/16") == [("10.49.0.1", "nicx")]
