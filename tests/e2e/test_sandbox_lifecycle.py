"""End to end on the node sandbox: pods come and go, and claims mix drivers.

- Delete and re-create a pod (a Deployment's pod with a claim from a
  template): the NIC returns to the node, is published again, and the next
  pod's claim gets the same NIC.
- A claim that also holds another driver's device (and that driver's
  config, which is not valid dranet config), next to a claim holding only
  another driver's device: we prepare ours only, leave that driver's
  status entries and slice alone, and the pod gets no other NIC from us.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from dranet_sandbox.controlplane import DeviceRequest, opaque_config
from dranet_sandbox.node import NodeSandbox
from dranet_sandbox.standins.kubelet import PreparedDevice

from .scenario_support import global_addresses, on_nic, shared_sandbox, stop_leftovers

pytestmark = [pytest.mark.root, pytest.mark.runtime, pytest.mark.asyncio(loop_scope="module")]

node = shared_sandbox(nics=2)
GPU_DRIVER = "gpu.example.com"


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def leave_no_pods(node: NodeSandbox) -> AsyncIterator[None]:
    yield
    await stop_leftovers(node)


def allocated_device(node: NodeSandbox, claim: str) -> list[str]:
    status = node.control.claim("default", claim)["status"]
    return [r["device"] for r in status["allocation"]["devices"]["results"]]


async def test_delete_and_recreate_the_pod_reallocates_the_returned_nic(
    node: NodeSandbox,
) -> None:
    nic = node.nics[0]
    before = node.nic_snapshot(nic.name)
    assert before is not None
    seen: list[tuple[str, str]] = []
    for generation in (1, 2):
        claim = f"web-{generation}"  # the template's claim for this pod
        address = f"10.200.1.{80 + generation}"
        node.control.create_claim(
            claim, parameters={"interface": {"name": "net1", "addresses": [f"{address}/24"]}}
        )
        pod = await node.start_pod(f"web-{generation}", [claim])
        assert allocated_device(node, claim) == [nic.name]
        [link] = node.pod_ip_json(pod, "addr", "show", "dev", "net1")
        assert link["address"] == before["link"]["address"]  # the same NIC
        assert global_addresses(link) == {(address, 24)}
        assert node.nic_snapshot(nic.name) is None
        assert node.ping(pod, nic.fabric_ip)
        seen.append((pod.uid, pod.netns))

        await node.stop_pod(pod)  # the Deployment's pod is deleted ...
        node.api.delete("resourceclaims", claim, "default")  # ... and its claim with it
        assert await node.settled_snapshot(nic.name, before) == before
        assert node.runtime is not None and pod.uid not in await node.runtime.pod_uids()
        await node.wait_published([nic.name])
    assert len(set(seen)) == 2 and seen[0][1] != seen[1][1]


def other_driver_slice(node: NodeSandbox) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{node.node_name}-gpu"},
        "spec": {
            "driver": GPU_DRIVER,
            "nodeName": node.node_name,
            "pool": {"name": f"{node.node_name}-gpus", "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "gpu0"}, {"name": "gpu1"}],
        },
    }


def other_driver_entry(node: NodeSandbox, claim: str) -> dict[str, Any]:
    """The status.devices entry the other driver wrote for its device in `claim`."""
    status = node.control.claim("default", claim)["status"]
    [result] = [r for r in status["allocation"]["devices"]["results"] if r["driver"] == GPU_DRIVER]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": "Ready", "status": "True", "reason": "GpuReady",
                 "message": "", "lastTransitionTime": now}  # fmt: skip
    return {"driver": GPU_DRIVER, "pool": result["pool"], "device": result["device"],
            "conditions": [condition]}  # fmt: skip


def entries(node: NodeSandbox, claim: str, driver: str) -> list[dict[str, Any]]:
    devices = (node.control.claim("default", claim).get("status") or {}).get("devices") or []
    return [e for e in devices if e["driver"] == driver]


async def test_a_claim_of_another_driver_is_ignored(node: NodeSandbox) -> None:
    nic, spare = node.nics
    before = node.nic_snapshot(nic.name)
    gpu_slice = node.api.put("resourceslices", other_driver_slice(node))
    node.control.create_device_class("gpu", selectors=[f'device.driver == "{GPU_DRIVER}"'])
    # The other driver's config applies to every request, and is no dranet config at all.
    foreign = opaque_config({"sharing": "exclusive", "interface": 42}, driver=GPU_DRIVER)
    node.control.create_claim(
        "mixed",
        requests=[on_nic(nic), DeviceRequest("gpu", device_class="gpu")],
        config=[foreign, opaque_config({"interface": {"name": "net1"}}, requests=["nic"])],
    )
    node.control.create_claim(
        "gpu-only", requests=[DeviceRequest("gpu", device_class="gpu")], config=[foreign]
    )
    pod = node.new_pod("mixed-pod", ["mixed", "gpu-only"])
    node.allocate(pod)
    theirs = {c: other_driver_entry(node, c) for c in ("mixed", "gpu-only")}
    for claim, entry in theirs.items():  # the other driver prepared first
        status = node.control.claim("default", claim)["status"]
        node.control.write_status("default", claim, {**status, "devices": [entry]})

    results = await node.prepare(pod)
    mixed_uid = node.control.claim("default", "mixed")["metadata"]["uid"]
    gpu_only_uid = node.control.claim("default", "gpu-only")["metadata"]["uid"]
    assert results[mixed_uid].error == "" and results[gpu_only_uid].error == ""
    assert results[mixed_uid].devices == (PreparedDevice(("nic",), node.node_name, nic.name),)
    assert results[gpu_only_uid].devices == ()
    await node.run_sandbox(pod)

    links = {entry["ifname"] for entry in node.pod_ip_json(pod, "link")}
    cni = {"lo", "eth0"} if node.runtime_info.startswith("containerd") else {"lo"}
    assert links == cni | {"net1"}
    assert node.nic_snapshot(spare.name) is not None
    assert node.ping(pod, nic.fabric_ip)
    await node.wait_claim_status("mixed", count=2)
    [ours] = entries(node, "mixed", "dra.net")
    assert (ours["device"], ours["networkData"]["interfaceName"]) == (nic.name, "net1")
    for claim, entry in theirs.items():
        assert entries(node, claim, GPU_DRIVER) == [entry]
    assert entries(node, "gpu-only", "dra.net") == []

    await node.stop_sandbox(pod)
    await node.remove_sandbox(pod)
    assert await node.unprepare(pod) == {mixed_uid: "", gpu_only_uid: ""}
    await node.wait_claim_status("mixed", count=1)
    for claim, entry in theirs.items():
        assert entries(node, claim, GPU_DRIVER) == [entry]
    assert node.api.get("resourceslices", gpu_slice["metadata"]["name"]) == gpu_slice
    await node.stop_pod(pod)
    assert await node.settled_snapshot(nic.name, before) == before
