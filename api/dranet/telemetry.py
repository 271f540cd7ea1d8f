"""OpenTelemetry traces configured by the standard OTEL_* variables.

    telemetry = setup_telemetry("dranet-agent", resource={"k8s.node.name": node})
    ...
    telemetry.shutdown()  # flushes pending spans

Nothing is exported unless OTEL_TRACES_EXPORTER says so (`otlp`, `console`,
`none`, or a comma list), so a default install makes no network traffic.
OTLP uses gRPC unless OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (or
OTEL_EXPORTER_OTLP_PROTOCOL) is `http/protobuf`; endpoint, headers and
insecure come from the exporters' own OTEL_EXPORTER_OTLP_* variables. Context
crosses processes as W3C `traceparent`/`tracestate` plus `baggage`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from dranet.errors import SettingsError
from dranet.grpcserver import ServerInterceptor

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("grpc", "http/protobuf")
HEALTH_SERVICE = "grpc.health.v1.Health"


@dataclass
class Telemetry:
    """A configured tracer provider and the exporters feeding from it."""

    provider: TracerProvider
    exporters: list[SpanExporter] = field(default_factory=list)

    def tracer(self, name: str) -> Tracer:
        return self.provider.get_tracer(name)

    def shutdown(self) -> None:
        """Flush pending spans and stop the exporters (call once, at exit)."""
        self.provider.force_flush()
        self.provider.shutdown()


def exporter_names(value: str | None) -> list[str]:
    """Parse OTEL_TRACES_EXPORTER: a comma list; unset means none."""
    names = [n.strip().lower() for n in (value or "none").split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise SettingsError(
            f"OTEL_TRACES_EXPORTER={value!r} names unknown exporter(s) {', '.join(unknown)}",
            hint=f"use a comma list of {', '.join(EXPORTERS)}",
        )
    return [n for n in dict.fromkeys(names) if n != "none"]


def otlp_protocol(env: Mapping[str, str]) -> str:
    """The OTLP protocol for traces: per-signal variable, then generic, then grpc."""
    for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(var, "").strip().lower()
        if value:
            if value not in PROTOCOLS:
                raise SettingsError(
                    f"{var}={value!r} is not supported",
                    hint=f"use {' or '.join(PROTOCOLS)}",
                )
            return value
    return "grpc"


def _otlp_exporter(protocol: str) -> SpanExporter:
    # Imported on demand: each transport pulls in its own stack (grpc / requests).
    # Both read endpoint, headers, insecure and timeout from OTEL_EXPORTER_OTLP_*.
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


# Downward-API variables the DaemonSet sets -> resource attributes.
DOWNWARD_ENV = (
    ("POD_NAME", "k8s.pod.name"),
    ("POD_NAMESPACE", "k8s.namespace.name"),
    ("POD_UID", "k8s.pod.uid"),
)


def service_resource(
    node_name: str, container: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Resource attributes of one sidecar: node, container, and the pod's names from
    the downward API variables (POD_NAME, POD_NAMESPACE, POD_UID) when set."""
    env = os.environ if environ is None else environ
    attributes = {"k8s.container.name": container}
    if node_name:
        attributes["k8s.node.name"] = node_name
    for var, key in DOWNWARD_ENV:
        if env.get(var):
            attributes[key] = env[var]
    return attributes


def build_resource(service_name: str, attributes: Mapping[str, str] = {}) -> Resource:
    """service.name and code-given attributes, overridden by OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES (the operator has the last word)."""
    given: dict[str, Any] = {"service.name": service_name, **attributes}
    return Resource.create(given).merge(OTELResourceDetector().detect())


def build_telemetry(
    service_name: str,
    *,
    resource: Mapping[str, str] = {},
    console_out: IO[str] | None = None,
) -> Telemetry:
    """Build a provider from the environment without touching global state."""
    names = exporter_names(os.environ.get("OTEL_TRACES_EXPORTER"))
    provider = TracerProvider(resource=build_resource(service_name, resource))
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "otlp":
            exporters.append(_otlp_exporter(otlp_protocol(os.environ)))
        else:
            out = sys.stdout if console_out is None else console_out
            exporters.append(ConsoleSpanExporter(service_name=service_name, out=out))
    for exporter in exporters:
        # Batching keeps export off the request path and avoids the recursion a
        # synchronous processor has with an instrumented OTLP gRPC exporter.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return Telemetry(provider, exporters)


_installed: Telemetry | None = None


def setup_telemetry(service_name: str, *, resource: Mapping[str, str] = {}) -> Telemetry:
    """Build telemetry from the environment and install it as the global provider.

    OpenTelemetry allows one global provider per process, so a second call
    returns the first result instead of building an orphan provider.
    """
    global _installed  # noqa: PLW0603
    if _installed is not None:
        return _installed
    telemetry = build_telemetry(service_name, resource=resource)
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    trace.set_tracer_provider(telemetry.provider)
    _installed = telemetry
    return telemetry


class PodLike(Protocol):
    @property
    def uid(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...


def pod_attributes(pod: PodLike, netns_path: str = "") -> dict[str, str]:
    """Span attributes of a pod: OpenTelemetry's k8s.* names, dranet.* for ours."""
    attributes = {
        "k8s.pod.uid": pod.uid,
        "k8s.pod.name": pod.name,
        "k8s.namespace.name": pod.namespace,
    }
    if netns_path:
        attributes["dranet.netns.path"] = netns_path
    return attributes


def tracer(name: str) -> Tracer:
    """A tracer from the global provider (a no-op one before setup)."""
    return trace.get_tracer(name)


def current_carrier() -> dict[str, str]:
    """The current context as W3C headers, e.g. to store a prepare span's traceparent."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def link_from_carrier(carrier: Mapping[str, str] | None) -> Link | None:
    """A span link to the span a stored carrier names, or None if it names none."""
    if not carrier:
        return None
    context = trace.get_current_span(propagate.extract(dict(carrier))).get_span_context()
    return Link(context) if context.is_valid else None


def _not_health(details: Any) -> bool:
    method = getattr(details, "method", "")
    if isinstance(method, bytes):  # grpc.aio client details carry bytes (grpc#31092)
        method = method.decode()
    return not str(method).lstrip("/").startswith(HEALTH_SERVICE + "/")


def server_interceptors(
    provider: trace.TracerProvider | None = None,
) -> list[ServerInterceptor]:
    """grpc.aio server interceptors: a SERVER span per call, parent taken from the
    W3C headers in the call's metadata; health checks are not traced."""
    interceptor: ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=_not_health
    )
    return [interceptor]


def client_interceptors(
    provider: trace.TracerProvider | None = None,
) -> list[Any]:
    """grpc.aio channel interceptors: a CLIENT span per call and the W3C headers
    injected into its metadata; health checks are not traced."""
    interceptors: list[Any] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=_not_health
    )
    return interceptors
