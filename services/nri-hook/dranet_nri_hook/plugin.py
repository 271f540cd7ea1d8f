"""The NRI plugin lifecycle: connect, register, configure, synchronize, events.

One `Session` is one connection to the runtime: the mux with the Plugin
service served on connection 1 and the Runtime service called on
connection 2. `NriPlugin.run` keeps a session alive forever: the runtime
never sends Shutdown, so end of connection means "runtime gone" and we
reconnect with backoff (external plugins) or exit (pre-launched plugins,
whose socket cannot be reopened).

Pod events arrive two ways and are handled identically: the deprecated
StateChange (every runtime up to NRI 0.11) and the dedicated RPCs of NRI
0.12+ (RunPodSandbox, StopPodSandbox, RemovePodSandbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import tenacity
from google.protobuf.message import DecodeError, Message

from dranet.errors import DranetError, PeerError, SettingsError
from dranet.nri import api_pb2
from dranet_nri_hook.mux import PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN, Mux
from dranet_nri_hook.ttrpc import CallContext, Code, Connection, Handler, RpcError

log = logging.getLogger(__name__)

PLUGIN_SERVICE = "nri.pkg.api.v1alpha1.Plugin"
RUNTIME_SERVICE = "nri.pkg.api.v1alpha1.Runtime"
DEFAULT_SOCKET = "/var/run/nri/nri.sock"
# The API revision our .proto matches; old runtimes ignore the field.
NRI_VERSION = "v0.12.2"
SUBSCRIBED = (
    api_pb2.RUN_POD_SANDBOX,
    api_pb2.STOP_POD_SANDBOX,
    api_pb2.REMOVE_POD_SANDBOX,
)
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_INDEX = re.compile(r"[0-9]{2}")
M = TypeVar("M", bound=Message)


def event_mask(events: Iterable[int]) -> int:
    """NRI subscription mask: bit 1 << (event - 1) per event."""
    mask = 0
    for event in events:
        mask |= 1 << (event - 1)
    return mask


def check_identity(name: str, index: str) -> None:
    if not _NAME.fullmatch(name):
        raise SettingsError(
            f"NRI plugin name {name!r} is invalid",
            hint="use letters, digits and _ . + - only",
        )
    if not _INDEX.fullmatch(index):
        raise SettingsError(
            f"NRI plugin index {index!r} is invalid", hint="use exactly two digits, e.g. 00"
        )


class PodEvents(Protocol):
    """What the plugin does on pod events (see handlers.PodHandlers)."""

    async def run_pod_sandbox(self, pod: api_pb2.PodSandbox) -> None: ...

    async def stop_pod_sandbox(self, pod: api_pb2.PodSandbox) -> None: ...

    async def remove_pod_sandbox(self, pod: api_pb2.PodSandbox) -> None: ...

    async def synchronize(
        self, pods: Sequence[api_pb2.PodSandbox], containers: Sequence[api_pb2.Container]
    ) -> None: ...


@dataclass(frozen=True)
class PluginOptions:
    socket_path: str = DEFAULT_SOCKET
    # Pre-launched mode: the runtime's end of a socketpair, inherited as a fd.
    socket_fd: int | None = None
    name: str = "dranet"
    index: str = "00"
    registration_timeout: float = 5.0
    max_backoff: float = 10.0


class PluginService:
    """The Plugin service of one session (split Synchronize state is per session)."""

    def __init__(self, events: PodEvents) -> None:
        self._events = events
        self._sync_pods: list[api_pb2.PodSandbox] = []
        self._sync_containers: list[api_pb2.Container] = []
        self.configured = asyncio.Event()
        self.synchronized = asyncio.Event()

    def handlers(self) -> dict[tuple[str, str], Handler]:
        table: dict[str, Callable[[bytes], Awaitable[Message]]] = {
            "Configure": self._configure,
            "Synchronize": self._synchronize,
            "Shutdown": self._shutdown,
            "StateChange": self._state_change,
            "RunPodSandbox": self._run,
            "StopPodSandbox": self._stop,
            "RemovePodSandbox": self._remove,
        }
        return {(PLUGIN_SERVICE, name): _wrap(name, fn) for name, fn in table.items()}

    async def _configure(self, body: bytes) -> Message:
        req = _parse(api_pb2.ConfigureRequest, body)
        log.info(
            "configured by runtime %s %s (NRI %s, request timeout %d ms)",
            req.runtime_name or "?", req.runtime_version or "?",
            req.NRI_version or "<= 0.11", req.request_timeout or 2000,
        )  # fmt: skip
        self.configured.set()
        return api_pb2.ConfigureResponse(events=event_mask(SUBSCRIBED))

    async def _synchronize(self, body: bytes) -> Message:
        req = _parse(api_pb2.SynchronizeRequest, body)
        self._sync_pods.extend(req.pods)
        self._sync_containers.extend(req.containers)
        if req.more:  # split sync: acknowledge each part, act on the last
            return api_pb2.SynchronizeResponse(more=True)
        pods, containers = self._sync_pods, self._sync_containers
        self._sync_pods, self._sync_containers = [], []
        log.info("synchronizing %d pods, %d containers", len(pods), len(containers))
        await self._events.synchronize(pods, containers)
        self.synchronized.set()
        return api_pb2.SynchronizeResponse()

    async def _shutdown(self, body: bytes) -> Message:
        log.info("runtime asked the plugin to shut down")
        return api_pb2.Empty()

    async def _state_change(self, body: bytes) -> Message:
        req = _parse(api_pb2.StateChangeEvent, body)
        if req.event == api_pb2.RUN_POD_SANDBOX:
            await self._events.run_pod_sandbox(req.pod)
        elif req.event == api_pb2.STOP_POD_SANDBOX:
            await self._events.stop_pod_sandbox(req.pod)
        elif req.event == api_pb2.REMOVE_POD_SANDBOX:
            await self._events.remove_pod_sandbox(req.pod)
        else:
            log.debug("ignoring unsubscribed event %s", api_pb2.Event.Name(req.event))
        return api_pb2.Empty()

    async def _run(self, body: bytes) -> Message:
        await self._events.run_pod_sandbox(_parse(api_pb2.RunPodSandboxRequest, body).pod)
        return api_pb2.RunPodSandboxResponse()

    async def _stop(self, body: bytes) -> Message:
        await self._events.stop_pod_sandbox(_parse(api_pb2.StopPodSandboxRequest, body).pod)
        return api_pb2.StopPodSandboxResponse()

    async def _remove(self, body: bytes) -> Message:
        await self._events.remove_pod_sandbox(_parse(api_pb2.RemovePodSandboxRequest, body).pod)
        return api_pb2.RemovePodSandboxResponse()


def _parse(kind: type[M], body: bytes) -> M:
    msg = kind()
    try:
        msg.ParseFromString(body)
    except DecodeError as exc:
        raise RpcError(Code.INVALID_ARGUMENT, f"malformed {kind.__name__}: {exc}") from exc
    return msg


def _wrap(name: str, fn: Callable[[bytes], Awaitable[Message]]) -> Handler:
    async def handler(body: bytes, ctx: CallContext) -> bytes:
        try:
            return (await fn(body)).SerializeToString()
        except RpcError:
            raise
        except DranetError as exc:
            # Code 2 (Unknown) with our text: the runtime fails the operation
            # and shows the message, as with a Go plugin's error.
            log.error("%s failed: %s", name, exc)
            raise RpcError(Code.UNKNOWN, str(exc)) from exc

    return handler


class Session:
    """One live connection to the runtime."""

    def __init__(self, mux: Mux, server: Connection, client: Connection) -> None:
        self.mux = mux
        self.server = server
        self.client = client

    @classmethod
    async def open(cls, options: PluginOptions, service: PluginService) -> Session:
        if options.socket_fd is not None:
            sock = socket.socket(fileno=options.socket_fd)
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_unix_connection(options.socket_path)
        mux = Mux(reader, writer)
        # Serve connection 1 before saying anything: Configure may arrive
        # before the RegisterPlugin reply.
        server = Connection(mux.open(PLUGIN_SERVICE_CONN), service.handlers(), name="nri-plugin")
        client = Connection(mux.open(RUNTIME_SERVICE_CONN), name="nri-runtime")
        server.start()
        client.start()
        mux.start()
        session = cls(mux, server, client)
        request = api_pb2.RegisterPluginRequest(
            plugin_name=options.name, plugin_idx=options.index, NRI_version=NRI_VERSION
        )
        try:
            await client.call_message(
                RUNTIME_SERVICE, "RegisterPlugin", request, api_pb2.Empty,
                request_timeout=options.registration_timeout,
            )  # fmt: skip
        except BaseException:
            await session.close()
            raise
        log.info("registered with the runtime as %s-%s", options.index, options.name)
        return session

    async def wait_closed(self) -> None:
        await self.mux.closed.wait()

    async def close(self) -> None:
        await self.mux.close()
        await self.server.close()
        await self.client.close()


def _ignore(connected: bool) -> None:
    return None


class NriPlugin:
    """`on_connection(True)` once registered with the runtime, `(False)` when that
    connection ends: readiness and the reconnect metric follow it."""

    def __init__(
        self,
        options: PluginOptions,
        events: PodEvents,
        *,
        on_connection: Callable[[bool], None] = _ignore,
    ) -> None:
        check_identity(options.name, options.index)
        self.options = options
        self._events = events
        self._on_connection = on_connection
        self.sessions = 0  # completed registrations, for status and tests

    @property
    def _where(self) -> str:
        if self.options.socket_fd is not None:
            return f"inherited fd {self.options.socket_fd}"
        return self.options.socket_path

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set; reconnect whenever the runtime goes."""
        while not stop.is_set():
            service = PluginService(self._events)
            session = await self._connect(stop, service)
            if session is None:
                return
            self.sessions += 1
            self._on_connection(True)
            ended = asyncio.create_task(session.wait_closed())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({ended, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (ended, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            reason = session.mux.close_reason or "stopping"
            self._on_connection(False)
            await session.close()
            if stop.is_set():
                return
            if self.options.socket_fd is not None:
                raise PeerError(
                    f"the runtime closed the pre-launched plugin socket ({reason})",
                    hint="the runtime restarts pre-launched plugins itself",
                )
            log.warning("NRI connection to %s ended (%s); reconnecting", self._where, reason)

    async def _connect(self, stop: asyncio.Event, service: PluginService) -> Session | None:
        async def sleep(seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "NRI attempt %d to %s failed: %s; next attempt in %.1fs",
                state.attempt_number, self._where, error, delay,
            )  # fmt: skip

        retrying = tenacity.AsyncRetrying(
            wait=tenacity.wait_exponential(multiplier=0.2, max=self.options.max_backoff),
            retry=tenacity.retry_if_exception_type((OSError, DranetError)),
            # An inherited socket cannot be reopened: one attempt only.
            stop=tenacity.stop_after_attempt(1 if self.options.socket_fd is not None else 10**9),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if stop.is_set():
                    return None
                log.info(
                    "connecting to the NRI runtime at %s (attempt %d)",
                    self._where, attempt.retry_state.attempt_number,
                )  # fmt: skip
                return await Session.open(self.options, service)
        return None
