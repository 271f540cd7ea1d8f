"""dranet-nri-hook: the runtime's NRI events -> the netlink agent.

Holds no state store and no API token; runs without capabilities.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from dranet.agent.v1 import agent_pb2_grpc
from dranet.errors import DranetError
from dranet.lifecycle import run
from dranet.logs import setup_logging
from dranet.metrics import Metrics, start_metrics_server
from dranet.telemetry import client_interceptors, setup_telemetry
from dranet_nri_hook.handlers import PodHandlers, agent_channel
from dranet_nri_hook.plugin import NriPlugin
from dranet_nri_hook.settings import HookSettings, load_settings, plugin_options

SERVICE = "nri-hook"
log = logging.getLogger(__name__)


async def serve(settings: HookSettings, stop: asyncio.Event) -> None:
    telemetry = setup_telemetry("dranet-nri-hook")
    metrics = Metrics()
    exposition = start_metrics_server(settings.metrics_port, metrics.registry)
    channel = agent_channel(settings.agent_socket, client_interceptors())
    try:
        handlers = PodHandlers(
            agent_pb2_grpc.NetlinkAgentStub(channel),
            timeout=settings.agent_timeout,
            metrics=metrics,
        )
        plugin = NriPlugin(plugin_options(settings), handlers)
        log.info("agent at %s, NRI plugin %s-%s", settings.agent_socket,
                 plugin.options.index, plugin.options.name)  # fmt: skip
        await plugin.run(stop)
    finally:
        await channel.close(None)
        if exposition is not None:
            exposition.close()
        telemetry.shutdown()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings(args)
    except DranetError as exc:  # a bad flag: one line, exit 2 like argparse
        print(f"dranet-nri-hook: error: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(SERVICE, settings.log_level, settings.log_format)
    run(lambda stop: serve(settings, stop), service=SERVICE)
