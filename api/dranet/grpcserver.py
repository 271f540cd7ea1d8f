"""A grpc.aio server on a unix socket, with the standard health service.

    server = UnixServer(
        "/run/dranet/agent/agent.sock",
        adders=[lambda s: agent_pb2_grpc.add_AgentServicer_to_server(servicer, s)],
        interceptors=telemetry.server_interceptors(),
        services=["dranet.agent.v1.Agent"],
    )
    await server.start()
    ...
    await server.stop(grace=5)

Access control is the file system's (see unix(7)): the socket's directory is
created 0750 and the socket chmod-ed 0660, so only the owner and the shared
group can connect. grpcio cannot check SO_PEERCRED, so this is the control.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dranet.errors import PeerError, SettingsError

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

ServicerAdder = Callable[[grpc.aio.Server], None]
if TYPE_CHECKING:  # the stubs make these generic; grpc's runtime classes are not
    ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    ServerInterceptor = grpc.aio.ServerInterceptor


class HealthState(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1.Health with a plain `set(service, serving)`.

    "" is the whole server. Statuses are kept per service; Watch streams push
    every change. Call `set` from the event loop's thread.
    """

    def __init__(self, services: Iterable[str] = ()) -> None:
        self._status: dict[str, int] = {name: NOT_SERVING for name in ("", *services)}
        self._watchers: dict[str, set[asyncio.Queue[int]]] = {}
        self._frozen = False

    def set(self, service: str, serving: bool) -> None:
        if self._frozen:  # shutting down: stay NOT_SERVING whatever a task says
            return
        self._set(service, SERVING if serving else NOT_SERVING)

    def _set(self, service: str, status: int) -> None:
        self._status[service] = status
        for queue in self._watchers.get(service, ()):
            queue.put_nowait(status)

    def set_all(self, serving: bool) -> None:
        for service in list(self._status):
            self.set(service, serving)

    def shutting_down(self) -> None:
        """Every service NOT_SERVING, for good: clients drain before the socket goes."""
        for service in list(self._status):
            self._set(service, NOT_SERVING)
        self._frozen = True

    def status(self, service: str = "") -> int:
        return int(self._status.get(service, SERVICE_UNKNOWN))

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in self._status:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self._status[request.service])

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        response = health_pb2.HealthListResponse()
        for name, status in self._status.items():
            response.statuses[name].status = status
        return response

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        watchers = self._watchers.setdefault(request.service, set())
        watchers.add(queue)
        try:
            last = self.status(request.service)
            yield health_pb2.HealthCheckResponse(status=last)
            while True:
                status = await queue.get()
                if status != last:
                    last = status
                    yield health_pb2.HealthCheckResponse(status=status)
        finally:
            watchers.discard(queue)


def prepare_socket_path(path: Path, dir_mode: int = 0o750, group: int | None = None) -> None:
    """Make `path` ready to bind: its directory exists, no stale socket is left.

    Only the socket's directory, and only if this call creates it, gets
    `dir_mode` (an existing one may be shared, like /tmp: its mode is the
    deployment's); missing parents above it get the umask's usual mode. Only a *socket* nobody
    listens on is removed; anything else at `path` is refused.
    """
    parent = path.parent
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)
        os.chmod(parent, dir_mode)  # mkdir's mode is cut by the umask
        if group is not None:
            os.chown(parent, -1, group)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SettingsError(
            f"cannot listen on {path}: it exists and is not a socket",
            hint="remove it or choose another socket path",
        )
    if _listening(path):
        raise SettingsError(
            f"cannot listen on {path}: another process is serving on it",
            hint="stop the other instance or choose another socket path",
        )
    path.unlink()


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise
        return True


class UnixServer:
    """A grpc.aio server bound to one unix socket, health service included."""

    def __init__(
        self,
        path: Path | str,
        *,
        adders: Sequence[ServicerAdder] = (),
        interceptors: Sequence[ServerInterceptor] = (),
        services: Sequence[str] = (),
        socket_mode: int = 0o660,
        dir_mode: int = 0o750,
        group: int | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.path = Path(path)
        self.health = HealthState(services)
        self._adders = list(adders)
        self._interceptors = list(interceptors)
        self._socket_mode = socket_mode
        self._dir_mode = dir_mode
        self._group = group
        self._options = list(options)
        self._server: grpc.aio.Server | None = None

    async def start(self, *, serving: bool = True) -> None:
        """Bind and serve; with `serving` every service starts SERVING."""
        prepare_socket_path(self.path, self._dir_mode, self._group)
        server = grpc.aio.server(interceptors=self._interceptors, options=self._options)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for add in self._adders:
            add(server)
        try:
            server.add_insecure_port(f"unix:{self.path}")
        except RuntimeError as exc:
            raise PeerError(
                f"cannot bind {self.path}: {exc}",
                hint="check that the directory is writable by this user",
            ) from exc
        # Before start(): no client can connect while the socket still has
        # umask-derived permissions (the 0750 directory closes the rest).
        os.chmod(self.path, self._socket_mode)
        if self._group is not None:
            os.chown(self.path, -1, self._group)
        await server.start()
        self._server = server
        if serving:
            self.health.set_all(True)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Report NOT_SERVING, let calls finish for `grace` seconds, remove the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        self.health.shutting_down()
        await server.stop(grace)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def __aenter__(self) -> UnixServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(0)


# A peer on a local socket that restarts must not cost minutes of grpc's
# default reconnect backoff (up to 120 s): with these, and wait_for_ready on a
# call, a call made while the peer comes back waits for it within its deadline.
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)


def unix_channel(path: Path | str, *, interceptors: Sequence[Any] = ()) -> grpc.aio.Channel:
    """A grpc.aio channel to a unix socket (absolute or relative path), reconnecting fast."""
    return grpc.aio.insecure_channel(
        f"unix:{os.fspath(path)}", options=list(FAST_RECONNECT), interceptors=list(interceptors)
    )
