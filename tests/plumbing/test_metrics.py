from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from dranet.grpcserver import UnixServer, unix_channel
from dranet.metrics import Metrics, serve_metrics, start_metrics_server

from .conftest import COUNT, SAY, echo_adder


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    found = metrics.registry.get_sample_value(name, labels)
    return None if found is None else float(found)


def scrape(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.headers["Content-Type"], reply.read().decode()


async def test_metrics_server_serves_text_exposition_on_ephemeral_port() -> None:
    metrics = Metrics()
    metrics.observe_event("RunPodSandbox", "ok", 0.02)
    server = serve_metrics(metrics.registry, host="127.0.0.1", port=0)
    try:
        assert server.port > 0
        kind, text = await asyncio.to_thread(scrape, f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.close()
    assert kind.startswith("text/plain")
    assert 'dranet_events_total{event="RunPodSandbox",result="ok"} 1.0' in text
    assert "# TYPE dranet_grpc_server_requests_total counter" in text
    assert "process_cpu_seconds_total" in text


def test_port_zero_means_off() -> None:
    assert start_metrics_server(0, CollectorRegistry()) is None


def test_time_event_records_result() -> None:
    metrics = Metrics(CollectorRegistry())
    with metrics.time_event("Synchronize"):
        pass
    with pytest.raises(ValueError), metrics.time_event("Synchronize"):
        raise ValueError("boom")
    assert value(metrics, "dranet_events_total", event="Synchronize", result="ok") == 1
    assert value(metrics, "dranet_events_total", event="Synchronize", result="error") == 1
    assert value(metrics, "dranet_event_duration_seconds_count", event="Synchronize") == 2


async def test_interceptor_counts_calls_by_method_and_code(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    adders = [echo_adder()]
    async with (
        UnixServer(
            tmp_path / "m.sock", adders=adders, interceptors=[metrics.server_interceptor()]
        ) as server,
        unix_channel(server.path) as channel,
    ):
        say = channel.unary_unary(SAY, None, None)
        assert await say(b"a") == b"a"
        assert await say(b"b") == b"b"
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await say(b"fail")
        assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as crashed:
            await say(b"crash")
        assert crashed.value.code() == grpc.StatusCode.UNKNOWN
        items = [item async for item in channel.unary_stream(COUNT, None, None)(b"3")]
        assert items == [b"0", b"1", b"2"]
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())

    total = "dranet_grpc_server_requests_total"
    assert value(metrics, total, method=SAY, code="OK") == 2
    assert value(metrics, total, method=SAY, code="FAILED_PRECONDITION") == 1
    assert value(metrics, total, method=SAY, code="UNKNOWN") == 1
    assert value(metrics, total, method=COUNT, code="OK") == 1
    assert value(metrics, "dranet_grpc_server_request_duration_seconds_count", method=SAY) == 4
    health = "/grpc.health.v1.Health/Check"
    assert value(metrics, total, method=health, code="OK") is None  # health checks left out


def test_services_add_their_own_metrics() -> None:
    metrics = Metrics(CollectorRegistry())
    published = metrics.gauge("published_devices", "Devices in this node's ResourceSlices.")
    published.set(4)
    assert value(metrics, "dranet_published_devices") == 4
