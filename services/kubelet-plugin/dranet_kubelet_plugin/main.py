"""`dranet-kubelet-plugin`: the kubelet DRA plugin process.

Readiness (gRPC health on the DRA socket, which the DaemonSet probes) is
NOT_SERVING until the kubelet has accepted the registration, and again
whenever it reports a failed one.

Start order (the kubelet must never learn an endpoint that does not answer):
open the store, the agent channel and the API client; start the DRA socket
(v1 and v1beta1 DRAPlugin, v1alpha1 DRAResourceHealth); start the publisher,
the claim status writer and the health feed; only then create the
registration socket. SIGTERM stops in reverse order: the registration socket
goes first, so the kubelet stops sending work, then the DRA socket after
in-flight calls had `grace` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from dranet import lifecycle, telemetry
from dranet.agent.v1 import agent_pb2_grpc
from dranet.grpcserver import UnixServer, unix_channel
from dranet.metrics import Metrics, start_metrics_server
from dranet.store import Role, Store
from dranet_kubelet_plugin.attributes import device_attributes
from dranet_kubelet_plugin.claimstatus import ClaimStatusWriter
from dranet_kubelet_plugin.devicehealth import (
    DeviceHealthServicer,
    DeviceHealthTracker,
    device_health_servicer_adder,
)
from dranet_kubelet_plugin.draservice import dra_servicer_adder
from dranet_kubelet_plugin.filter import DeviceFilter
from dranet_kubelet_plugin.kube import Kube
from dranet_kubelet_plugin.prepare import ClaimPreparer
from dranet_kubelet_plugin.publisher import SlicePublisher
from dranet_kubelet_plugin.registration import (
    DEFAULT_SUPPORTED_VERSIONS,
    HEALTH_V1ALPHA1,
    RegistrationServicer,
    registration_servicer_adder,
)
from dranet_kubelet_plugin.settings import PluginSettings, load_settings

log = logging.getLogger(__name__)
SERVICE = "kubelet-plugin"
DRA_SERVICES = (
    "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin",
    "k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin",
    "v1alpha1.DRAResourceHealth",
)


async def serve(settings: PluginSettings, stop: asyncio.Event) -> None:
    tracing = telemetry.setup_telemetry(
        "dranet-kubelet-plugin", resource=telemetry.service_resource(settings.node_name, SERVICE)
    )
    metrics = Metrics()
    metrics_server = start_metrics_server(settings.metrics_port, metrics.registry)
    device_filter = DeviceFilter(settings.filter)
    kube = Kube.from_kubeconfig(settings.kubeconfig)
    store = await asyncio.to_thread(Store, settings.state_db, role=Role.PLUGIN)
    metrics.watch_store(store.counts)
    slice_writes = metrics.counter(
        "slice_writes_total", "ResourceSlice writes to the API server, by verb.", ("verb",)
    )
    status_writes = metrics.counter(
        "claim_status_writes_total", "ResourceClaim status.devices updates written."
    )
    channel = unix_channel(settings.agent_socket, interceptors=telemetry.client_interceptors())
    agent = agent_pb2_grpc.NetlinkAgentStub(channel)

    published = metrics.gauge(
        "published_devices", "Devices this node publishes in its ResourceSlices."
    )
    publisher = SlicePublisher(
        kube=kube,
        agent=agent,
        driver=settings.driver_name,
        node_name=settings.node_name,
        device_filter=device_filter,
        resync_interval=settings.resync_seconds,
        on_published=published.set,
        on_write=lambda verb: slice_writes.labels(verb).inc(),
    )
    status_writer = ClaimStatusWriter(
        kube=kube,
        store=store,
        agent=agent,
        driver=settings.driver_name,
        on_write=status_writes.inc,
    )
    preparer = ClaimPreparer(
        kube=kube,
        store=store,
        agent=agent,
        driver=settings.driver_name,
        node_name=settings.node_name,
        inventory=publisher.published_devices,
    )
    health = DeviceHealthServicer(
        DeviceHealthTracker(
            include=lambda d: device_filter(device_attributes(d, settings.driver_name))
        ),
        pool=settings.node_name,
    )
    dra_server = UnixServer(
        settings.dra_socket,
        adders=[dra_servicer_adder(preparer), device_health_servicer_adder(health)],
        interceptors=[*telemetry.server_interceptors(), metrics.server_interceptor()],
        services=DRA_SERVICES,
    )
    registration = RegistrationServicer(
        settings.driver_name,
        settings.dra_socket,
        supported_versions=(*DEFAULT_SUPPORTED_VERSIONS, HEALTH_V1ALPHA1),
    )
    registration_server = UnixServer(
        settings.registration_socket,
        adders=[registration_servicer_adder(registration)],
        interceptors=[*telemetry.server_interceptors(), metrics.server_interceptor()],
        services=["pluginregistration.Registration"],
    )

    background: list[asyncio.Task[None]] = []
    try:
        await dra_server.start(serving=False)  # ready once the kubelet registered us
        registration.state.subscribe(dra_server.health.set_all)
        background = [
            asyncio.create_task(publisher.run(), name="publisher"),
            asyncio.create_task(status_writer.run(), name="claim-status"),
            asyncio.create_task(health.follow(agent), name="device-health"),
        ]
        await registration_server.start()
        log.info(
            "serving DRA driver %s on %s (node %s)",
            settings.driver_name,
            settings.dra_socket,
            settings.node_name,
        )
        stop_wait = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stop_wait, *background], return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        for task in done - {stop_wait}:
            error = task.exception()
            if error is not None:
                raise error
            raise RuntimeError(f"{task.get_name()} stopped on its own")
    finally:
        await registration_server.stop(grace=1)
        await dra_server.stop(grace=5)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await channel.close(grace=None)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(store.close)
        kube.close()
        if metrics_server is not None:
            metrics_server.close()
        tracing.shutdown()  # flush pending spans
        log.info("stopped")


def main(argv: Sequence[str] | None = None) -> None:
    lifecycle.service_main(SERVICE, argv, load_settings, serve)
