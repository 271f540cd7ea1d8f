"""The kubelet's DRA client: `KubeletStandin` = the plugin watcher + prepare/unprepare.

`prepare(claims)` / `unprepare(claims)` call the chosen DRA service version
(or a forced one) with the kubelet's 45 s deadline and enforce the kubelet's
response rules: one entry per requested claim UID, no unknown UID.
Violations raise `ProtocolError`; an RPC failure raises `PeerError`.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc

from dranet.errors import PeerError
from dranet.kubelet.dra.v1 import api_pb2 as v1_pb2
from dranet.kubelet.dra.v1 import api_pb2_grpc as v1_grpc
from dranet.kubelet.dra.v1beta1 import api_pb2 as v1beta1_pb2
from dranet.kubelet.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc
from dranet_sandbox.standins.kubelet.checks import KNOWN_SERVICES, check_response_uids, rpc_error
from dranet_sandbox.standins.kubelet.registration import PluginWatcher, RegisteredPlugin

CALL_TIMEOUT = 45.0

# registration id -> (message module, grpc module)
_SERVICE_MODULES: dict[str, tuple[types.ModuleType, types.ModuleType]] = {
    "v1.DRAPlugin": (v1_pb2, v1_grpc),
    "v1beta1.DRAPlugin": (v1beta1_pb2, v1beta1_grpc),
}


class ClaimLike(Protocol):
    @property
    def uid(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Claim:
    """A ResourceClaim as the kubelet names it in DRA calls."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class PreparedDevice:
    request_names: tuple[str, ...]
    pool_name: str
    device_name: str
    cdi_device_ids: tuple[str, ...] = ()
    share_id: str | None = None  # v1 only


@dataclass(frozen=True)
class ClaimResult:
    """One claim's answer; a non-empty error fails the pod's start in a real kubelet."""

    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""


class KubeletStandin(PluginWatcher):
    """The kubelet stand-in: registers plugins (`PluginWatcher`) and calls their DRA service."""

    def __init__(
        self,
        root_dir: Path,
        *,
        known_services: Sequence[str] = KNOWN_SERVICES,
        force_service: str | None = None,
        poll_interval: float = 0.05,
        backoff: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        super().__init__(
            root_dir, known_services=known_services, poll_interval=poll_interval, backoff=backoff
        )
        # Calls use this service instead of the one chosen at registration.
        self.force_service = force_service

    # DRA calls -------------------------------------------------------------------

    def plugin(self, driver: str | None = None) -> RegisteredPlugin:
        """The instance calls go to: the latest registered one of the driver."""
        if driver is None:
            if len(self.plugins) != 1:
                raise PeerError(
                    f"{len(self.plugins)} drivers registered ({', '.join(self.plugins)})",
                    hint="pass driver=",
                )
            driver = next(iter(self.plugins))
        instances = self.plugins.get(driver)
        if not instances:
            raise PeerError(
                f"DRA driver {driver} is not registered with the kubelet",
                hint="start the plugin and wait_registered() first",
            )
        return instances[-1]

    def _stub(self, plugin: RegisteredPlugin, service: str | None) -> tuple[Any, Any]:
        chosen = service or self.force_service or plugin.service
        if chosen not in _SERVICE_MODULES:
            raise ValueError(f"unknown DRA service {chosen!r}; use one of {list(_SERVICE_MODULES)}")
        pb, grpc_mod = _SERVICE_MODULES[chosen]
        return pb, grpc_mod.DRAPluginStub(plugin.channel)

    async def prepare(
        self,
        claims: Sequence[ClaimLike],
        *,
        driver: str | None = None,
        service: str | None = None,
        traceparent: str | None = None,
    ) -> dict[str, ClaimResult]:
        """NodePrepareResources for one driver's claims; results by claim UID."""
        pb, stub = self._stub(self.plugin(driver), service)
        request = pb.NodePrepareResourcesRequest(claims=[_claim(pb, c) for c in claims])
        try:
            response = await stub.NodePrepareResources(
                request, timeout=CALL_TIMEOUT, metadata=_metadata(traceparent)
            )
        except grpc.aio.AioRpcError as exc:
            raise rpc_error("NodePrepareResources", exc) from exc
        check_response_uids("NodePrepareResources", (c.uid for c in claims), response.claims)
        return {uid: _claim_result(entry) for uid, entry in response.claims.items()}

    async def unprepare(
        self,
        claims: Sequence[ClaimLike],
        *,
        driver: str | None = None,
        service: str | None = None,
        traceparent: str | None = None,
    ) -> dict[str, str]:
        """NodeUnprepareResources; errors by claim UID ("" = done)."""
        pb, stub = self._stub(self.plugin(driver), service)
        request = pb.NodeUnprepareResourcesRequest(claims=[_claim(pb, c) for c in claims])
        try:
            response = await stub.NodeUnprepareResources(
                request, timeout=CALL_TIMEOUT, metadata=_metadata(traceparent)
            )
        except grpc.aio.AioRpcError as exc:
            raise rpc_error("NodeUnprepareResources", exc) from exc
        check_response_uids("NodeUnprepareResources", (c.uid for c in claims), response.claims)
        return {uid: entry.error for uid, entry in response.claims.items()}


def _claim(pb: Any, claim: ClaimLike) -> Any:
    return pb.Claim(namespace=claim.namespace, name=claim.name, uid=claim.uid)


def _metadata(traceparent: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("traceparent", traceparent),) if traceparent else None


def _claim_result(entry: Any) -> ClaimResult:
    devices = tuple(
        PreparedDevice(
            request_names=tuple(d.request_names),
            pool_name=d.pool_name,
            device_name=d.device_name,
            cdi_device_ids=tuple(d.cdi_device_ids),
            share_id=d.share_id if _has_share_id(d) else None,
        )
        for d in entry.devices
    )
    return ClaimResult(devices=devices, error=entry.error)


def _has_share_id(device: Any) -> bool:
    # v1beta1 devices have no share_id field; in v1 it has explicit presence.
    return "share_id" in device.DESCRIPTOR.fields_by_name and bool(device.HasField("share_id"))
