"""PodHandlers against the fake agent over real gRPC, plus its pure helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from dranet.agent.v1 import agent_pb2, agent_pb2_grpc
from dranet.errors import PeerError
from dranet.grpcserver import unix_channel
from dranet.metrics import Metrics
from dranet_nri_hook.handlers import (
    PodHandlers,
    agent_failure,
    call_timeout,
    pod_netns,
    stale_attachments,
)
from dranet_sandbox.standins.runtime import make_pod

from .fake_agent import FakeAgent

NETNS = "/var/run/netns/cni-3333"


@pytest.fixture
async def channel(sockdir: Path) -> AsyncIterator[grpc.aio.Channel]:
    chan = unix_channel(sockdir / "agent.sock")
    yield chan
    await chan.close(None)


def handlers_for(channel: grpc.aio.Channel, timeout: float = 0.5) -> tuple[PodHandlers, Metrics]:
    metrics = Metrics(CollectorRegistry())
    stub = agent_pb2_grpc.NetlinkAgentStub(channel)
    return PodHandlers(stub, timeout=timeout, metrics=metrics), metrics


def count(metrics: Metrics, event: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "dranet_events_total", {"event": event, "result": result}
    )
    return value or 0.0


def test_pod_netns_picks_the_network_entry() -> None:
    pod = make_pod("u", namespaces=[("pid", "/proc/1/ns/pid"), ("ipc", "/x")], netns=NETNS)
    assert pod_netns(pod) == NETNS
    assert pod_netns(make_pod("u", namespaces=[("pid", "/proc/1/ns/pid")])) == ""


def test_stale_attachments_one_per_missing_pod() -> None:
    def att(uid: str, dev: str) -> agent_pb2.Attachment:
        return agent_pb2.Attachment(
            pod=agent_pb2.PodRef(uid=uid), interface=agent_pb2.InterfaceResult(device=dev)
        )

    stale = stale_attachments([att("a", "d1"), att("gone", "d2"), att("gone", "d3")], {"a"})
    assert [(s.pod.uid, s.interface.device) for s in stale] == [("gone", "d2")]


async def test_stop_never_raises_even_without_an_agent(sockdir: Path) -> None:
    chan = unix_channel(sockdir / "nobody.sock")
    handlers, metrics = handlers_for(chan, timeout=0.3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await handlers.stop_pod_sandbox(make_pod("u", netns=NETNS))
    await handlers.remove_pod_sandbox(make_pod("u"))
    assert loop.time() - start < 1.2  # two calls, each bounded by its 0.3 s deadline
    assert count(metrics, "nri.StopPodSandbox", "error") == 1
    assert count(metrics, "nri.RemovePodSandbox", "error") == 1
    with pytest.raises(PeerError, match="AttachPod for pod default/web timed out") as caught:
        await handlers.run_pod_sandbox(make_pod("u", name="web", netns=NETNS))
    assert "not running; check its container and logs" in str(caught.value)
    assert count(metrics, "nri.RunPodSandbox", "error") == 1
    await chan.close(None)


async def test_run_records_netns_and_remove_forgets_it(
    agent: FakeAgent, channel: grpc.aio.Channel
) -> None:
    agent.claims["u"] = "net1"
    handlers, metrics = handlers_for(channel)
    await handlers.run_pod_sandbox(make_pod("u", netns=NETNS))
    assert handlers.remembered_netns("u") == NETNS
    assert count(metrics, "nri.RunPodSandbox", "ok") == 1
    await handlers.stop_pod_sandbox(make_pod("u"))
    await handlers.remove_pod_sandbox(make_pod("u"))
    assert handlers.remembered_netns("u") == ""
    assert [c.netns for c in agent.methods("DetachPod")] == [NETNS, NETNS]
    assert count(metrics, "nri.StopPodSandbox", "ok") == 1


async def test_synchronize_with_a_slow_agent_ends_within_budget(
    agent: FakeAgent, channel: grpc.aio.Channel
) -> None:
    agent.delay = 2.0
    handlers, _ = handlers_for(channel, timeout=0.3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await handlers.synchronize([make_pod(f"p{i}", netns=f"/n/{i}") for i in range(20)], [])
    assert loop.time() - start < 0.8
    # The pods were attempted at once: one after another, only one fits in 0.3 s.
    assert len(agent.methods("AttachPod")) >= 10
    assert handlers.remembered_netns("p7") == "/n/7"


@pytest.mark.parametrize(
    ("configured", "budget", "expected"),
    [(1.5, None, 1.5), (1.5, 2.0, 1.5), (1.5, 1.0, 0.75), (0.5, 0.0, 0.5)],
)
def test_agent_deadline_fits_the_runtime_budget(
    configured: float, budget: float | None, expected: float
) -> None:
    assert call_timeout(configured, budget) == pytest.approx(expected)


async def test_an_old_sandbox_going_away_leaves_its_successor_attached(
    agent: FakeAgent, channel: grpc.aio.Channel
) -> None:
    """The kubelet replaces a sandbox (stop old, run new) and removes the old one
    later; the agent detaches by pod uid, so that Remove must not reach it."""
    agent.claims["u"] = "net1"
    handlers, _ = handlers_for(channel)
    old, new = "/var/run/netns/cni-old", "/var/run/netns/cni-new"
    await handlers.run_pod_sandbox(make_pod("u", sandbox_id="sb-old", netns=old))
    await handlers.stop_pod_sandbox(make_pod("u", sandbox_id="sb-old"))
    await handlers.run_pod_sandbox(make_pod("u", sandbox_id="sb-new", netns=new))
    await handlers.stop_pod_sandbox(make_pod("u", sandbox_id="sb-old"))  # a repeated stop
    await handlers.remove_pod_sandbox(make_pod("u", sandbox_id="sb-old"))
    assert [c.netns for c in agent.methods("DetachPod")] == [old]
    assert [a.netns_path for a in agent.attachments] == [new]
    assert handlers.remembered_netns("u") == new
    await handlers.stop_pod_sandbox(make_pod("u", sandbox_id="sb-new"))
    await handlers.remove_pod_sandbox(make_pod("u", sandbox_id="sb-new"))
    assert [c.netns for c in agent.methods("DetachPod")] == [old, new, new]
    assert handlers.remembered_netns("u") == ""


async def test_synchronize_learns_running_sandboxes_and_forgets_gone_pods(
    agent: FakeAgent, channel: grpc.aio.Channel
) -> None:
    handlers, _ = handlers_for(channel)
    await handlers.run_pod_sandbox(make_pod("gone", netns="/n/gone"))
    await handlers.run_pod_sandbox(make_pod("kept", sandbox_id="sb-1", netns="/n/1"))
    # containerd 1.7 lists a stopped sandbox with no namespaces next to the running one.
    await handlers.synchronize(
        [make_pod("kept", sandbox_id="sb-1"), make_pod("kept", sandbox_id="sb-2", netns="/n/2")],
        [],
    )
    assert handlers.remembered_netns("gone") == ""  # its Remove was missed: forgotten
    assert handlers.remembered_netns("kept") == "/n/2"
    await handlers.remove_pod_sandbox(make_pod("kept", sandbox_id="sb-1"))
    assert agent.methods("DetachPod") == []  # sb-2 is the pod's sandbox now


def test_timeout_message_rounds_the_budget_cut_deadline() -> None:
    # containerd's deadline arrives as slightly under 2 s; 0.75 of it is 1.49992...
    late = grpc.aio.AioRpcError(
        grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(), "late", None
    )
    error = agent_failure("AttachPod", "prod/db", late, call_timeout(1.5, 1.99989))
    assert str(error).startswith("dranet: AttachPod for pod prod/db timed out after 1.5s (")
