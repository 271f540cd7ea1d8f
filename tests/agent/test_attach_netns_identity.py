"""The pod namespace is a namespace, not a path: never the node's, never a reused name.

AttachPod refuses the node's (and the agent's own) namespace however it is
spelled. The row records the namespace's nsfs identity; detach and the reaper
only re-enter a path that still names that namespace, so a pod namespace
destroyed and replaced under the same path (or a reused pid) is "gone".
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from dranet.errors import RefusedError
from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import Outcome, detach_pod, reap_orphans
from dranet_netlink_agent.netnspaths import DEFAULT_ROOTS, PID_TEMPLATE
from dranet_sandbox.netlab import NetLab, ip

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-ni", "default", "ni-0")
CONFIG = {"interface": {"name": "net1", "addresses": ["192.168.81.2/24"]}}


@pytest.fixture
def node_pid(lab: NetLab) -> Iterator[int]:
    """A process living in the lab's node namespace."""
    proc = subprocess.Popen(["ip", "netns", "exec", lab.node, "sleep", "30"])
    try:
        for _ in range(200):  # until `ip netns exec` has entered the namespace
            if os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat(lab.path(lab.node)).st_ino:
                break
            subprocess.run(["sleep", "0.01"], check=True)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("spelling", ["bind mount", "pid"])
async def test_the_node_namespace_is_refused(
    lab: NetLab,
    ctx: AgentContext,
    plugin_store: Store,
    kit: Any,
    *,
    node_pid: int,
    spelling: str,
) -> None:
    lab.add_nic("nicN", node_cidr="10.81.0.2/24")
    before = kit.snapshot(lab.node, "nicN")
    kit.claim(plugin_store, POD.uid, ("nicN", CONFIG))
    ctx.netns_roots = (*DEFAULT_ROOTS, PID_TEMPLATE)
    path = lab.path(lab.node) if spelling == "bind mount" else f"/proc/{node_pid}/ns/net"

    with pytest.raises(RefusedError, match="is the node's network namespace, not a pod's"):
        await attach_pod(ctx, POD, path)

    assert kit.snapshot(lab.node, "nicN") == before
    assert "net1" not in kit.pod_links(lab.node)
    assert ctx.store.list_attachments() == []


def test_the_agents_own_namespace_is_never_a_pod(ctx: AgentContext) -> None:
    own = os.stat("/proc/self/ns/net")
    ids = ctx.host_netns_ids()
    assert ids[(own.st_dev, own.st_ino)] == "the agent's own network namespace"
    node = os.stat(ctx.node_netns or "")
    assert ids[(node.st_dev, node.st_ino)] == "the node's network namespace"


def _replace_netns(lab: NetLab, name: str) -> None:
    """The pod's namespace dies and another one is mounted under the same path."""
    ip("netns", "del", name)
    ip("netns", "add", name)
    ip("link", "add", "net1", "type", "veth", "peer", "name", "other", netns=name)


async def test_a_namespace_replaced_under_the_same_path_is_gone(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nicI", node_cidr="10.82.0.2/24")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicI", CONFIG))
    (rec,) = await attach_pod(ctx, POD, lab.path(pod))
    st = os.stat(lab.path(pod))
    assert rec.result["netns_id"] == [st.st_dev, st.st_ino]

    _replace_netns(lab, pod)
    (done,) = await reap_orphans(ctx)

    assert (done.device, done.outcome) == ("nicI", Outcome.LOST)  # the veth died with it
    assert sorted(kit.pod_links(pod)) == ["lo", "net1", "other"]  # the newcomer is untouched
    assert ctx.store.list_attachments() == []


async def test_detach_does_not_enter_a_replaced_namespace(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any
) -> None:
    lab.add_nic("nicJ", node_cidr="10.83.0.2/24")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicJ", CONFIG))
    await attach_pod(ctx, POD, lab.path(pod))

    _replace_netns(lab, pod)
    (done,) = await detach_pod(ctx, POD.uid)

    assert done.outcome == Outcome.LOST
    assert sorted(kit.pod_links(pod)) == ["lo", "net1", "other"]
    assert [link["ifname"] for link in kit.ip_json("link", "show", netns=lab.node)] == ["lo"]
