"""A stand-in NRI runtime: the runtime side of NRI's mux and ttrpc.

It behaves like containerd's NRI adaptation for the paths no packaged
runtime here exercises:

* style "old" (NRI <= 0.11, e.g. containerd 1.7): pod events only through
  StateChange, valid event bits 0x7FF, no timeouts in ConfigureRequest;
* style "new" (NRI >= 0.12): dedicated RPCs (RunPodSandbox, ...), valid bits
  0x3FFF, and a permanent switch to StateChange for a plugin that answers
  Unimplemented (code 12).

A plugin that misses the request deadline, or whose connection breaks, is
dropped and the operation proceeds without it; a plugin that answers an
error fails RunPodSandbox (after which, like containerd, the runtime sends
StopPodSandbox and RemovePodSandbox), while Stop/Remove errors are only
logged. Frames go out the way Go writes them (`framing` may be swapped to
test a plugin's reassembly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import Message

from dranet.errors import PeerError
from dranet.nri import api_pb2
from dranet_nri_hook.mux import PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN, Framing, Mux, go_frames
from dranet_nri_hook.ttrpc import (
    CallContext,
    CallTimeout,
    Code,
    Connection,
    ConnectionClosed,
    RpcError,
)

log = logging.getLogger(__name__)

PLUGIN = "nri.pkg.api.v1alpha1.Plugin"
RUNTIME = "nri.pkg.api.v1alpha1.Runtime"
VALID_EVENTS = {"old": 0x7FF, "new": 0x3FFF}
_DEDICATED: dict[int, tuple[str, type[Message]]] = {
    api_pb2.RUN_POD_SANDBOX: ("RunPodSandbox", api_pb2.RunPodSandboxRequest),
    api_pb2.STOP_POD_SANDBOX: ("StopPodSandbox", api_pb2.StopPodSandboxRequest),
    api_pb2.REMOVE_POD_SANDBOX: ("RemovePodSandbox", api_pb2.RemovePodSandboxRequest),
}
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_INDEX = re.compile(r"[0-9]{2}")


class PluginRejectedError(PeerError):
    """A plugin answered an error: the CRI operation fails with its message."""

    def __init__(self, plugin: str, method: str, code: Code, message: str) -> None:
        super().__init__(f"NRI {method} failed: plugin {plugin}: {message}")
        self.plugin = plugin
        self.method = method
        self.code = code
        self.plugin_message = message


@dataclass(frozen=True)
class Outcome:
    """What happened to one event at one plugin."""

    plugin: str
    method: str  # RunPodSandbox, StateChange, ...
    result: str  # ok | error | dropped
    message: str = ""


@dataclass
class PluginLink:
    """One connected plugin."""

    mux: Mux
    client: Connection
    server: Connection
    name: str = ""
    index: str = ""
    events: int = 0
    state_change_only: bool = False
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: str = ""

    @property
    def label(self) -> str:
        return f"{self.index}-{self.name}"

    @property
    def alive(self) -> bool:
        return self.ready.is_set() and not self.dropped and not self.mux.closed.is_set()


class RuntimeStandIn:
    def __init__(
        self,
        socket_path: Path | str,
        *,
        style: str = "new",
        request_timeout: float = 2.0,
        registration_timeout: float = 5.0,
        runtime_name: str = "dranet-standin",
        runtime_version: str = "v0.0.1",
        framing: Framing = go_frames,
    ) -> None:
        if style not in VALID_EVENTS:
            raise ValueError(f"runtime style {style!r}: use 'old' or 'new'")
        self.socket_path = Path(socket_path)
        self.style = style
        self.request_timeout = request_timeout
        self.registration_timeout = registration_timeout
        self.runtime_name = runtime_name
        self.runtime_version = runtime_version
        self.framing = framing
        self.pods: dict[str, api_pb2.PodSandbox] = {}  # by sandbox id, for Synchronize
        self.plugins: list[PluginLink] = []
        self.outcomes: list[Outcome] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.socket_path))

    async def adopt(self, sock: socket.socket) -> None:
        """Serve a pre-launched plugin on our end of its socketpair."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        task = asyncio.create_task(self._setup(Mux(reader, writer, framing=self.framing)))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def stop(self) -> None:
        """Stop listening and close every plugin connection (plugins see EOF)."""
        if self._server is not None:
            self._server.close()
        for link in self.plugins:
            await self._close(link, "runtime stopped")
        for task in list(self._handlers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def wait_for_plugin(self, timeout: float = 10.0, *, count: int = 1) -> PluginLink:
        """The `count`-th plugin to be registered, configured and synchronized."""

        def ready() -> bool:
            return sum(1 for p in self.plugins if p.ready.is_set()) >= count

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(ready)
        return [p for p in self.plugins if p.ready.is_set()][count - 1]

    def live_plugins(self) -> list[PluginLink]:
        return sorted((p for p in self.plugins if p.alive), key=lambda p: p.index)

    # ---- pod operations, as the CRI layer drives them ----

    async def run_pod_sandbox(self, pod: api_pb2.PodSandbox) -> list[Outcome]:
        self.pods[pod.id] = pod
        try:
            return await self._deliver(api_pb2.RUN_POD_SANDBOX, pod, fail=True)
        except PluginRejectedError:
            # containerd tears the half-made sandbox down through NRI too.
            await self._deliver(api_pb2.STOP_POD_SANDBOX, pod, fail=False)
            await self._deliver(api_pb2.REMOVE_POD_SANDBOX, pod, fail=False)
            self.pods.pop(pod.id, None)
            raise

    async def stop_pod_sandbox(self, pod: api_pb2.PodSandbox) -> list[Outcome]:
        return await self._deliver(api_pb2.STOP_POD_SANDBOX, pod, fail=False)

    async def remove_pod_sandbox(self, pod: api_pb2.PodSandbox) -> list[Outcome]:
        self.pods.pop(pod.id, None)
        return await self._deliver(api_pb2.REMOVE_POD_SANDBOX, pod, fail=False)

    async def _deliver(self, event: int, pod: api_pb2.PodSandbox, *, fail: bool) -> list[Outcome]:
        outcomes = []
        for link in self.live_plugins():
            if link.events & (1 << (event - 1)):
                outcome = await self._call_event(link, event, pod, fail=fail)
                outcomes.append(outcome)
                self.outcomes.append(outcome)
        return outcomes

    async def _call_event(
        self, link: PluginLink, event: int, pod: api_pb2.PodSandbox, *, fail: bool
    ) -> Outcome:
        method = "StateChange"
        try:
            if self.style == "new" and not link.state_change_only:
                method, kind = _DEDICATED[event]
                try:
                    await link.client.call(
                        PLUGIN, method, kind(pod=pod).SerializeToString(),
                        request_timeout=self.request_timeout,
                    )  # fmt: skip
                    return Outcome(link.label, method, "ok")
                except RpcError as err:
                    if err.code != Code.UNIMPLEMENTED or isinstance(err, CallTimeout):
                        raise
                    log.warning("plugin %s uses the deprecated StateChange", link.label)
                    link.state_change_only = True
                    method = "StateChange"
            change = api_pb2.StateChangeEvent(event=event, pod=pod)  # type: ignore[arg-type]
            await link.client.call(
                PLUGIN, "StateChange", change.SerializeToString(),
                request_timeout=self.request_timeout,
            )  # fmt: skip
            return Outcome(link.label, method, "ok")
        except (CallTimeout, ConnectionClosed) as err:
            # Fatal for the plugin, not for the pod: drop it and carry on.
            await self._close(link, f"failed to handle event {event}: {err}")
            return Outcome(link.label, method, "dropped", str(err))
        except RpcError as err:
            if fail:
                raise PluginRejectedError(link.label, method, err.code, str(err)) from err
            log.warning("NRI %s notification to %s failed: %s", method, link.label, err)
            return Outcome(link.label, method, "error", str(err))

    # ---- connection set-up ----

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._setup(Mux(reader, writer, framing=self.framing, name="runtime-mux"))
        finally:
            self._handlers.discard(task)

    async def _setup(self, mux: Mux) -> None:
        holder: list[PluginLink] = []

        async def register(body: bytes, ctx: CallContext) -> bytes:
            return await self._register(holder[0], body)

        runtime_service = {
            (RUNTIME, "RegisterPlugin"): register,
            (RUNTIME, "UpdateContainers"): _no_updates,
        }
        link = PluginLink(
            mux=mux,
            client=Connection(mux.open(PLUGIN_SERVICE_CONN), name="runtime-plugin-client"),
            server=Connection(mux.open(RUNTIME_SERVICE_CONN), runtime_service, name="runtime"),
        )
        holder.append(link)
        self.plugins.append(link)
        # Serve the Runtime service before reading anything (WithBlockedRead).
        link.server.start()
        link.client.start()
        mux.start()
        try:
            async with asyncio.timeout(self.registration_timeout):
                await link.registered.wait()
            await self._configure(link)
            await self._synchronize(link)
        except (TimeoutError, RpcError, PeerError) as err:
            await self._close(link, f"set-up failed: {err}")
            return
        link.ready.set()
        async with self._changed:
            self._changed.notify_all()
        log.info("plugin %s ready (events %#x)", link.label, link.events)

    async def _register(self, link: PluginLink, body: bytes) -> bytes:
        req = api_pb2.RegisterPluginRequest.FromString(body)
        if not _INDEX.fullmatch(req.plugin_idx):
            raise RpcError(Code.UNKNOWN, f"invalid plugin index: {req.plugin_idx!r}")
        if not _NAME.fullmatch(req.plugin_name):
            raise RpcError(Code.UNKNOWN, f"invalid plugin name: {req.plugin_name!r}")
        link.name, link.index = req.plugin_name, req.plugin_idx
        link.registered.set()  # before replying, as the Go runtime does
        return b""

    async def _configure(self, link: PluginLink) -> None:
        req = api_pb2.ConfigureRequest(
            runtime_name=self.runtime_name, runtime_version=self.runtime_version
        )
        if self.style == "new":
            req.registration_timeout = int(self.registration_timeout * 1000)
            req.request_timeout = int(self.request_timeout * 1000)
            req.NRI_version = "v0.12.2"
        reply = await link.client.call_message(
            PLUGIN, "Configure", req, api_pb2.ConfigureResponse,
            request_timeout=self.request_timeout,
        )  # fmt: skip
        valid = VALID_EVENTS[self.style]
        events = reply.events or valid
        if events & ~valid:
            raise PeerError(f"invalid plugin events: {events:#x}")
        link.events = events

    async def _synchronize(self, link: PluginLink) -> None:
        req = api_pb2.SynchronizeRequest(pods=list(self.pods.values()))
        await link.client.call_message(
            PLUGIN, "Synchronize", req, api_pb2.SynchronizeResponse,
            request_timeout=self.request_timeout,
        )  # fmt: skip

    async def _close(self, link: PluginLink, reason: str) -> None:
        if not link.dropped:
            link.dropped = reason
            log.warning("closing plugin %s: %s", link.label, reason)
        await link.mux.close()
        await link.client.close()
        await link.server.close()
        async with self._changed:
            self._changed.notify_all()


async def _no_updates(body: bytes, ctx: CallContext) -> bytes:
    return api_pb2.UpdateContainersResponse().SerializeToString()


def make_pod(
    uid: str,
    *,
    name: str = "",
    namespace: str = "default",
    netns: str | None = None,
    sandbox_id: str = "",
    namespaces: Sequence[tuple[str, str]] = (),
) -> api_pb2.PodSandbox:
    """A PodSandbox as containerd fills it; netns=None means host network."""
    pod = api_pb2.PodSandbox(
        id=sandbox_id or f"sb-{uid}", uid=uid, name=name or f"pod-{uid}", namespace=namespace
    )
    for kind, path in namespaces:
        pod.linux.namespaces.add(type=kind, path=path)
    if netns is not None:
        pod.linux.namespaces.add(type="network", path=netns)
    return pod
