"""Publishing ResourceSlices: agent devices -> attributes -> slices -> API plan.

This is `SlicePublisher.sync_once` without the API calls, run on every
inventory change and every resync (30 s): from scratch (a fresh node, every
slice created) and in the steady state (current slices already match, the
plan must be empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from dranet.agent.v1 import agent_pb2
from dranet_kubelet_plugin.attributes import device_attributes
from dranet_kubelet_plugin.slices import Owner, SlicePlan, device_entry, plan_pool, split_devices

from .workloads import DRIVER, NODE, NODE_UID, as_listed, pci_devices, slice_count

pytestmark = pytest.mark.benchmark(group="slices")
OWNER = Owner(name=NODE, uid=NODE_UID)


def build_plan(
    devices: Sequence[agent_pb2.Device], current: Sequence[dict[str, Any]] = ()
) -> SlicePlan:
    entries = [device_entry(d.name, device_attributes(d, DRIVER)) for d in devices]
    return plan_pool(driver=DRIVER, owner=OWNER, desired=split_devices(entries), current=current)


def _published(plan: SlicePlan) -> list[dict[str, Any]]:
    return [d for body in plan.create for d in body["spec"]["devices"]]


@pytest.mark.parametrize("count", [300, 1000])
def test_slices_from_scratch(benchmark: BenchmarkFixture, count: int) -> None:
    devices = pci_devices(count)
    plan = benchmark(build_plan, devices)
    assert not plan.delete and not plan.update
    assert len(plan.create) == slice_count(count)
    published = _published(plan)
    assert [d["name"] for d in published] == sorted(d.name for d in devices)
    assert all(len(body["spec"]["devices"]) <= 128 for body in plan.create)
    assert {b["spec"]["pool"]["resourceSliceCount"] for b in plan.create} == {slice_count(count)}
    first = next(d for d in published if d["name"] == devices[0].name)["attributes"]
    assert first["dra.net/pciAddress"] == {"string": devices[0].pci_address}
    assert first["resource.kubernetes.io/numaNode"] == {"int": 0}


@pytest.mark.parametrize("count", [300, 1000])
def test_slices_resync_unchanged(benchmark: BenchmarkFixture, count: int) -> None:
    devices = pci_devices(count)
    current = as_listed(build_plan(devices).create)
    plan = benchmark(build_plan, devices, current)
    assert plan.empty, (len(plan.delete), len(plan.update), len(plan.create))
    # One device changed: exactly its slice is rewritten, the generation is kept.
    changed = list(devices)
    changed[-1] = agent_pb2.Device(name=devices[-1].name, ifname="renamed0", mtu=1500)
    one = build_plan(changed, current)
    assert (len(one.delete), len(one.update), len(one.create)) == (0, 1, 0)
    assert one.generation == current[0]["spec"]["pool"]["generation"]
