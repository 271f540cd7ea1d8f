"""NodePrepareResources / NodeUnprepareResources over real sockets, v1 and v1beta1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dranet.errors import ConfigError, PeerError, Problem
from dranet.grpcserver import UnixServer
from dranet.telemetry import server_interceptors
from dranet_kubelet_plugin.draservice import PreparedDeviceRef, PrepareOutcome, dra_servicer_adder
from dranet_kubelet_plugin.registration import (
    RegistrationServicer,
    dra_socket_path,
    registration_servicer_adder,
    registration_socket_path,
)
from dranet_sandbox.standins.kubelet import Claim, KubeletStandin, PreparedDevice

from .helpers import DRIVER, FakePreparer, PluginUnderTest

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

SERVICES = ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
CLAIMS = [Claim("team-a", f"claim-{i}", f"uid-{i}") for i in range(3)]


@pytest.fixture
async def kubelet(plugin: PluginUnderTest) -> AsyncIterator[KubeletStandin]:
    async with KubeletStandin(plugin.root) as standin:
        async with asyncio.timeout(5):
            await standin.wait_registered(DRIVER)
        yield standin


@pytest.mark.parametrize("service", SERVICES)
async def test_prepare_answers_every_claim_with_devices_and_errors(
    plugin: PluginUnderTest, kubelet: KubeletStandin, service: str
) -> None:
    plugin.preparer.outcomes = {
        "uid-0": PrepareOutcome(
            devices=(
                PreparedDeviceRef(
                    requests=("nic/fast",), pool="node-1", device="eth1", cdi_device_ids=("a/b=c",)
                ),
                PreparedDeviceRef(requests=(), pool="node-1", device="pci-0000-3b-00-0"),
            )
        ),
        "uid-2": PrepareOutcome(error="interface.mtu: 40 is below the minimum 68"),
    }
    results = await kubelet.prepare(CLAIMS, service=service)

    assert sorted(results) == ["uid-0", "uid-1", "uid-2"]
    assert results["uid-0"].error == ""
    assert results["uid-0"].devices == (
        PreparedDevice(("nic",), "node-1", "eth1", ("a/b=c",)),
        PreparedDevice((), "node-1", "pci-0000-3b-00-0"),
    )
    assert results["uid-1"].devices == () and results["uid-1"].error == ""
    assert results["uid-2"].error == "interface.mtu: 40 is below the minimum 68"
    # The preparer saw one batch with every claim, in request order.
    assert plugin.preparer.calls == [("prepare", ("uid-0", "uid-1", "uid-2"))]


@pytest.mark.parametrize("service", SERVICES)
async def test_unprepare_answers_every_claim_with_its_error(
    plugin: PluginUnderTest, kubelet: KubeletStandin, service: str
) -> None:
    plugin.preparer.unprepare_errors = {"uid-1": "agent unavailable: retry"}
    errors = await kubelet.unprepare(CLAIMS, service=service)
    assert errors == {"uid-0": "", "uid-1": "agent unavailable: retry", "uid-2": ""}
    assert plugin.preparer.calls == [("unprepare", ("uid-0", "uid-1", "uid-2"))]


async def test_default_calls_use_the_registered_v1(
    plugin: PluginUnderTest, kubelet: KubeletStandin
) -> None:
    assert kubelet.plugin(DRIVER).service == "v1.DRAPlugin"
    results = await kubelet.prepare(CLAIMS[:1])
    assert list(results) == ["uid-0"]


@pytest.mark.parametrize("service", SERVICES)
async def test_preparer_gaps_and_extras_never_reach_the_kubelet(
    plugin: PluginUnderTest, kubelet: KubeletStandin, service: str
) -> None:
    plugin.preparer.omit = {"uid-1"}
    plugin.preparer.extra = {"uid-stranger": PrepareOutcome()}
    # The stand-in would raise on a skipped or unknown UID; the servicer fills and filters.
    results = await kubelet.prepare(CLAIMS, service=service)
    assert sorted(results) == ["uid-0", "uid-1", "uid-2"]
    assert "no prepare result for claim team-a/claim-1" in results["uid-1"].error
    errors = await kubelet.unprepare(CLAIMS, service=service)
    assert "no unprepare result for claim team-a/claim-1" in errors["uid-1"]


async def test_dranet_error_fails_the_rpc_with_its_code(
    plugin: PluginUnderTest, kubelet: KubeletStandin
) -> None:
    plugin.preparer.fail = ConfigError([Problem("interface.name", "must be a valid name")])
    with pytest.raises(PeerError, match="INVALID_ARGUMENT") as caught:
        await kubelet.prepare(CLAIMS)
    cause = caught.value.__cause__
    assert isinstance(cause, grpc.aio.AioRpcError)
    assert cause.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "interface.name: must be a valid name" in (cause.details() or "")


async def test_unexpected_error_is_internal_and_the_service_keeps_working(
    plugin: PluginUnderTest, kubelet: KubeletStandin
) -> None:
    plugin.preparer.fail = RuntimeError("disk on fire")
    with pytest.raises(PeerError, match=r"INTERNAL.*disk on fire"):
        await kubelet.unprepare(CLAIMS)
    plugin.preparer.fail = None
    assert await kubelet.unprepare(CLAIMS[:1]) == {"uid-0": ""}


async def test_claim_without_uid_is_an_invalid_argument(kubelet: KubeletStandin) -> None:
    with pytest.raises(PeerError, match=r"INVALID_ARGUMENT.*ns/anon has an empty uid"):
        await kubelet.prepare([Claim("ns", "anon", "")])


async def test_empty_request_gets_an_empty_answer(
    plugin: PluginUnderTest, kubelet: KubeletStandin
) -> None:
    assert await kubelet.prepare([]) == {}
    assert plugin.preparer.calls == []


async def test_concurrent_prepares_of_different_claims_overlap(
    plugin: PluginUnderTest, kubelet: KubeletStandin
) -> None:
    plugin.preparer.delay = 0.3
    pods = [[Claim("ns", f"c{i}", f"pod-{i}")] for i in range(6)]
    started = time.monotonic()
    answers = await asyncio.gather(*(kubelet.prepare(claims) for claims in pods))
    elapsed = time.monotonic() - started
    assert [list(a) for a in answers] == [[f"pod-{i}"] for i in range(6)]
    assert plugin.preparer.max_active == 6
    assert elapsed < 6 * 0.3  # clearly not one after the other


async def test_concurrent_calls_on_one_claim_run_one_at_a_time(
    plugin: PluginUnderTest, kubelet: KubeletStandin
) -> None:
    plugin.preparer.delay = 0.05
    shared = Claim("ns", "shared", "uid-shared")
    calls: list[Coroutine[Any, Any, Mapping[str, object]]] = [
        kubelet.prepare([shared, Claim("ns", f"own{i}", f"own-{i}")]) for i in range(4)
    ]
    calls.append(kubelet.unprepare([shared]))
    answers = await asyncio.gather(*calls)
    assert all("uid-shared" in a for a in answers)
    assert plugin.preparer.max_active_per_claim["uid-shared"] == 1
    assert len(plugin.preparer.calls) == 5


async def test_kubelet_trace_context_reaches_the_preparer(
    kubelet_root: Path, preparer: FakePreparer
) -> None:
    # The kubelet sends W3C trace context as gRPC metadata; with the shared
    # server interceptors the prepare logic runs inside a span of that trace.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    under_test = PluginUnderTest(kubelet_root, preparer, interceptors=server_interceptors(provider))
    await under_test.start()
    try:
        async with KubeletStandin(kubelet_root) as kubelet:
            async with asyncio.timeout(5):
                await kubelet.wait_registered(DRIVER)
            await kubelet.prepare(CLAIMS, traceparent=TRACEPARENT)
            await kubelet.unprepare(CLAIMS)  # no traceparent: a trace of its own
    finally:
        await under_test.stop()
        provider.shutdown()
    sent = int(TRACEPARENT.split("-")[1], 16)
    assert preparer.trace_ids[0] == sent
    assert preparer.trace_ids[1] not in (0, sent)
    (span,) = [s for s in exporter.get_finished_spans() if "NodePrepareResources" in s.name]
    assert span.context is not None and span.context.trace_id == sent
    assert span.parent is not None and span.parent.span_id == int(TRACEPARENT.split("-")[2], 16)


async def test_a_v1beta1_only_plugin_answers_v1beta1_and_refuses_v1(kubelet_root: Path) -> None:
    servers = []
    for path, adder in (
        (dra_socket_path(kubelet_root, DRIVER), dra_servicer_adder(FakePreparer(), v1=False)),
        (
            registration_socket_path(kubelet_root, DRIVER),
            registration_servicer_adder(
                RegistrationServicer(
                    DRIVER,
                    dra_socket_path(kubelet_root, DRIVER),
                    supported_versions=["v1beta1.DRAPlugin"],
                )
            ),
        ),
    ):
        server = UnixServer(path, adders=[adder])
        await server.start()
        servers.append(server)
    try:
        async with KubeletStandin(kubelet_root, force_service="v1.DRAPlugin") as kubelet:
            async with asyncio.timeout(5):
                registered = await kubelet.wait_registered(DRIVER)
            assert registered.service == "v1beta1.DRAPlugin"
            with pytest.raises(PeerError, match="UNIMPLEMENTED"):
                await kubelet.prepare(CLAIMS)  # forced to v1, which this plugin lacks
            answer = await kubelet.prepare(CLAIMS, service="v1beta1.DRAPlugin")
            assert sorted(answer) == ["uid-0", "uid-1", "uid-2"]
    finally:
        for server in servers:
            await server.stop(0)
