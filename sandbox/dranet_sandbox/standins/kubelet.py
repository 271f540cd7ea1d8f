"""A kubelet stand-in: the plugin watcher and the DRA client of a 1.34+ kubelet.

It does what the kubelet does with a DRA driver, over the real wire:

- watches `<root>/plugins_registry` (recursively, dot-files ignored) for unix
  sockets; a new or re-created socket is registered, a removed one
  deregistered (the kubelet uses inotify; polling is enough here);
- registration: `GetInfo` with a 1 s deadline, checks type "DRAPlugin", the
  name, the supported services (the plugin's first entry this kubelet knows
  wins) and that the endpoint is a socket, connects to it, then
  `NotifyRegistrationStatus` (true, or false with the error). Failures are
  retried with exponential backoff while the socket stays the same;
- `prepare(claims)` / `unprepare(claims)` call the chosen DRA service version
  (or a forced one) with the kubelet's 45 s deadline and enforce the kubelet's
  response rules: one entry per requested claim UID, no unknown UID.
  Violations raise `ProtocolError`; an RPC failure raises `PeerError`.

It deliberately does not import the plugin's code: it checks the plugin
against the contract, not against itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from dranet.errors import PeerError, ProtocolError
from dranet.kubelet.dra.v1 import api_pb2 as v1_pb2
from dranet.kubelet.dra.v1 import api_pb2_grpc as v1_grpc
from dranet.kubelet.dra.v1beta1 import api_pb2 as v1beta1_pb2
from dranet.kubelet.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc
from dranet.kubelet.pluginregistration.v1 import api_pb2 as reg_pb2
from dranet.kubelet.pluginregistration.v1 import api_pb2_grpc as reg_grpc

log = logging.getLogger(__name__)

DRA_PLUGIN_TYPE = "DRAPlugin"
# The services a 1.34/1.35 kubelet speaks, by registration id.
KNOWN_SERVICES: tuple[str, ...] = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
GET_INFO_TIMEOUT = 1.0
NOTIFY_TIMEOUT = 5.0
CONNECT_TIMEOUT = 10.0
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


@dataclass(frozen=True)
class RegistrationAttempt:
    socket: Path
    name: str
    registered: bool
    error: str = ""


@dataclass
class RegisteredPlugin:
    name: str
    endpoint: Path
    socket: Path
    service: str
    supported_versions: tuple[str, ...]
    channel: grpc.aio.Channel = field(repr=False)


# --- pure rules --------------------------------------------------------------


def choose_service(supported: Sequence[str], known: Sequence[str]) -> str:
    """The kubelet's pick: the plugin's first entry the kubelet knows."""
    if not supported:
        raise ValueError("empty list of supported versions")
    for service in supported:
        if service in known:
            return service
    raise ValueError(
        f"none of services supported by the plugin ({', '.join(supported)}) "
        f"are supported by the kubelet ({', '.join(known)})"
    )


def check_plugin_info(info: Any, socket: Path, known: Sequence[str]) -> tuple[Path, str]:
    """Validates a GetInfo answer; returns (endpoint, chosen service) or raises ValueError."""
    if info.type != DRA_PLUGIN_TYPE:
        raise ValueError(f"no handler registered for plugin type: {info.type} at socket {socket}")
    if not info.name:
        raise ValueError(f"plugin at socket {socket} has an empty name")
    service = choose_service(list(info.supported_versions), known)
    endpoint = Path(info.endpoint) if info.endpoint else socket
    if not endpoint.is_absolute():
        raise ValueError(f"endpoint {info.endpoint!r} is not an absolute path")
    try:
        mode = endpoint.stat().st_mode
    except OSError as exc:
        raise ValueError(f"endpoint {endpoint} does not exist: {exc.strerror}") from exc
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"endpoint {endpoint} is not a unix socket")
    return endpoint, service


def check_response_uids(method: str, requested: Iterable[str], answered: Iterable[str]) -> None:
    """The kubelet's response rules: no unknown UID, none skipped."""
    wanted = set(requested)
    got = set(answered)
    unknown = sorted(got - wanted)
    if unknown:
        raise ProtocolError(
            f"{method} returned result for unknown claim UID {', '.join(unknown)}",
            hint="answer exactly the claim UIDs of the request",
        )
    skipped = sorted(wanted - got)
    if skipped:
        raise ProtocolError(
            f"{method} skipped {len(skipped)} ResourceClaims ({', '.join(skipped)})",
            hint="answer every requested claim, with an empty entry on success",
        )


def scan_sockets(directory: Path) -> dict[Path, tuple[int, int]]:
    """Unix sockets under `directory` (recursive, dot-names skipped) -> identity."""
    found: dict[Path, tuple[int, int]] = {}
    for top, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = Path(top) / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISSOCK(info.st_mode):
                # A re-created socket gets a new inode or time: re-register it.
                found[path] = (info.st_ino, info.st_mtime_ns)
    return found


def _rpc_error(method: str, exc: grpc.aio.AioRpcError) -> PeerError:
    return PeerError(f"{method}: rpc error: code = {exc.code().name} desc = {exc.details()}")


# --- the stand-in ------------------------------------------------------------


class KubeletStandin:
    def __init__(
        self,
        root_dir: Path,
        *,
        known_services: Sequence[str] = KNOWN_SERVICES,
        force_service: str | None = None,
        poll_interval: float = 0.05,
        backoff: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        self.root_dir = Path(root_dir)
        self.registry_dir = self.root_dir / "plugins_registry"
        self.known_services = tuple(known_services)
        # Calls use this service instead of the one chosen at registration.
        self.force_service = force_service
        self.poll_interval = poll_interval
        self.backoff = backoff
        self.attempts: list[RegistrationAttempt] = []
        self.plugins: dict[str, list[RegisteredPlugin]] = {}
        self._seen: dict[Path, tuple[int, int]] = {}
        self._registering: dict[Path, asyncio.Task[None]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        await asyncio.to_thread(self.registry_dir.mkdir, parents=True, exist_ok=True)
        self._watcher = asyncio.create_task(self._watch(), name="kubelet-standin-watch")

    async def stop(self) -> None:
        tasks = [t for t in (self._watcher, *self._registering.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._registering.clear()
        for instances in self.plugins.values():
            for plugin in instances:
                await plugin.channel.close(None)
        self.plugins.clear()

    async def __aenter__(self) -> KubeletStandin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # waiting helpers (bound them with asyncio.timeout) ------------------------

    async def wait_registered(self, driver: str) -> RegisteredPlugin:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self.plugins.get(driver)))
        return self.plugins[driver][-1]

    async def wait_attempts(self, count: int) -> list[RegistrationAttempt]:
        """Returns once `count` registration attempts finished (success or refusal)."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.attempts) >= count)
        return list(self.attempts)

    async def wait_deregistered(self, driver: str) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: not self.plugins.get(driver))

    async def _notify_changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # plugin watcher ------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            current = await asyncio.to_thread(scan_sockets, self.registry_dir)
            for path, identity in list(self._seen.items()):
                if current.get(path) != identity:
                    await self._deregister(path)
            for path, identity in current.items():
                if self._seen.get(path) != identity:
                    self._seen[path] = identity
                    self._registering[path] = asyncio.create_task(
                        self._register_with_retries(path), name=f"register {path}"
                    )
            await asyncio.sleep(self.poll_interval)

    async def _deregister(self, socket: Path) -> None:
        self._seen.pop(socket, None)
        task = self._registering.pop(socket, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name, instances in list(self.plugins.items()):
            for plugin in [p for p in instances if p.socket == socket]:
                instances.remove(plugin)
                await plugin.channel.close(None)
                log.info("kubelet stand-in: deregistered %s (socket %s gone)", name, socket)
            if not instances:
                del self.plugins[name]
        await self._notify_changed()

    async def _register_with_retries(self, socket: Path) -> None:
        delay, limit = self.backoff
        while True:
            if await self._register(socket):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, limit)

    async def _register(self, socket: Path) -> bool:
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            stub = reg_grpc.RegistrationStub(channel)
            try:
                info = await stub.GetInfo(reg_pb2.InfoRequest(), timeout=GET_INFO_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                # No answer: nothing to notify; the watcher retries like the kubelet.
                error = str(_rpc_error("GetInfo", exc))
                await self._record(RegistrationAttempt(socket, "", False, error))
                return False
            try:
                endpoint, service = check_plugin_info(info, socket, self.known_services)
                if any(p.endpoint == endpoint for p in self.plugins.get(info.name, [])):
                    raise ValueError(f"endpoint {endpoint} already registered for {info.name}")
                dra = grpc.aio.insecure_channel(f"unix://{endpoint}")
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        await dra.channel_ready()
                except TimeoutError as exc:
                    await dra.close(None)
                    raise ValueError(f"cannot connect to endpoint {endpoint}") from exc
            except ValueError as exc:
                await self._notify(stub, socket, info.name, False, str(exc))
                return False
            plugin = RegisteredPlugin(
                info.name, endpoint, socket, service, tuple(info.supported_versions), dra
            )
            self.plugins.setdefault(info.name, []).append(plugin)
            await self._notify(stub, socket, info.name, True, "")
            log.info("kubelet stand-in: registered %s at %s using %s", info.name, endpoint, service)
            return True

    async def _notify(self, stub: Any, socket: Path, name: str, ok: bool, error: str) -> None:
        try:
            await stub.NotifyRegistrationStatus(
                reg_pb2.RegistrationStatus(plugin_registered=ok, error=error),
                timeout=NOTIFY_TIMEOUT,
            )
        except grpc.aio.AioRpcError as exc:
            # The upstream helper answers a refusal with an error: not a failure.
            log.info("NotifyRegistrationStatus to %s: %s", socket, exc.details())
        await self._record(RegistrationAttempt(socket, name, ok, error))

    async def _record(self, attempt: RegistrationAttempt) -> None:
        if not attempt.registered:
            log.warning(
                "kubelet stand-in: registration via %s failed: %s", attempt.socket, attempt.error
            )
        self.attempts.append(attempt)
        await self._notify_changed()

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
            raise _rpc_error("NodePrepareResources", exc) from exc
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
            raise _rpc_error("NodeUnprepareResources", exc) from exc
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
