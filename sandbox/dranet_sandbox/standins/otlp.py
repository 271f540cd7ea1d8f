"""An OTLP trace receiver stand-in: what a collector sees from the services.

    async with OtlpReceiver() as otlp:
        env = otlp.environ()      # OTEL_TRACES_EXPORTER=otlp, ..._ENDPOINT=http://127.0.0.1:<port>
        ...                       # run services with env
        span = await otlp.wait_for_span("attach device", service="dranet-netlink-agent")
        otlp.children(span), otlp.trace(span.trace_id), otlp.spans(name="step routes")

It serves `opentelemetry.proto.collector.trace.v1.TraceService/Export` over
plaintext gRPC on 127.0.0.1 (an ephemeral port) and, given `unix_socket`,
on that unix socket too — the way in for a process inside another network
namespace (the sandbox's agent), whose 127.0.0.1 is not ours; the OTLP gRPC
exporter takes `unix:///path` as its endpoint. It uses the generated messages
of `opentelemetry-proto` and flattens every exported span into a `Span`:
the service.name of its resource, hex ids, name, kind, attributes, status
and links. Nothing is forwarded anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["Link", "OtlpReceiver", "Span", "attribute_value", "flatten"]

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2  # opentelemetry.proto.trace.v1.Status


@dataclass(frozen=True)
class Link:
    trace_id: str
    span_id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    """One exported span, ids as lowercase hex ("" for no parent)."""

    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: Mapping[str, Any]
    status_code: int
    status_message: str
    links: tuple[Link, ...]
    events: tuple[tuple[str, Mapping[str, Any]], ...]
    resource: Mapping[str, Any]
    start_ns: int = 0
    end_ns: int = 0

    @property
    def is_error(self) -> bool:
        return self.status_code == STATUS_ERROR

    @property
    def exceptions(self) -> list[Mapping[str, Any]]:
        """Attributes of the span's recorded exceptions (`exception` events)."""
        return [attrs for name, attrs in self.events if name == "exception"]


def attribute_value(value: common_pb2.AnyValue) -> Any:
    """An OTLP AnyValue as a plain Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [attribute_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: attribute_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _attributes(pairs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {kv.key: attribute_value(kv.value) for kv in pairs}


def flatten(request: trace_service_pb2.ExportTraceServiceRequest) -> list[Span]:
    """The spans of one Export request, each with its resource's attributes."""
    out: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(_span(service, resource, span))
    return out


def _span(service: str, resource: dict[str, Any], span: trace_pb2.Span) -> Span:
    return Span(
        service=service,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        name=span.name,
        kind=span.kind,
        attributes=_attributes(span.attributes),
        status_code=span.status.code,
        status_message=span.status.message,
        links=tuple(
            Link(link.trace_id.hex(), link.span_id.hex(), _attributes(link.attributes))
            for link in span.links
        ),
        events=tuple((e.name, _attributes(e.attributes)) for e in span.events),
        resource=resource,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
    )


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver.add(flatten(request))
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """A gRPC OTLP trace receiver on 127.0.0.1 collecting spans in memory."""

    def __init__(self, host: str = "127.0.0.1", *, unix_socket: Path | str | None = None) -> None:
        self.host = host
        self.port = 0
        self.unix_socket = None if unix_socket is None else Path(unix_socket)
        self.exports = 0  # Export calls received
        self._spans: list[Span] = []
        self._changed = asyncio.Event()
        self._server: grpc.aio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def unix_endpoint(self) -> str:
        if self.unix_socket is None:
            raise ValueError("this receiver has no unix socket; pass unix_socket=")
        return f"unix://{self.unix_socket.absolute()}"

    def environ(self, service_name: str = "", *, unix: bool = False) -> dict[str, str]:
        """The OTEL_* variables that send a process's spans here, exported at once
        (over the unix socket with `unix`: works from any network namespace)."""
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.unix_endpoint if unix else self.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: tests wait for spans, not for batches
        }
        if service_name:
            env["OTEL_SERVICE_NAME"] = service_name
        return env

    async def start(self) -> None:
        server = grpc.aio.server()
        add = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
        add(_TraceService(self), server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port(f"{self.host}:0")
        if self.unix_socket is not None:
            self.unix_socket.unlink(missing_ok=True)
            server.add_insecure_port(f"unix:{self.unix_socket.absolute()}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(0)
        if self.unix_socket is not None:
            self.unix_socket.unlink(missing_ok=True)

    async def __aenter__(self) -> OtlpReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def add(self, spans: list[Span]) -> None:
        self.exports += 1
        self._spans.extend(spans)
        self._changed.set()

    # --- queries ---------------------------------------------------------------------

    def spans(
        self,
        *,
        name: str | None = None,
        service: str | None = None,
        trace_id: str | None = None,
        where: Callable[[Span], bool] | None = None,
    ) -> list[Span]:
        """Received spans matching every filter given, in arrival order."""
        return [
            s
            for s in self._spans
            if (name is None or s.name == name)
            and (service is None or s.service == service)
            and (trace_id is None or s.trace_id == trace_id)
            and (where is None or where(s))
        ]

    def services(self) -> set[str]:
        return {s.service for s in self._spans}

    def by_id(self, span_id: str) -> Span | None:
        return next((s for s in self._spans if s.span_id == span_id), None)

    def parent(self, span: Span) -> Span | None:
        return self.by_id(span.parent_span_id) if span.parent_span_id else None

    def children(self, span: Span) -> list[Span]:
        return [s for s in self._spans if s.parent_span_id == span.span_id]

    def ancestors(self, span: Span) -> list[Span]:
        """Parent, grandparent... as far as received spans go."""
        chain: list[Span] = []
        current = self.parent(span)
        while current is not None and current not in chain:
            chain.append(current)
            current = self.parent(current)
        return chain

    def trace(self, trace_id: str) -> list[Span]:
        return self.spans(trace_id=trace_id)

    def tree(self, trace_id: str) -> str:
        """The trace as an indented text tree (service: name), for messages and docs."""
        spans = self.trace(trace_id)
        ids = {s.span_id for s in spans}
        lines: list[str] = []

        def walk(span: Span, depth: int) -> None:
            mark = " [ERROR]" if span.is_error else ""
            lines.append(f"{'  ' * depth}{span.service}: {span.name}{mark}")
            for child in sorted(self.children(span), key=lambda s: s.start_ns):
                walk(child, depth + 1)

        for root in sorted(
            (s for s in spans if s.parent_span_id not in ids), key=lambda s: s.start_ns
        ):
            walk(root, 0)
        return "\n".join(lines)

    async def wait_for(
        self, ready: Callable[[OtlpReceiver], bool], timeout: float = 10.0, what: str = ""
    ) -> None:
        """Until `ready(self)` holds; TimeoutError naming `what` and the spans seen."""
        deadline = time.monotonic() + timeout
        while not ready(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = sorted({f"{s.service}: {s.name}" for s in self._spans})
                raise TimeoutError(f"no {what or 'matching spans'} within {timeout}s; got {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    async def wait_for_span(self, name: str, timeout: float = 10.0, **filters: Any) -> Span:
        """The first span called `name` (and matching `filters`, see `spans`)."""
        await self.wait_for(
            lambda r: bool(r.spans(name=name, **filters)), timeout, f"span {name!r} {filters}"
        )
        return self.spans(name=name, **filters)[0]
