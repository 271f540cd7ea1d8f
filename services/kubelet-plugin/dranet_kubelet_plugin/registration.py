"""Kubelet plugin registration: the `pluginregistration.Registration` service.

The kubelet finds the plugin through a socket in its registry directory,
asks `GetInfo` (with a 1 s deadline, so the answer is prepared up front and
nothing slow happens here), validates it, connects to the announced DRA
endpoint and reports back with `NotifyRegistrationStatus`. The servicer only
answers and records; starting the servers (DRA socket first, registration
socket second) is the caller's job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc

from dranet.kubelet.pluginregistration.v1 import api_pb2 as reg_pb2
from dranet.kubelet.pluginregistration.v1 import api_pb2_grpc as reg_grpc

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]

PLUGIN_TYPE = "DRAPlugin"
# Registration ids: "<last proto package component>.<service>", not gRPC names.
DRA_V1 = "v1.DRAPlugin"
DRA_V1BETA1 = "v1beta1.DRAPlugin"
# For the health API the id is its real gRPC service name (package "v1alpha1").
HEALTH_V1ALPHA1 = "v1alpha1.DRAResourceHealth"
# The kubelet takes the first entry it knows, so v1 goes first.
DEFAULT_SUPPORTED_VERSIONS: tuple[str, ...] = (DRA_V1, DRA_V1BETA1)

DEFAULT_KUBELET_ROOT = Path("/var/lib/kubelet")
DRA_SOCKET_NAME = "dra.sock"


def plugin_dir(kubelet_root: Path, driver: str) -> Path:
    """The driver's own directory under the kubelet's plugins dir."""
    return Path(kubelet_root) / "plugins" / driver


def dra_socket_path(kubelet_root: Path, driver: str) -> Path:
    """`<kubelet root>/plugins/<driver>/dra.sock`: where the DRA service listens."""
    return plugin_dir(kubelet_root, driver) / DRA_SOCKET_NAME


def registry_dir(kubelet_root: Path) -> Path:
    """The directory the kubelet's plugin watcher watches."""
    return Path(kubelet_root) / "plugins_registry"


def registration_socket_path(kubelet_root: Path, driver: str) -> Path:
    """`<kubelet root>/plugins_registry/<driver>-reg.sock`."""
    return registry_dir(kubelet_root) / f"{driver}-reg.sock"


@dataclass(frozen=True)
class RegistrationStatus:
    """What the kubelet said about the last registration attempt."""

    registered: bool
    error: str = ""


class RegistrationState:
    """The outcome of registration, for readiness checks and tests.

    The kubelet may notify more than once (re-registration after its restart,
    retries after a refusal); the latest status wins and every one is kept.
    """

    def __init__(self) -> None:
        self._notified = asyncio.Event()
        self._registered = asyncio.Event()
        self.history: list[RegistrationStatus] = []
        self._listeners: list[Callable[[bool], None]] = []

    def subscribe(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(registered)` now and on every later notification (readiness)."""
        self._listeners.append(listener)
        listener(self.registered)

    @property
    def latest(self) -> RegistrationStatus | None:
        return self.history[-1] if self.history else None

    @property
    def registered(self) -> bool:
        latest = self.latest
        return latest is not None and latest.registered

    def record(self, status: RegistrationStatus) -> None:
        self.history.append(status)
        if status.registered:
            self._registered.set()
        else:
            self._registered.clear()
        self._notified.set()
        for listener in self._listeners:
            listener(status.registered)

    async def wait_notified(self) -> RegistrationStatus:
        """The first (or latest) status; wrap in `asyncio.timeout` to bound the wait."""
        await self._notified.wait()
        status = self.latest
        assert status is not None  # the event is only set after a record
        return status

    async def wait_registered(self) -> None:
        """Returns once the kubelet has accepted the plugin."""
        await self._registered.wait()


class RegistrationServicer(reg_grpc.RegistrationServicer):
    """Answers the kubelet's plugin watcher for one DRA driver."""

    def __init__(
        self,
        driver_name: str,
        endpoint: Path | str,
        *,
        supported_versions: Sequence[str] = DEFAULT_SUPPORTED_VERSIONS,
        state: RegistrationState | None = None,
    ) -> None:
        if not driver_name:
            raise ValueError("driver_name is empty; pass the DRA driver name (e.g. dra.net)")
        if not supported_versions:
            raise ValueError("supported_versions is empty; the kubelet rejects such a plugin")
        # Built once: GetInfo has a 1 s deadline and must never wait on anything.
        self._info = reg_pb2.PluginInfo(
            type=PLUGIN_TYPE,
            name=driver_name,
            endpoint=str(endpoint),
            supported_versions=list(supported_versions),
        )
        self.driver_name = driver_name
        self.state = state if state is not None else RegistrationState()

    async def GetInfo(self, request: reg_pb2.InfoRequest, context: Context) -> reg_pb2.PluginInfo:
        response = reg_pb2.PluginInfo()
        response.CopyFrom(self._info)
        return response

    async def NotifyRegistrationStatus(
        self, request: reg_pb2.RegistrationStatus, context: Context
    ) -> reg_pb2.RegistrationStatusResponse:
        status = RegistrationStatus(registered=request.plugin_registered, error=request.error)
        self.state.record(status)
        if status.registered:
            log.info("kubelet registered DRA driver %s", self.driver_name)
        else:
            log.error(
                "kubelet refused to register DRA driver %s: %s (check the driver name, the "
                "endpoint path as the host sees it, and that the kubelet supports %s)",
                self.driver_name,
                status.error or "no reason given",
                ", ".join(self._info.supported_versions),
            )
        return reg_pb2.RegistrationStatusResponse()


def add_registration_servicer(server: grpc.aio.Server, servicer: RegistrationServicer) -> None:
    reg_grpc.add_RegistrationServicer_to_server(servicer, server)


def registration_servicer_adder(
    servicer: RegistrationServicer,
) -> Callable[[grpc.aio.Server], None]:
    """A callback registering the servicer on a server (for `UnixServer(adders=...)`)."""
    return partial(add_registration_servicer, servicer=servicer)
