"""The OTLP receiver stand-in against the real OTLP gRPC exporter (no root needed).

Spans are made by the OpenTelemetry SDK in this process, exported by
dranet.telemetry's own exporter choice (OTEL_* variables), and must come back
from the stand-in with the same ids, parentage, links, attributes and status.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.trace import Link, Status, StatusCode

from dranet.telemetry import build_telemetry
from dranet_sandbox.standins.otlp import STATUS_ERROR, OtlpReceiver


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    with tempfile.TemporaryDirectory(prefix="otlp-", dir="/tmp") as tmp:
        async with OtlpReceiver(unix_socket=Path(tmp) / "otlp.sock") as made:
            yield made


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
async def test_spans_come_back_as_sent(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, unix: bool
) -> None:
    for key, value in receiver.environ(unix=unix).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.node.name=node-a")
    telemetry = build_telemetry("dranet-test", resource={"k8s.container.name": "test"})
    tracer = telemetry.tracer("test")
    with tracer.start_as_current_span("earlier") as earlier:
        pass
    to_earlier = Link(earlier.get_span_context(), {"why": "prepare"})
    with (
        tracer.start_as_current_span("outer", attributes={"n": 3, "ok": True}) as outer,
        tracer.start_as_current_span("inner", links=[to_earlier]) as inner,
    ):
        inner.set_status(Status(StatusCode.ERROR, "routes failed"))
        inner.set_attribute("names", ["a", "b"])
    await asyncio.to_thread(telemetry.shutdown)  # flush in a thread: the loop serves Export

    got = await receiver.wait_for_span("inner")
    assert got.service == "dranet-test"
    assert got.resource["k8s.node.name"] == "node-a"
    assert got.resource["k8s.container.name"] == "test"
    assert got.trace_id == _hex(inner.get_span_context().trace_id, 32)
    assert got.span_id == _hex(inner.get_span_context().span_id, 16)
    assert got.parent_span_id == _hex(outer.get_span_context().span_id, 16)
    assert got.status_code == STATUS_ERROR and got.status_message == "routes failed"
    assert got.attributes["names"] == ["a", "b"]
    (link,) = got.links
    assert link.span_id == _hex(earlier.get_span_context().span_id, 16)
    assert link.trace_id == _hex(earlier.get_span_context().trace_id, 32)
    assert link.attributes == {"why": "prepare"}
    parent = receiver.parent(got)
    assert parent is not None and parent.name == "outer"
    assert parent.attributes == {"n": 3, "ok": True}
    assert [s.name for s in receiver.children(parent)] == ["inner"]
    assert receiver.tree(got.trace_id) == "dranet-test: outer\n  dranet-test: inner [ERROR]"
    assert receiver.spans(service="other") == []


async def test_wait_for_names_what_it_missed(receiver: OtlpReceiver) -> None:
    with pytest.raises(TimeoutError, match="span 'never'"):
        await receiver.wait_for_span("never", timeout=0.3)
