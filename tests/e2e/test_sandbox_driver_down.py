"""End to end on the node sandbox: a pod removed while the driver is down (§6.2 #15).

The kubelet tears the pod down through the runtime while dranet cannot
hear it; then dranet comes back. Two ways to be down:

- the whole driver (plugin, hook and agent): the hook's Synchronize on
  reconnect finds the attachment of a pod the runtime no longer has and
  detaches it, before the kubelet's unprepare releases the claim;
- only the agent (the hook's StopPodSandbox detach fails, the teardown goes
  on): the kubelet's unprepare releases what is left.

Our NICs are veths, so the NIC died with the pod netns (a physical NIC
would come back to the node): it is reported lost, gone from the store
and from the ResourceSlice, and nothing else leaks — `dranet status` shows
no claim and no attachment, the other NIC is untouched and still serves
pods. Each case gets its own sandbox: it loses a NIC for good.
"""

from __future__ import annotations

import pytest

from dranet_sandbox.netlab import ip_json
from dranet_sandbox.node import NodeSandbox

from .conftest import SandboxFactory
from .scenario_support import dranet_status, on_nic, wait_nics_settled, wait_until

pytestmark = [pytest.mark.root, pytest.mark.runtime]

WHOLE_DRIVER = ("plugin", "hook", "agent")  # the DaemonSet pod is gone
START_ORDER = ("agent", "hook", "plugin")


def fabric_links(node: NodeSandbox) -> set[str]:
    return {link["ifname"] for link in ip_json("link", netns=node.lab.fabric)}


@pytest.mark.parametrize("down", [WHOLE_DRIVER, ("agent",)], ids=["whole-driver", "agent-only"])
async def test_pod_removed_while_the_driver_is_down_leaks_nothing(
    sandbox_factory: SandboxFactory, down: tuple[str, ...]
) -> None:
    node = await sandbox_factory(nics=2)
    nic, spare = node.nics
    await wait_nics_settled(node)
    spare_before = node.nic_snapshot(spare.name)
    node.control.create_claim(
        "c1",
        requests=[on_nic(nic)],
        parameters={"interface": {"name": "net1", "addresses": ["10.200.1.90/24"]}},
    )
    pod = await node.start_pod("orphan", ["c1"])
    claim_uid = node.control.claim("default", "c1")["metadata"]["uid"]
    status = dranet_status(node)
    assert [(a["claim_uid"], a["device"]) for a in status["attachments"]] == [(claim_uid, nic.name)]
    assert [c["uid"] for c in status["claims"]] == [claim_uid]

    for name in down:
        await node.stop_service(name)
    # The kubelet removes the pod through the runtime; dranet hears nothing.
    await node.stop_sandbox(pod)
    await node.remove_sandbox(pod)
    assert node.runtime is not None and await node.runtime.pod_uids() == []
    # A veth dies with its netns, both ends (the kernel cleans a netns up a moment
    # later): the NIC is gone for good.
    await wait_until(lambda: nic.peer not in fabric_links(node), "the NIC's veth to die")
    assert node.nic_snapshot(nic.name) is None

    for name in START_ORDER:
        if name in down:
            await node.start_service(name)
    if "hook" in down:
        # The hook's Synchronize detaches the pod the runtime no longer has, unasked,
        # and the agent reports the device lost.
        await wait_until(lambda: dranet_status(node)["attachments"] == [], "the hook's sync")
        assert f"pod default/orphan: device {nic.name} LOST" in node.services["hook"].log_text(
            tail=1_000_000
        )
    else:
        # Nobody told the agent: its row waits for the claim's release.
        assert [a["claim_uid"] for a in dranet_status(node)["attachments"]] == [claim_uid]
    # The kubelet's unprepare succeeds at once: the plugin waits for the
    # restarted agent within its deadline instead of failing UNAVAILABLE.
    assert await node.unprepare(pod) == {claim_uid: ""}
    node.deallocate(pod)
    node.pods.pop(pod.uid)

    status = dranet_status(node)
    assert status["ok"], status["problems"]
    assert status["attachments"] == [] and status["claims"] == []
    assert [(d["name"], d["state"]) for d in status["devices"]] == [(spare.name, "published")]
    await wait_until(
        lambda: node.control.published_devices() == [spare.name], "the lost NIC to be unpublished"
    )
    assert "destroyed with the pod" in node.services["agent"].log_text(tail=1_000_000)
    assert node.nic_snapshot(spare.name) == spare_before

    # The driver is whole again: the other NIC serves the next pod.
    node.control.create_claim("c2", parameters={"interface": {"name": "net1"}})
    again = await node.start_pod("next", ["c2"])
    assert node.ping(again, spare.fabric_ip)
    await node.stop_pod(again)
    assert await node.settled_snapshot(spare.name, spare_before) == spare_before
