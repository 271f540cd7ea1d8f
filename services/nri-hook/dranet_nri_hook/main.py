"""dranet-nri-hook: the runtime's NRI events -> the netlink agent.

Writes no state store (reads its claims only while the agent is unreachable)
and holds no API token; runs without capabilities. Its only
server is a health-only gRPC socket (`--health-socket`) for the DaemonSet's
exec probe: SERVING while registered with the runtime, NOT_SERVING while
(re)connecting and when stopping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from dranet import lifecycle
from dranet.agent.v1 import agent_pb2_grpc
from dranet.errors import DranetError
from dranet.grpcserver import UnixServer, unix_channel
from dranet.metrics import Metrics, start_metrics_server
from dranet.telemetry import client_interceptors, service_resource, setup_telemetry
from dranet_nri_hook.handlers import PodHandlers
from dranet_nri_hook.plugin import NriPlugin
from dranet_nri_hook.settings import HookSettings, load_settings, plugin_options

SERVICE = "nri-hook"
log = logging.getLogger(__name__)


class RuntimeLink:
    """Follows the connection to the runtime: health, and the connection metrics."""

    def __init__(self, metrics: Metrics, health: UnixServer | None) -> None:
        self._health = health
        self._connected = metrics.gauge(
            "nri_connected", "1 while registered with the container runtime, else 0."
        )
        self._reconnects = metrics.counter(
            "nri_reconnects_total", "Registrations with the runtime after the first one."
        )
        self._registrations = 0

    def __call__(self, connected: bool) -> None:
        self._connected.set(1 if connected else 0)
        if connected:
            self._registrations += 1
            if self._registrations > 1:
                self._reconnects.inc()
        if self._health is not None:
            self._health.health.set_all(connected)


async def start_health(path: str) -> UnixServer | None:
    """The health-only server; a bind failure is logged, not fatal: the hook's
    work does not depend on it and the readiness probe then reports the problem."""
    if not path:
        return None
    server = UnixServer(path)
    try:
        await server.start(serving=False)
    except DranetError as exc:
        log.error("no health socket, the readiness probe will fail: %s", exc)
        return None
    return server


async def serve(settings: HookSettings, stop: asyncio.Event) -> None:
    telemetry = setup_telemetry(
        "dranet-nri-hook", resource=service_resource(settings.node_name, SERVICE)
    )
    metrics = Metrics()
    exposition = start_metrics_server(settings.metrics_port, metrics.registry)
    health = await start_health(settings.health_socket)
    channel = unix_channel(settings.agent_socket, interceptors=client_interceptors())
    try:
        handlers = PodHandlers(
            agent_pb2_grpc.NetlinkAgentStub(channel),
            timeout=settings.agent_timeout,
            metrics=metrics,
            state_db=settings.state_db,
        )
        plugin = NriPlugin(
            plugin_options(settings), handlers, on_connection=RuntimeLink(metrics, health)
        )
        log.info("agent at %s, NRI plugin %s-%s", settings.agent_socket,
                 plugin.options.index, plugin.options.name)  # fmt: skip
        await plugin.run(stop)
    finally:
        if health is not None:
            await health.stop(0)
        await channel.close(None)
        if exposition is not None:
            exposition.close()
        telemetry.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    lifecycle.service_main(SERVICE, argv, load_settings, serve)
