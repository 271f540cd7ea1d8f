"""Prometheus metrics for SREs: one registry per process, text exposition.

    metrics = Metrics()
    server = UnixServer(path, interceptors=[metrics.server_interceptor(), ...])
    exposition = start_metrics_server(settings.metrics_port, metrics.registry)
    with metrics.time_event("RunPodSandbox"):
        ...

Common metrics: `dranet_grpc_server_requests_total{method,code}`,
`dranet_grpc_server_request_duration_seconds{method}` (health checks left
out), `dranet_events_total{event,result}` and
`dranet_event_duration_seconds{event}` for non-gRPC events (NRI, kubelet
registration...). Services add their own with `counter`/`gauge`/`histogram`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dranet.grpcserver import ServerInterceptor

if TYPE_CHECKING:  # the stubs make it generic; grpc's runtime class is not
    RpcHandler = grpc.RpcMethodHandler[Any, Any]
else:
    RpcHandler = grpc.RpcMethodHandler

log = logging.getLogger(__name__)
PREFIX = "dranet_"
HEALTH_PREFIX = "/grpc.health.v1.Health/"
# Local calls: most take milliseconds; netlink moves and slow peers take seconds.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The process's registry and the metrics every service shares."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if registry is None:  # fresh registry: add the standard process_* metrics
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.rpc_requests = self.counter(
            "grpc_server_requests_total",
            "gRPC calls served, by method and status code.",
            ("method", "code"),
        )
        self.rpc_duration = self.histogram(
            "grpc_server_request_duration_seconds", "Time to serve a gRPC call.", ("method",)
        )
        self.events = self.counter(
            "events_total",
            "Events handled (NRI, registration...), by result.",
            ("event", "result"),
        )
        self.event_duration = self.histogram(
            "event_duration_seconds", "Time to handle an event.", ("event",)
        )

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(PREFIX + name, help, list(labels), registry=self.registry)

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(PREFIX + name, help, list(labels), registry=self.registry)

    def histogram(self, name: str, help: str, labels: Sequence[str] = ()) -> Histogram:
        return Histogram(PREFIX + name, help, list(labels), registry=self.registry, buckets=BUCKETS)

    def observe_rpc(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.rpc_requests.labels(method, code.name).inc()
        self.rpc_duration.labels(method).observe(seconds)

    def observe_event(self, event: str, result: str, seconds: float) -> None:
        self.events.labels(event, result).inc()
        self.event_duration.labels(event).observe(seconds)

    @contextlib.contextmanager
    def time_event(self, event: str) -> Iterator[None]:
        """Count and time the block as `event`; result "error" if it raises."""
        start = time.monotonic()
        result = "error"
        try:
            yield
            result = "ok"
        finally:
            self.observe_event(event, result, time.monotonic() - start)

    def server_interceptor(self) -> ServerInterceptor:
        return RpcMetricsInterceptor(self)

    def watch_store(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Export `dranet_store_rows{table}`, read by `counts()` at each scrape
        (e.g. `Store.counts`; it must be callable from the exposition thread)."""
        self.registry.register(StoreRowsCollector(counts))


class StoreRowsCollector(Collector):
    """Rows per table of the claim-state store, counted when scraped."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # nothing read at registration time (the store may not be open yet)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            PREFIX + "store_rows", "Rows in the claim-state store, by table.", labels=["table"]
        )
        try:
            counts = self._counts()
        except Exception as exc:  # a closed or busy store must not break the scrape
            log.debug("store row count failed: %s", exc)
            return []
        for table, rows in sorted(counts.items()):
            family.add_metric([table], rows)
        return [family]


def _final_code(context: Any, failure: BaseException | None) -> grpc.StatusCode:
    """The status a call ended with: cancelled, set by abort()/set_code(), or implied."""
    if isinstance(failure, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    code = context.code()  # None when the handler never set one
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if failure is None else grpc.StatusCode.UNKNOWN


class RpcMetricsInterceptor(ServerInterceptor):
    """Counts and times every call by method and final status code."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[RpcHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> RpcHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        observe = self._metrics.observe_rpc
        h: Any = handler

        def unary(behavior: Any) -> Any:
            async def wrapper(request: Any, context: Any) -> Any:
                start, failure = time.monotonic(), None
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    observe(method, _final_code(context, failure), time.monotonic() - start)

            return wrapper

        def streaming(behavior: Any) -> Any:
            async def wrapper(request: Any, context: Any) -> AsyncIterator[Any]:
                start, failure = time.monotonic(), None
                try:
                    async for response in behavior(request, context):
                        yield response
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    observe(method, _final_code(context, failure), time.monotonic() - start)

            return wrapper

        kinds = {
            "unary_unary": grpc.unary_unary_rpc_method_handler,
            "stream_unary": grpc.stream_unary_rpc_method_handler,
            "unary_stream": grpc.unary_stream_rpc_method_handler,
            "stream_stream": grpc.stream_stream_rpc_method_handler,
        }
        for attr, make in kinds.items():
            behavior = getattr(h, attr)
            if behavior is None:
                continue
            # Async generators yield responses; coroutines return one or write()
            # them; sync handlers (thread pool) are left as they are.
            if inspect.isasyncgenfunction(behavior):
                wrapped = streaming(behavior)
            elif inspect.iscoroutinefunction(behavior):
                wrapped = unary(behavior)
            else:
                return handler
            return make(
                wrapped,
                request_deserializer=h.request_deserializer,
                response_serializer=h.response_serializer,
            )
        return handler


@dataclass
class MetricsServer:
    """A running text-exposition HTTP server (its own thread)."""

    host: str
    port: int
    _httpd: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve_metrics(
    registry: CollectorRegistry, *, host: str = "0.0.0.0", port: int = 0
) -> MetricsServer:
    """Serve /metrics on host:port (0 = an ephemeral port, see `.port`)."""
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host, httpd.server_address[1], httpd, thread)


def start_metrics_server(
    port: int, registry: CollectorRegistry, *, host: str = "0.0.0.0"
) -> MetricsServer | None:
    """Serve the registry on `port`; port 0 means metrics are off (None)."""
    if port == 0:
        return None
    return serve_metrics(registry, host=host, port=port)
