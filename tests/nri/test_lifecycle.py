"""The plugin lifecycle in-process: NriPlugin + PodHandlers + the fake agent
(real gRPC on a unix socket) against the runtime stand-in (real mux+ttrpc)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from dranet.agent.v1 import agent_pb2, agent_pb2_grpc
from dranet.errors import PeerError
from dranet.grpcserver import unix_channel
from dranet.nri import api_pb2
from dranet_nri_hook.handlers import PodHandlers
from dranet_nri_hook.mux import PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN, Mux
from dranet_nri_hook.plugin import (
    PLUGIN_SERVICE,
    RUNTIME_SERVICE,
    NriPlugin,
    PluginOptions,
    PluginService,
    event_mask,
)
from dranet_nri_hook.ttrpc import CallContext, Connection, Handler, RpcError
from dranet_sandbox.standins.runtime import PluginRejectedError, RuntimeStandIn, make_pod

from .fake_agent import FakeAgent

NETNS = "/var/run/netns/cni-1111"


@dataclass
class Hook:
    plugin: NriPlugin
    handlers: PodHandlers
    task: asyncio.Task[None]
    stop: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def running_hook(sockdir: Path, **options: object) -> AsyncIterator[Hook]:
    channel = unix_channel(sockdir / "agent.sock")
    handlers = PodHandlers(agent_pb2_grpc.NetlinkAgentStub(channel), timeout=0.5)
    opts = PluginOptions(socket_path=str(sockdir / "nri.sock"), max_backoff=0.2, **options)  # type: ignore[arg-type]
    plugin = NriPlugin(opts, handlers)
    stop = asyncio.Event()
    hook = Hook(plugin, handlers, asyncio.create_task(plugin.run(stop)), stop)
    try:
        yield hook
    finally:
        stop.set()
        await asyncio.wait_for(hook.task, 5)
        await channel.close(None)


@contextlib.asynccontextmanager
async def runtime(sockdir: Path, **kwargs: object) -> AsyncIterator[RuntimeStandIn]:
    standin = RuntimeStandIn(sockdir / "nri.sock", **kwargs)  # type: ignore[arg-type]
    await standin.start()
    try:
        yield standin
    finally:
        await standin.stop()


async def raw_plugin(
    sockdir: Path, table: Mapping[tuple[str, str], Handler]
) -> tuple[Mux, Connection]:
    """A hand-made plugin serving `table`; returns its mux and Runtime client."""
    reader, writer = await asyncio.open_unix_connection(str(sockdir / "nri.sock"))
    mux = Mux(reader, writer)
    Connection(mux.open(PLUGIN_SERVICE_CONN), table).start()
    client = Connection(mux.open(RUNTIME_SERVICE_CONN))
    client.start()
    mux.start()
    return mux, client


async def register(client: Connection, name: str, index: str) -> None:
    request = api_pb2.RegisterPluginRequest(plugin_name=name, plugin_idx=index)
    await client.call_message(RUNTIME_SERVICE, "RegisterPlugin", request, api_pb2.Empty)


@pytest.mark.parametrize(("style", "method"), [("old", "StateChange"), ("new", "RunPodSandbox")])
async def test_pod_life_in_both_runtime_styles(
    sockdir: Path, agent: FakeAgent, style: str, method: str
) -> None:
    agent.claims["u1"] = "net1"
    async with runtime(sockdir, style=style) as rt, running_hook(sockdir):
        link = await rt.wait_for_plugin()
        assert (link.name, link.index) == ("dranet", "00")
        assert link.events == 0x7  # RunPodSandbox | StopPodSandbox | RemovePodSandbox
        pod = make_pod("u1", netns=NETNS, namespaces=[("pid", "")])
        outcomes = await rt.run_pod_sandbox(pod)
        assert [(o.method, o.result) for o in outcomes] == [(method, "ok")]
        assert [(c.uid, c.netns) for c in agent.methods("AttachPod")] == [("u1", NETNS)]
        # containerd 1.7 sends no netns on Stop: the hook remembers it.
        bare = make_pod("u1")
        await rt.stop_pod_sandbox(bare)
        await rt.remove_pod_sandbox(bare)
        detaches = [(c.uid, c.netns) for c in agent.methods("DetachPod")]
        assert detaches == [("u1", NETNS), ("u1", NETNS)]
        assert agent.attachments == []


async def test_agent_error_fails_the_sandbox_with_the_agents_message(
    sockdir: Path, agent: FakeAgent
) -> None:
    message = "move eth9 into pod netns: device busy (free the device and retry)"
    agent.errors["u2"] = (grpc.StatusCode.INTERNAL, message)
    async with runtime(sockdir, style="new") as rt, running_hook(sockdir):
        await rt.wait_for_plugin()
        with pytest.raises(PluginRejectedError) as caught:
            await rt.run_pod_sandbox(make_pod("u2", netns=NETNS))
        assert caught.value.plugin_message == message
        assert caught.value.code == 2  # Unknown, as a Go plugin's error
        # ... and the runtime's Stop/Remove after the failure reach the agent.
        assert [c.uid for c in agent.methods("DetachPod")] == ["u2", "u2"]


async def test_host_network_pods(sockdir: Path, agent: FakeAgent) -> None:
    agent.claims["claimed"] = "net1"
    async with runtime(sockdir, style="old") as rt, running_hook(sockdir):
        await rt.wait_for_plugin()
        ok = await rt.run_pod_sandbox(make_pod("plain", name="web"))  # no claims: fine
        assert [o.result for o in ok] == ["ok"]
        with pytest.raises(PluginRejectedError) as caught:
            await rt.run_pod_sandbox(make_pod("claimed", name="db", namespace="prod"))
        text = caught.value.plugin_message
        assert "pod prod/db uses the host network" in text
        assert "netns path is empty" in text  # the agent's reason
        assert "set hostNetwork: false" in text


async def test_synchronize_reconciles_without_dropping_prepared_claims(
    sockdir: Path, agent: FakeAgent
) -> None:
    agent.claims.update({"live": "net1", "waiting": "net2"})
    gone = agent_pb2.PodRef(uid="gone", namespace="default", name="old")
    agent.attachments.append(agent_pb2.Attachment(pod=gone, netns_path="/var/run/netns/x"))
    async with runtime(sockdir, style="old") as rt:
        rt.pods["sb-live"] = make_pod("live", netns=NETNS)
        rt.pods["sb-host"] = make_pod("host")
        async with running_hook(sockdir) as hook:
            await rt.wait_for_plugin()
            assert [(c.uid, c.netns) for c in agent.methods("AttachPod")] == [("live", NETNS)]
            assert [(c.uid, c.netns) for c in agent.methods("DetachPod")] == [
                ("gone", "/var/run/netns/x")
            ]
            # "waiting" has a prepared claim but no sandbox yet: untouched.
            assert "waiting" not in {c.uid for c in agent.calls}
            assert hook.handlers.remembered_netns("live") == NETNS
            await rt.stop_pod_sandbox(make_pod("live"))  # netns known from Synchronize
            assert agent.methods("DetachPod")[-1].netns == NETNS


async def test_new_runtime_falls_back_to_state_change_on_unimplemented(
    sockdir: Path, agent: FakeAgent
) -> None:
    """A plugin without the dedicated RPCs (like an NRI <= 0.11 stub)."""

    @dataclass
    class Recorder:
        seen: list[str] = field(default_factory=list)

        async def run_pod_sandbox(self, pod: api_pb2.PodSandbox) -> None:
            self.seen.append("run " + pod.uid)

        async def stop_pod_sandbox(self, pod: api_pb2.PodSandbox) -> None:
            self.seen.append("stop " + pod.uid)

        async def remove_pod_sandbox(self, pod: api_pb2.PodSandbox) -> None:
            self.seen.append("remove " + pod.uid)

        async def synchronize(
            self, pods: Sequence[api_pb2.PodSandbox], containers: Sequence[api_pb2.Container]
        ) -> None:
            self.seen.append(f"sync {len(pods)}")

    events = Recorder()
    dedicated = {"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"}
    table = {k: v for k, v in PluginService(events).handlers().items() if k[1] not in dedicated}
    async with runtime(sockdir, style="new") as rt:
        mux, client = await raw_plugin(sockdir, table)
        await register(client, "legacy", "10")
        link = await rt.wait_for_plugin()
        first = await rt.run_pod_sandbox(make_pod("a", netns=NETNS))
        second = await rt.stop_pod_sandbox(make_pod("a"))
        assert [(o.method, o.result) for o in first + second] == [
            ("StateChange", "ok"),
            ("StateChange", "ok"),
        ]
        assert link.state_change_only
        assert events.seen == ["sync 0", "run a", "stop a"]
        await mux.close()


async def test_split_synchronize_acknowledges_parts_and_acts_once() -> None:
    calls: list[list[str]] = []

    class Events:
        async def synchronize(self, pods: Sequence[api_pb2.PodSandbox], containers: object) -> None:
            calls.append([p.uid for p in pods])

    service = PluginService(Events())  # type: ignore[arg-type]
    handler = service.handlers()[(PLUGIN_SERVICE, "Synchronize")]
    ctx = CallContext(PLUGIN_SERVICE, "Synchronize", 2.0)
    part = api_pb2.SynchronizeRequest(pods=[make_pod("a")], more=True)
    last = api_pb2.SynchronizeRequest(pods=[make_pod("b")], more=False)
    first_reply = api_pb2.SynchronizeResponse.FromString(
        await handler(part.SerializeToString(), ctx)
    )
    assert first_reply.more and not first_reply.update and calls == []
    final = api_pb2.SynchronizeResponse.FromString(await handler(last.SerializeToString(), ctx))
    assert not final.more
    assert calls == [["a", "b"]]


def test_event_mask() -> None:
    assert event_mask([api_pb2.RUN_POD_SANDBOX]) == 0x1
    assert event_mask([1, 2, 3, 4]) == 0xF  # what kubernetes-sigs/dranet subscribes to
    assert event_mask([api_pb2.VALIDATE_CONTAINER_ADJUSTMENT]) == 0x2000


async def test_hook_answers_inside_a_short_runtime_budget(sockdir: Path, agent: FakeAgent) -> None:
    """The agent deadline shrinks to fit the runtime's timeout_nano: the sandbox
    fails loudly instead of the plugin being dropped and the pod starting bare."""
    agent.claims["slow"] = "net1"
    agent.delay = 1.0
    async with runtime(sockdir, style="new", request_timeout=0.4) as rt, running_hook(sockdir):
        await rt.wait_for_plugin()
        with pytest.raises(PluginRejectedError) as caught:
            await rt.run_pod_sandbox(make_pod("slow", netns=NETNS))
        assert "timed out after 0.3s" in caught.value.plugin_message
        assert len(rt.live_plugins()) == 1


async def test_runtime_drops_a_plugin_that_misses_the_deadline(sockdir: Path) -> None:
    async def sleepy(body: bytes, ctx: CallContext) -> bytes:
        await asyncio.sleep(1.0)
        return b""

    async def configure(body: bytes, ctx: CallContext) -> bytes:
        return api_pb2.ConfigureResponse(events=0x1).SerializeToString()

    async def empty(body: bytes, ctx: CallContext) -> bytes:
        return b""

    table = {
        (PLUGIN_SERVICE, "Configure"): configure,
        (PLUGIN_SERVICE, "Synchronize"): empty,
        (PLUGIN_SERVICE, "RunPodSandbox"): sleepy,
    }
    async with runtime(sockdir, style="new", request_timeout=0.2) as rt:
        mux, client = await raw_plugin(sockdir, table)
        await register(client, "sleepy", "05")
        await rt.wait_for_plugin()
        outcomes = await rt.run_pod_sandbox(make_pod("p", netns=NETNS))
        # The pod proceeds without the plugin, which is disconnected (EOF).
        assert [(o.method, o.result) for o in outcomes] == [("RunPodSandbox", "dropped")]
        assert "no answer within 0.2s" in outcomes[0].message
        await asyncio.wait_for(mux.closed.wait(), 2)
        assert rt.live_plugins() == []
        await mux.close()


async def test_reconnects_after_the_runtime_restarts(sockdir: Path, agent: FakeAgent) -> None:
    async with running_hook(sockdir) as hook:
        await asyncio.sleep(0.3)  # nobody listening yet: attempts fail and are retried
        async with runtime(sockdir, style="old") as rt:
            await rt.wait_for_plugin()
        assert hook.plugin.sessions == 1
        async with runtime(sockdir, style="new") as rt:
            await rt.wait_for_plugin()
            await rt.run_pod_sandbox(make_pod("after", netns=NETNS))
        assert hook.plugin.sessions == 2
        assert agent.methods("AttachPod")[-1].uid == "after"


async def test_pre_launched_plugin_on_an_inherited_socket(sockdir: Path, agent: FakeAgent) -> None:
    ours, theirs = socket.socketpair()
    rt = RuntimeStandIn(sockdir / "unused.sock", style="old")
    await rt.adopt(ours)
    channel = unix_channel(sockdir / "agent.sock")
    handlers = PodHandlers(agent_pb2_grpc.NetlinkAgentStub(channel), timeout=0.5)
    opts = PluginOptions(
        socket_path="/nonexistent", socket_fd=theirs.detach(), name="pre", index="42"
    )
    task = asyncio.create_task(NriPlugin(opts, handlers).run(asyncio.Event()))
    try:
        link = await rt.wait_for_plugin()
        assert link.label == "42-pre"
        await rt.run_pod_sandbox(make_pod("p", netns=NETNS))
        assert [c.uid for c in agent.methods("AttachPod")] == ["p"]
        await rt.stop()
        # The runtime closed the only socket we had: no reconnect, a clear error.
        with pytest.raises(PeerError, match="closed the pre-launched plugin socket"):
            await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
        await channel.close(None)


async def test_runtime_rejects_bad_plugins(sockdir: Path) -> None:
    async def too_new(body: bytes, ctx: CallContext) -> bytes:
        return api_pb2.ConfigureResponse(events=0x800).SerializeToString()  # UPDATE_POD_SANDBOX

    async with runtime(sockdir, style="old", registration_timeout=0.3) as rt:
        # Event bits an old runtime does not know: dropped after Configure.
        mux, client = await raw_plugin(sockdir, {(PLUGIN_SERVICE, "Configure"): too_new})
        await register(client, "greedy", "01")
        await asyncio.wait_for(mux.closed.wait(), 2)
        assert "invalid plugin events: 0x800" in rt.plugins[0].dropped
        # An invalid index is refused with the runtime's message.
        mux2, client2 = await raw_plugin(sockdir, {})
        with pytest.raises(RpcError, match="invalid plugin index"):
            await register(client2, "ok", "1")
        # Silence: no RegisterPlugin within the registration timeout.
        mux3, _ = await raw_plugin(sockdir, {})
        await asyncio.wait_for(mux3.closed.wait(), 2)
        assert rt.live_plugins() == []
        for m in (mux, mux2, mux3):
            await m.close()
