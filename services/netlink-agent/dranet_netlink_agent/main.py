"""dranet-netlink-agent: inventory, attach and detach behind a private gRPC API.

Start-up order: open the store (its own boot check drops rows of an earlier
boot), reconcile unfinished attaches with the kernel, start the inventory,
then serve — so no RPC sees a half-done attach left by a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from dranet import lifecycle
from dranet.agent.v1 import agent_pb2_grpc
from dranet.grpcserver import UnixServer
from dranet.metrics import Metrics, start_metrics_server
from dranet.store import Role, Store
from dranet.telemetry import server_interceptors, service_resource, setup_telemetry
from dranet_netlink_agent.context import AgentContext, AgentMetrics
from dranet_netlink_agent.inventory import Inventory
from dranet_netlink_agent.recovery import reap_forever, reconcile
from dranet_netlink_agent.service import AttachmentHub, NetlinkAgentService
from dranet_netlink_agent.settings import AgentSettings, load_settings

SERVICE = "netlink-agent"
SERVICE_NAME = "dranet.agent.v1.NetlinkAgent"
DRAIN_SECONDS = 20.0  # in-flight attaches at shutdown; within the pod's termination grace
log = logging.getLogger(__name__)


def crash_hook(point: str) -> Callable[[str], None]:
    """The test hook behind DRANET_AGENT_CRASH_AT: SIGKILL ourselves at `point`."""

    def checkpoint(reached: str) -> None:
        if point and reached == point:
            log.warning("crash hook: SIGKILL at %s", reached)
            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


async def serve(settings: AgentSettings, stop: asyncio.Event) -> None:
    telemetry = setup_telemetry(
        "dranet-netlink-agent", resource=service_resource(settings.node_name, SERVICE)
    )
    metrics = Metrics()
    store = await asyncio.to_thread(Store, settings.state_db, role=Role.AGENT)
    metrics.watch_store(store.counts)
    if store.dropped_stale_attachments:
        log.info("dropped %d attachment rows of an earlier boot", store.dropped_stale_attachments)
    node_netns = settings.node_netns or None
    inventory = Inventory(
        netns=node_netns,
        sysfs_root=Path(settings.sysfs_root),
        ignore=settings.ignored,
        resync_interval=settings.resync_interval,
        attachments=store.list_attachments,
    )
    hub = AttachmentHub()
    ctx = AgentContext(
        store=store,
        resolver=inventory,
        node_netns=node_netns,
        netns_roots=settings.roots,
        sysctl_root=settings.sysctl_root,
        checkpoint=crash_hook(settings.crash_at),
        listener=hub.publish,
        metrics=AgentMetrics.create(metrics),
    )
    exposition = None
    server: UnixServer | None = None
    reaper: asyncio.Task[None] | None = None
    service: NetlinkAgentService | None = None
    try:
        report = await reconcile(ctx)
        log.info("start-up reconcile: kept %d, rolled back %d, lost %d, failed %d",
                 len(report.kept), len(report.rolled_back), len(report.lost),
                 len(report.failed))  # fmt: skip
        # Readiness = the first scan is done: the socket only appears after it,
        # so no client ever sees an empty device list from a starting agent.
        await inventory.start()
        service = NetlinkAgentService(ctx, inventory, hub)
        server = UnixServer(
            settings.socket,
            adders=[lambda s: agent_pb2_grpc.add_NetlinkAgentServicer_to_server(service, s)],
            interceptors=[*server_interceptors(), metrics.server_interceptor()],
            services=[SERVICE_NAME],
            group=None if settings.socket_group < 0 else settings.socket_group,
        )
        await server.start()
        reaper = asyncio.create_task(reap_forever(ctx, settings.resync_interval))
        exposition = start_metrics_server(settings.metrics_port, metrics.registry)
        log.info("serving %s on %s", SERVICE_NAME, settings.socket)
        await stop.wait()
    finally:
        if reaper is not None:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
        # End the watch streams first: a graceful stop would otherwise wait
        # out its whole grace period for the plugin's never-ending watches.
        hub.close()
        await inventory.stop()
        if server is not None:
            await server.stop(5)
        if service is not None:
            # Shielded attaches/detaches outlive their RPCs: let them finish
            # before the store closes under them.
            await service.drain(DRAIN_SECONDS)
        if exposition is not None:
            exposition.close()
        store.close()
        telemetry.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    lifecycle.service_main(SERVICE, argv, load_settings, serve)
