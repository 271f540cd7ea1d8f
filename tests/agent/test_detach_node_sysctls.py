"""Per-interface sysctls come back with the NIC.

The kernel gives a device fresh net/ipv4/conf/<if> and net/ipv6/conf/<if>
values each time it changes namespace, so an operator's settings were lost
when a NIC came back from a pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import Outcome, detach_pod
from dranet_netlink_agent.hostread import NODE_SYSCTLS, capture
from dranet_netlink_agent.hostrestore import changed_sysctls, restore_on_node
from dranet_netlink_agent.linkops import get_link
from dranet_netlink_agent.netns import rtnl
from dranet_sandbox.netlab import NetLab, ip

POD = PodRef("pod-uid-sx", "default", "sx-0")
# Non-default on a fresh veth; the pod-side config writes other values for two of them.
V4_SET = {"arp_ignore": "2", "arp_announce": "2", "rp_filter": "2", "forwarding": "1"}
V6_SET = {"accept_ra": "2", "autoconf": "0", "forwarding": "1"}
CONFIG = {"interface": {"name": "net1", "arpIgnore": 1, "forwarding": False}}


def _write(lab: NetLab, family: str, ifname: str, values: dict[str, str]) -> None:
    for key, value in values.items():
        path = f"/proc/sys/net/{family}/conf/{ifname}/{key}"
        ip("netns", "exec", lab.node, "sh", "-c", f"echo {value} > {path}")


def _read(kit: Any, lab: NetLab, ifname: str) -> dict[str, str]:
    keys = [k.split("/", 1) for k in NODE_SYSCTLS]
    return {f"{f}/{k}": kit.sysctl(lab.node, f"{f}/conf/{ifname}/{k}") for f, k in keys}


def test_only_differing_sysctls_are_written_in_recorded_order() -> None:
    recorded = {"ipv6/disable_ipv6": "1", "ipv4/arp_ignore": "2", "ipv6/accept_ra": "2"}
    current = {"ipv6/disable_ipv6": "0", "ipv4/arp_ignore": "2"}
    assert list(changed_sysctls(recorded, current).items()) == [
        ("ipv6/disable_ipv6", "1"),
        ("ipv6/accept_ra", "2"),
    ]
    assert changed_sysctls(recorded, recorded) == {}


def test_disable_ipv6_is_restored_before_any_other_key() -> None:
    assert NODE_SYSCTLS[0] == "ipv6/disable_ipv6"


@pytest.mark.root
@pytest.mark.parametrize("disable_ipv6", ["0", "1"])
async def test_detach_gives_back_the_node_sysctls(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any, disable_ipv6: str
) -> None:
    lab.add_nic("nics", node_cidr="10.47.0.2/24", fabric_cidr="10.47.0.1/24", mtu=1450)
    _write(lab, "ipv4", "nics", V4_SET)
    _write(lab, "ipv6", "nics", {**V6_SET, "disable_ipv6": disable_ipv6})
    if disable_ipv6 == "0":
        ip("addr", "add", "fd47::2/64", "dev", "nics", "nodad", netns=lab.node)
    before = _read(kit, lab, "nics")
    assert before["ipv4/arp_ignore"] == "2" and before["ipv6/accept_ra"] == "2"
    snapshot = kit.snapshot(lab.node, "nics")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nics", CONFIG))
    (rec,) = await attach_pod(ctx, POD, lab.path(pod))
    assert rec.original["sysctls"]["ipv4/arp_ignore"] == "2"
    assert kit.sysctl(pod, "ipv4/conf/net1/arp_ignore") == "1"  # the claim's, in the pod

    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.RESTORED
    assert _read(kit, lab, "nics") == before
    assert kit.snapshot(lab.node, "nics") == snapshot  # the IPv6 address is back too


@pytest.mark.root
async def test_a_row_without_sysctls_restores_as_before(lab: NetLab, kit: Any) -> None:
    lab.add_nic("nicr", node_cidr="10.48.0.2/24", fabric_cidr="10.48.0.1/24")
    async with rtnl(lab.path(lab.node)) as ipr:
        link = await get_link(ipr, ifname="nicr")
        assert link is not None
        state = await capture(ipr, link["ifindex"])
        _write(lab, "ipv4", "nicr", {"arp_ignore": "2"})
        old_row = {k: v for k, v in state.items() if k != "sysctls"}
        await restore_on_node(ipr, link["ifindex"], old_row)
        assert kit.sysctl(lab.node, "ipv4/conf/nicr/arp_ignore") == "2"  # untouched
        await restore_on_node(ipr, link["ifindex"], state)
        assert kit.sysctl(lab.node, "ipv4/conf/nicr/arp_ignore") == "0"  # the recorded value


@pytest.mark.root
async def test_capture_reads_under_the_agents_sysctl_root(lab: NetLab, tmp_path: Path) -> None:
    lab.add_nic("nicq")
    conf = tmp_path / "net" / "ipv4" / "conf" / "nicq"
    conf.mkdir(parents=True)
    (conf / "arp_ignore").write_text("7\n")
    async with rtnl(lab.path(lab.node)) as ipr:
        link = await get_link(ipr, ifname="nicq")
        assert link is not None
        state = await capture(ipr, link["ifindex"], sysctl_root=str(tmp_path))
    assert state["sysctls"] == {"ipv4/arp_ignore": "7"}
