from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcOtlp
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpOtlp
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id

from dranet.errors import SettingsError
from dranet.grpcserver import UnixServer, unix_channel
from dranet.telemetry import (
    build_telemetry,
    client_interceptors,
    current_carrier,
    link_from_carrier,
    server_interceptors,
)

from .conftest import SAY, echo_adder

OTEL_VARS = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in OTEL_VARS:
        monkeypatch.delenv(var, raising=False)


def test_default_exports_nothing() -> None:
    telemetry = build_telemetry("dranet-agent")
    assert telemetry.exporters == []
    telemetry.shutdown()


def test_console_exporter_chosen_by_env_writes_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    out = io.StringIO()
    telemetry = build_telemetry("dranet-agent", console_out=out)
    assert [type(e) for e in telemetry.exporters] == [ConsoleSpanExporter]
    with telemetry.tracer("test").start_as_current_span("attach") as span:
        span.set_attribute("dranet.device", "eth1")
    telemetry.shutdown()  # flushes the batch processor

    exported = json.loads(out.getvalue())
    assert exported["name"] == "attach"
    assert exported["attributes"]["dranet.device"] == "eth1"
    assert exported["resource"]["attributes"]["service.name"] == "dranet-agent"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, GrpcOtlp),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, GrpcOtlp),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, HttpOtlp),
        # The per-signal variable beats the generic one.
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            GrpcOtlp,
        ),
    ],
)
def test_otlp_exporter_selected_by_env(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: type[Any]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    telemetry = build_telemetry("dranet-agent")
    assert [type(e) for e in telemetry.exporters] == [expected]
    telemetry.shutdown()  # no span was made: nothing is sent


def test_exporter_list_and_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", " Console , none,otlp,console")
    telemetry = build_telemetry("x", console_out=io.StringIO())
    assert [type(e) for e in telemetry.exporters] == [ConsoleSpanExporter, GrpcOtlp]
    telemetry.shutdown()


@pytest.mark.parametrize(
    ("var", "value", "match"),
    [
        ("OTEL_TRACES_EXPORTER", "jaeger", "unknown exporter.*jaeger"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "http/json.*not supported"),
    ],
)
def test_bad_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, match: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=match):
        build_telemetry("x")


def test_resource_attributes_env_overrides_code(monkeypatch: pytest.MonkeyPatch) -> None:
    given = {"k8s.node.name": "node-a", "k8s.container.name": "agent"}
    attrs = build_telemetry("dranet-agent", resource=given).provider.resource.attributes
    assert attrs["service.name"] == "dranet-agent"
    assert attrs["k8s.node.name"] == "node-a"

    monkeypatch.setenv("OTEL_SERVICE_NAME", "custom-agent")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.node.name=node-b,team=net")
    attrs = build_telemetry("dranet-agent", resource=given).provider.resource.attributes
    assert attrs["service.name"] == "custom-agent"
    assert attrs["k8s.node.name"] == "node-b"
    assert attrs["team"] == "net"
    assert attrs["k8s.container.name"] == "agent"


def test_carrier_round_trips_into_a_link() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("prepare") as span:
        carrier = current_carrier()
    assert carrier["traceparent"].startswith(
        "00-" + format_trace_id(span.get_span_context().trace_id)
    )

    link = link_from_carrier(carrier)
    assert link is not None
    assert link.context.trace_id == span.get_span_context().trace_id
    assert link.context.span_id == span.get_span_context().span_id
    assert link_from_carrier({}) is None
    assert link_from_carrier({"traceparent": "garbage"}) is None
    assert current_carrier() == {}  # no active span: nothing to carry


async def test_trace_crosses_a_unix_socket_call(tmp_path: Path) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    seen: list[Any] = []
    server = UnixServer(
        tmp_path / "agent.sock",
        adders=[echo_adder(seen)],
        interceptors=server_interceptors(provider),
    )
    await server.start()
    try:
        async with unix_channel(server.path, interceptors=client_interceptors(provider)) as ch:
            assert await ch.unary_unary(SAY, None, None)(b"hello") == b"hello"
            # Health checks are not traced.
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
    finally:
        await server.stop(0)

    spans = {s.kind: s for s in exported.get_finished_spans()}
    assert sorted(spans, key=str) == sorted([SpanKind.CLIENT, SpanKind.SERVER], key=str)
    client, served = spans[SpanKind.CLIENT], spans[SpanKind.SERVER]
    assert served.name == SAY
    assert served.context is not None and client.context is not None
    assert served.parent is not None
    assert served.parent.span_id == client.context.span_id
    assert served.context.trace_id == client.context.trace_id
    # The handler ran inside the server span.
    assert seen[0].get_span_context().span_id == served.context.span_id


def test_setup_telemetry_installs_global_provider_once() -> None:
    script = """
import opentelemetry.trace as trace
from opentelemetry import propagate
from dranet.telemetry import setup_telemetry, tracer, current_carrier
first = setup_telemetry("dranet-a", resource={"k8s.node.name": "n1"})
again = setup_telemetry("dranet-b")
assert again is first
assert trace.get_tracer_provider() is first.provider
assert first.provider.resource.attributes["k8s.node.name"] == "n1"
assert sorted(propagate.get_global_textmap().fields) == ["baggage", "traceparent", "tracestate"]
with tracer("t").start_as_current_span("s"):
    assert "traceparent" in current_carrier()
first.shutdown()
print("ok")
"""
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
