"""RunPodSandbox while the agent is unreachable: the claim-state store decides.

A pod without prepared claims must still start (CNI and system pods too); a
pod with claims must fail, never start without its devices. Real gRPC to the
fake agent, a real store file written by a PLUGIN-role Store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from dranet.agent.v1 import agent_pb2_grpc
from dranet.errors import PeerError
from dranet.grpcserver import unix_channel
from dranet.metrics import Metrics
from dranet.store import DEFAULT_PATH, ClaimRecord, PreparedDevice, Role, Store
from dranet_nri_hook import claimcheck
from dranet_nri_hook.handlers import PodHandlers
from dranet_nri_hook.settings import load_settings
from dranet_sandbox.standins.runtime import make_pod

from .fake_agent import FakeAgent

NETNS = "/var/run/netns/cni-4444"
DEADLINE = 0.3


@pytest.fixture
def state_db(tmp_path: Path) -> Iterator[Path]:
    """The store as the kubelet plugin keeps it: open, one claim for pod 'claimed'."""
    path = tmp_path / "state" / "state.db"
    with Store(path, role=Role.PLUGIN, boot_id="boot-1") as plugin:
        device = PreparedDevice(request="nic", pool="node-1", device="eth9", config={})
        plugin.put_claim(ClaimRecord("claim-1", "prod", "nic", ("claimed",), (device,)))
        yield path


@pytest.fixture
async def channel(sockdir: Path) -> AsyncIterator[grpc.aio.Channel]:
    chan = unix_channel(sockdir / "agent.sock")
    yield chan
    await chan.close(None)


def handlers_for(channel: grpc.aio.Channel, state_db: Path | str) -> tuple[PodHandlers, Metrics]:
    metrics = Metrics(CollectorRegistry())
    stub = agent_pb2_grpc.NetlinkAgentStub(channel)
    handlers = PodHandlers(stub, timeout=DEADLINE, metrics=metrics, state_db=str(state_db))
    return handlers, metrics


def count(metrics: Metrics, result: str) -> float:
    labels = {"event": "nri.RunPodSandbox", "result": result}
    return metrics.registry.get_sample_value("dranet_events_total", labels) or 0.0


async def test_agent_down_pod_without_claims_starts(
    agent: FakeAgent, channel: grpc.aio.Channel, state_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await agent.stop()
    handlers, metrics = handlers_for(channel, state_db)
    with caplog.at_level(logging.WARNING):
        await handlers.run_pod_sandbox(make_pod("plain", name="coredns", netns=NETNS))
        await handlers.run_pod_sandbox(make_pod("hostnet", name="cni"))  # host network
    assert count(metrics, "ok") == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = "netlink agent unreachable (dranet: AttachPod for pod default/coredns timed out"
    assert any(w.startswith(expected) and "no prepared claims" in w for w in warnings)


async def test_agent_down_pod_with_a_prepared_claim_fails(
    agent: FakeAgent, channel: grpc.aio.Channel, state_db: Path
) -> None:
    await agent.stop()
    handlers, metrics = handlers_for(channel, state_db)
    with pytest.raises(PeerError, match="AttachPod for pod default/db timed out"):
        await handlers.run_pod_sandbox(make_pod("claimed", name="db", netns=NETNS))
    assert count(metrics, "error") == 1


async def test_slow_agent_fallback_stays_inside_the_budget(
    agent: FakeAgent, channel: grpc.aio.Channel, state_db: Path
) -> None:
    agent.delay = 2.0
    handlers, _ = handlers_for(channel, state_db)
    start = time.monotonic()
    await handlers.run_pod_sandbox(make_pod("plain", netns=NETNS))
    assert time.monotonic() - start < DEADLINE + claimcheck.READ_TIMEOUT + 0.2
    assert [c.uid for c in agent.methods("AttachPod")] == ["plain"]
    with pytest.raises(PeerError, match="timed out"):
        await handlers.run_pod_sandbox(make_pod("claimed", netns=NETNS))


async def test_agent_dying_mid_call_is_unreachable(
    agent: FakeAgent, sockdir: Path, state_db: Path
) -> None:
    agent.delay = 2.0
    chan = unix_channel(sockdir / "agent.sock")
    handlers = PodHandlers(
        agent_pb2_grpc.NetlinkAgentStub(chan), timeout=1.5, state_db=str(state_db)
    )
    plain = asyncio.create_task(handlers.run_pod_sandbox(make_pod("plain", netns=NETNS)))
    claimed = asyncio.create_task(handlers.run_pod_sandbox(make_pod("claimed", netns=NETNS)))
    await agent.wait_for("AttachPod", 2)
    await agent.stop()  # the calls in flight end UNAVAILABLE, before their deadline
    await plain
    with pytest.raises(PeerError, match="netlink agent unreachable for AttachPod"):
        await claimed
    await chan.close(None)


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION])
async def test_an_answered_error_fails_whatever_the_store_says(
    agent: FakeAgent, channel: grpc.aio.Channel, state_db: Path, code: grpc.StatusCode
) -> None:
    agent.errors["plain"] = (code, "move eth9 failed: netlink said no")
    handlers, metrics = handlers_for(channel, state_db)
    with pytest.raises(PeerError, match="move eth9 failed: netlink said no"):
        await handlers.run_pod_sandbox(make_pod("plain", netns=NETNS))
    assert count(metrics, "error") == 1


@pytest.mark.parametrize("store", ["", "missing.db", "garbage.db"])
async def test_no_usable_store_fails_as_before(
    agent: FakeAgent, channel: grpc.aio.Channel, tmp_path: Path, store: str
) -> None:
    """Disabled (empty path), absent or unreadable: the pod fails with the agent error."""
    (tmp_path / "garbage.db").write_bytes(b"not sqlite at all" * 100)
    await agent.stop()
    handlers, _ = handlers_for(channel, tmp_path / store if store else "")
    with pytest.raises(PeerError, match="AttachPod for pod default/web timed out"):
        await handlers.run_pod_sandbox(make_pod("plain", name="web", netns=NETNS))


async def test_a_store_read_that_hangs_answers_unknown(
    state_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await claimcheck.pod_has_no_claims(str(state_db), "plain")
    assert not await claimcheck.pod_has_no_claims(str(state_db), "claimed")

    def stuck(path: str, uid: str) -> list[str]:
        time.sleep(0.5)
        return []

    monkeypatch.setattr(claimcheck, "read_pod_claims", stuck)
    start = time.monotonic()
    assert not await claimcheck.pod_has_no_claims(str(state_db), "plain", timeout=0.1)
    assert time.monotonic() - start < 0.4


def test_state_db_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings([]).state_db == DEFAULT_PATH
    assert load_settings(["--state-db="]).state_db == ""
    monkeypatch.setenv("DRANET_STATE_DB", "/srv/dranet/state.db")
    assert load_settings([]).state_db == "/srv/dranet/state.db"
