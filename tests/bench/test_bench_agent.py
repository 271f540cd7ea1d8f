"""The netlink agent against the real kernel (root): attach/detach, and a full inventory scan.

Attach runs inside containerd's RunPodSandbox NRI call, which has a 2 s
budget for everything (hook, agent RPC, reply); a missed budget starts the
pod without its NIC. The cycle here is the whole agent side: read the claim,
record the host state (write-ahead row), move the veth into the pod, set MTU,
address and two routes, then give it back and restore it exactly.

The inventory scan (netlink dumps + sysfs for every link) runs on every burst
of link/address/route events and at every resync.

Recording the host state (`capture`) is part of every attach; on a node whose
other interfaces hold 10k routes it must not grow with them (the kernel
filters the dumps down to the NIC's entries).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from dranet.store import AttachmentPhase, ClaimRecord, PreparedDevice, Role, Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import Detached, Outcome, detach_pod
from dranet_netlink_agent.hoststate import capture
from dranet_netlink_agent.inventory import Inventory
from dranet_netlink_agent.linkops import get_link
from dranet_netlink_agent.netns import rtnl
from dranet_sandbox.netlab import NetLab, ip_json

from .pedantic import pedantic

pytestmark = [pytest.mark.root, pytest.mark.benchmark(group="agent")]
BOOT = "boot-bench"
POD = PodRef("pod-bench-1", "default", "trainer-0")
NIC = "nic1"
CONFIG = {
    "interface": {"name": "net1", "addresses": ["192.168.50.2/24"], "mtu": 1400},
    "routes": [
        {"destination": "10.77.0.0/16", "gateway": "192.168.50.1"},
        {"destination": "10.78.0.0/16", "gateway": "192.168.50.1"},
    ],
}
CYCLE_ROUNDS = 30
SCAN_VETHS = 50
SCAN_ROUNDS = 30
BUSY_ROUTES = 10_000
CAPTURE_ROUNDS = 30


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for the whole benchmark (the agent keeps one for its lifetime)."""
    with asyncio.Runner() as made:
        yield made


@dataclass
class Cycle:
    attach_s: float
    detach_s: float
    attached_mtu: int
    attached_ips: list[str]
    outcomes: list[Outcome]


def test_attach_detach_cycle(
    benchmark: BenchmarkFixture, runner: asyncio.Runner, tmp_path: Path
) -> None:
    with (
        NetLab() as lab,
        Store(tmp_path / "state.db", role=Role.PLUGIN, boot_id=BOOT) as plugin,
        Store(tmp_path / "state.db", role=Role.AGENT, boot_id=BOOT) as agent,
    ):
        lab.add_nic(NIC, node_cidr="10.10.0.2/24", fabric_cidr="10.10.0.1/24")
        pod = lab.add_pod()
        device = PreparedDevice(request="nic", pool="node-a", device=NIC, config=CONFIG)
        plugin.put_claim(ClaimRecord("claim-1", "default", "c1", (POD.uid,), (device,)))
        inventory = Inventory(netns=lab.path(lab.node), attachments=agent.list_attachments)
        runner.run(inventory.rescan())
        ctx = AgentContext(store=agent, resolver=inventory, node_netns=lab.path(lab.node))
        before = lab.link(NIC, lab.node)
        cycles: list[Cycle] = []

        async def cycle() -> None:
            start = time.perf_counter()
            (rec,) = await attach_pod(ctx, POD, lab.path(pod))
            attached = time.perf_counter()
            done: list[Detached] = await detach_pod(ctx, POD.uid)
            end = time.perf_counter()
            assert rec.phase == AttachmentPhase.ATTACHED
            cycles.append(
                Cycle(attached - start, end - attached, rec.result["mtu"],
                      sorted(rec.result["ips"]), [d.outcome for d in done])
            )  # fmt: skip

        pedantic(benchmark, lambda: runner.run(cycle()), rounds=CYCLE_ROUNDS, warmup_rounds=1)

        assert cycles and all(c.outcomes == [Outcome.RESTORED] for c in cycles)
        assert all(c.attached_mtu == 1400 for c in cycles)
        assert all(c.attached_ips == ["192.168.50.2/24"] for c in cycles)
        # Back on the node as it was, nothing left in the pod or the store.
        after = lab.link(NIC, lab.node)
        assert after is not None and before is not None
        assert (after["mtu"], after["address"]) == (before["mtu"], before["address"])
        assert [lk["ifname"] for lk in ip_json("link", "show", netns=pod)] == ["lo"]
        assert agent.list_attachments() == []
        benchmark.extra_info["attach_median_ms"] = round(
            statistics.median(c.attach_s for c in cycles) * 1000, 2
        )
        benchmark.extra_info["detach_median_ms"] = round(
            statistics.median(c.detach_s for c in cycles) * 1000, 2
        )


def test_inventory_full_scan(benchmark: BenchmarkFixture, runner: asyncio.Runner) -> None:
    with NetLab() as lab:
        batch = "".join(
            f"link add b{i} type veth peer name p{i} netns {lab.fabric}\n"
            f"addr add 10.100.{i}.2/24 dev b{i}\n"
            f"link set b{i} up\n"
            for i in range(SCAN_VETHS)
        )
        subprocess.run(["ip", "-n", lab.node, "-batch", "-"], input=batch, text=True, check=True)
        inventory = Inventory(netns=lab.path(lab.node))

        def scan() -> None:
            runner.run(inventory.rescan())

        pedantic(benchmark, scan, rounds=SCAN_ROUNDS, warmup_rounds=1)

        devices = {d.name: d for d in inventory.devices()}
        assert sorted(devices) == sorted(f"b{i}" for i in range(SCAN_VETHS))
        assert all(list(d.ipv4) == [f"10.100.{d.name[1:]}.2/24"] for d in devices.values())
        assert all(d.type == "veth" and d.virtual for d in devices.values())


def test_capture_on_a_node_with_10k_routes(
    benchmark: BenchmarkFixture, runner: asyncio.Runner
) -> None:
    with NetLab() as lab:
        lab.add_nic(NIC, node_cidr="10.10.0.2/24", fabric_cidr="10.10.0.1/24")
        lab.add_nic("busy", node_cidr="10.20.0.2/16", fabric_cidr="10.20.0.1/16")
        batch = "route add 10.150.0.0/16 via 10.10.0.1\n" + "".join(
            f"route add 10.{100 + i // 256}.{i % 256}.0/24 via 10.20.0.1\n"
            for i in range(BUSY_ROUTES)
        )
        subprocess.run(["ip", "-n", lab.node, "-batch", "-"], input=batch, text=True, check=True)
        captured: list[dict[str, Any]] = []

        async def record() -> None:
            async with rtnl(lab.path(lab.node)) as ipr:
                link = await get_link(ipr, ifname=NIC)
                assert link is not None
                captured.append(await capture(ipr, link["ifindex"]))

        pedantic(benchmark, lambda: runner.run(record()), rounds=CAPTURE_ROUNDS, warmup_rounds=1)

        assert captured
        assert all([r["dst"] for r in c["routes"]] == ["10.150.0.0"] for c in captured)
        assert len(ip_json("route", "show", netns=lab.node)) > BUSY_ROUTES
