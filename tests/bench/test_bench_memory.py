"""Peak Python heap (tracemalloc) of the two workloads that grow with the node and its claims.

The numbers go to `benchmark.extra_info` (`make bench` shows them with
`--benchmark-json`); they are reported, not asserted. Time under tracemalloc
is inflated several times over, so read the timing benchmarks for speed.
tracemalloc sees allocations made through Python's allocator: dicts, strings,
dataclasses; the protobuf inputs are built before tracing starts.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from dranet.netconfig import NetworkConfig, parse_config
from dranet_kubelet_plugin.slices import SlicePlan

from .pedantic import pedantic
from .test_bench_slices import build_plan
from .workloads import full_config, pci_devices, slice_count

pytestmark = pytest.mark.benchmark(group="memory")
COUNT = 1000


def traced(work: Callable[[], Any]) -> tuple[Any, int, int]:
    """(result, peak bytes, bytes still held with the result alive)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = work()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak, current


def _parse_configs() -> tuple[Callable[[], Any], Callable[[Any], None]]:
    raws = [json.dumps(full_config(i)).encode() for i in range(COUNT)]

    def work() -> list[NetworkConfig]:
        return [parse_config(raw) for raw in raws]

    def check(cfgs: list[NetworkConfig]) -> None:
        assert len(cfgs) == COUNT
        assert [c.interface.addresses[0] for c in cfgs[:3]] == [
            "192.168.0.2/24", "192.168.1.2/24", "192.168.2.2/24",
        ]  # fmt: skip
        assert all(len(c.routes) == 3 and c.interface.mtu == 9000 for c in cfgs)

    return work, check


def _build_slices() -> tuple[Callable[[], Any], Callable[[Any], None]]:
    devices = pci_devices(COUNT)

    def check(plan: SlicePlan) -> None:
        assert len(plan.create) == slice_count(COUNT)
        names = [d["name"] for body in plan.create for d in body["spec"]["devices"]]
        assert names == sorted(d.name for d in devices)

    return lambda: build_plan(devices), check


WORKLOADS = {"parse-1000-configs": _parse_configs, "slices-1000-devices": _build_slices}


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_peak_memory(benchmark: BenchmarkFixture, workload: str) -> None:
    work, check = WORKLOADS[workload]()
    result, peak, held = pedantic(benchmark, lambda: traced(work), rounds=1)
    check(result)
    assert held > 0 and peak >= held
    benchmark.extra_info["peak_kib"] = round(peak / 1024, 1)
    benchmark.extra_info["held_kib"] = round(held / 1024, 1)
    benchmark.extra_info["peak_bytes_per_item"] = peak // COUNT
