"""The kubelet's plugin watcher and registration handshake.

`PluginWatcher` watches `<root>/plugins_registry` (recursively, dot-files
ignored) for unix sockets; a new or re-created socket is registered, a
removed one deregistered (the kubelet uses inotify; polling is enough here).
Registration: `GetInfo` with a 1 s deadline, the checks of `checks`, a
connection to the endpoint, then `NotifyRegistrationStatus` (true, or false
with the error). Failures are retried with exponential backoff while the
socket stays the same. Every attempt is kept in `attempts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import grpc

from dranet.kubelet.pluginregistration.v1 import api_pb2 as reg_pb2
from dranet.kubelet.pluginregistration.v1 import api_pb2_grpc as reg_grpc
from dranet_sandbox.standins.kubelet.checks import KNOWN_SERVICES, check_plugin_info, rpc_error

log = logging.getLogger(__name__)

GET_INFO_TIMEOUT = 1.0
NOTIFY_TIMEOUT = 5.0
CONNECT_TIMEOUT = 10.0


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


class PluginWatcher:
    """The kubelet's plugin manager: registers the DRA plugins whose sockets appear."""

    def __init__(
        self,
        root_dir: Path,
        *,
        known_services: Sequence[str] = KNOWN_SERVICES,
        poll_interval: float = 0.05,
        backoff: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        self.root_dir = Path(root_dir)
        self.registry_dir = self.root_dir / "plugins_registry"
        self.known_services = tuple(known_services)
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

    async def __aenter__(self) -> Self:
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
                error = str(rpc_error("GetInfo", exc))
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
