"""ResourceSlice publication from the agent's device watch, against the API server stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dranet_kubelet_plugin.filter import DEFAULT_FILTER, DeviceFilter
from dranet_kubelet_plugin.kube import Kube
from dranet_kubelet_plugin.publisher import SlicePublisher
from dranet_sandbox.standins.apiserver import FakeApiServer, iter_slices

from .fakes import DRIVER, NODE, AgentServer, FakeAgent, eventually, nic


def slices(apiserver: FakeApiServer) -> list[dict[str, Any]]:
    return list(iter_slices(apiserver, DRIVER, NODE))


def device_names(apiserver: FakeApiServer) -> list[str]:
    return sorted(d["name"] for s in slices(apiserver) for d in s["spec"]["devices"])


def make_publisher(
    kube: Kube, agent: AgentServer, expression: str = "", **kw: Any
) -> SlicePublisher:
    options: dict[str, Any] = {"min_interval": 0.2, "resync_interval": 0.3, "reconnect_delay": 0.05}
    options.update(kw)
    return SlicePublisher(
        kube=kube,
        agent=agent.stub,
        driver=DRIVER,
        node_name=NODE,
        device_filter=DeviceFilter(expression),
        **options,
    )


@pytest.fixture
def fake_agent() -> FakeAgent:
    return FakeAgent(nic(f"eth{i:03d}", type="device", virtual=False) for i in range(300))


@pytest.fixture
async def publisher(kube: Kube, agent: AgentServer) -> AsyncIterator[SlicePublisher]:
    pub = make_publisher(kube, agent)
    task = asyncio.create_task(pub.run())
    yield pub
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def complete(apiserver: FakeApiServer, count: int, generation: int) -> bool:
    found = slices(apiserver)
    return len(found) == count and all(
        s["spec"]["pool"] == {"name": NODE, "generation": generation, "resourceSliceCount": count}
        for s in found
    )


async def test_300_devices_make_3_slices_owned_by_the_node(
    apiserver: FakeApiServer, publisher: SlicePublisher
) -> None:
    await eventually(lambda: complete(apiserver, 3, 1))
    found = slices(apiserver)
    assert sorted(len(s["spec"]["devices"]) for s in found) == [44, 128, 128]
    assert device_names(apiserver) == [f"eth{i:03d}" for i in range(300)]
    node = apiserver.get("nodes", NODE)
    assert node is not None
    for s in found:
        assert s["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "name": NODE,
                "uid": node["metadata"]["uid"],
                "controller": True,
            }
        ]
        assert s["spec"]["nodeName"] == NODE and s["spec"]["driver"] == DRIVER
    first = found[0]["spec"]["devices"][0]
    assert first["attributes"]["dra.net/ifName"] == {"string": first["name"]}


async def test_removed_device_updates_slices_with_a_new_generation(
    apiserver: FakeApiServer, publisher: SlicePublisher, agent: AgentServer
) -> None:
    await eventually(lambda: complete(apiserver, 3, 1))
    names_before = {s["metadata"]["name"] for s in slices(apiserver)}
    agent.agent.remove("eth000")  # every slice shifts by one device
    await eventually(lambda: complete(apiserver, 3, 2))
    assert len(device_names(apiserver)) == 299 and "eth000" not in device_names(apiserver)
    assert {s["metadata"]["name"] for s in slices(apiserver)} == names_before  # updated in place
    agent.agent.remove("eth299")  # only the last slice changes: generation kept
    await eventually(lambda: len(device_names(apiserver)) == 298)
    assert complete(apiserver, 3, 2)


async def test_slices_deleted_by_someone_else_are_republished(
    apiserver: FakeApiServer, publisher: SlicePublisher
) -> None:
    await eventually(lambda: complete(apiserver, 3, 1))
    assert apiserver.delete_collection("resourceslices", f"spec.nodeName={NODE}") == 3
    await eventually(lambda: len(slices(apiserver)) == 3)
    assert len(device_names(apiserver)) == 300


async def test_changes_are_coalesced_into_few_bursts(
    apiserver: FakeApiServer, publisher: SlicePublisher, agent: AgentServer
) -> None:
    await eventually(lambda: complete(apiserver, 3, 1))
    bursts = publisher.bursts
    for i in range(20):
        agent.agent.add(nic(f"new{i:02d}"))
        await asyncio.sleep(0.005)
    await eventually(lambda: len(device_names(apiserver)) == 320)
    assert publisher.bursts - bursts <= 3


async def test_write_failures_are_retried(
    apiserver: FakeApiServer, kube: Kube, agent: AgentServer
) -> None:
    apiserver.fail_next(
        "/apis/resource.k8s.io/v1/resourceslices", count=6, status=500, method="POST"
    )
    pub = make_publisher(kube, agent)
    task = asyncio.create_task(pub.run())
    try:
        await eventually(lambda: complete(apiserver, 3, 1), timeout=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("fake_agent", [FakeAgent([nic("veth1"), nic("ens1", type="device")])])
async def test_filter_hides_devices_and_the_inventory_follows_it(
    apiserver: FakeApiServer, kube: Kube, agent: AgentServer
) -> None:
    counts: list[int] = []
    pub = make_publisher(kube, agent, DEFAULT_FILTER, on_published=counts.append)
    assert await pub.published_devices() == {"ens1"}  # before any snapshot: asks ListDevices
    task = asyncio.create_task(pub.run())
    try:
        await eventually(lambda: device_names(apiserver) == ["ens1"])
        assert await pub.published_devices() == {"ens1"}
        await eventually(lambda: counts)
        assert set(counts) == {1}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("fake_agent", [FakeAgent()])
async def test_an_empty_inventory_publishes_one_empty_slice(
    apiserver: FakeApiServer, publisher: SlicePublisher
) -> None:
    await eventually(lambda: complete(apiserver, 1, 1))
    assert slices(apiserver)[0]["spec"].get("devices", []) == []
