"""The NRI hook process against a real containerd 1.7 with NRI (NRI 0.6.1, StateChange).

The hook runs from its console script, connected to containerd's NRI socket
and to a fake agent (tests/nri/fake_agent.py) on a unix socket in this
process; the test plays the kubelet over CRI. One containerd per module.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from dranet_sandbox.containerd import Containerd
from dranet_sandbox.cri import CriClient, PodSpec

if TYPE_CHECKING:  # mypy names test modules from the repository root
    from tests.nri.fake_agent import FakeAgent, serve_fake_agent
else:  # pytest puts tests/ on sys.path (rootdir conftest): tests/nri is the package `nri`
    from nri.fake_agent import FakeAgent, serve_fake_agent

pytestmark = [pytest.mark.root, pytest.mark.runtime]

HOOK = Path(sys.executable).parent / "dranet-nri-hook"
PLUGIN = "00-dranet"


async def wait_until(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """Polls a condition read from a log file (nothing there to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class HookProcess:
    proc: asyncio.subprocess.Process
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def logged(self, needle: str) -> bool:
        if self.proc.returncode is not None:
            raise AssertionError(f"the hook exited early:\n{self.text()}")
        return needle in self.text()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 10)


@dataclass
class Node:
    containerd: Containerd
    agent: FakeAgent
    sockdir: Path
    cri: CriClient
    hooks: int = 0

    def containerd_log(self) -> str:
        # logrus quotes msg="..." and escapes the quotes inside it: unescape them.
        return self.containerd.log.read_text(errors="replace").replace('\\"', '"')

    async def start_hook(self) -> HookProcess:
        """Starts the hook and waits until it registered and synchronized."""
        self.hooks += 1
        log = self.sockdir / f"hook{self.hooks}.log"
        syncs = len(self.agent.methods("ListAttachments"))
        joined = f'plugin "{PLUGIN}" connected'
        connected = self.containerd_log().count(joined)
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                str(HOOK),
                "--nri-socket", str(self.containerd.nri_socket),
                "--agent-socket", str(self.sockdir / "agent.sock"),
                "--health-socket", str(self.sockdir / "hook-health.sock"),
                "--max-backoff", "0.3",
                "--log-level", "debug",
                stdout=out, stderr=out,
            )  # fmt: skip
        hook = HookProcess(proc, log)
        try:
            registered = f"registered with the runtime as {PLUGIN}"
            await wait_until(lambda: hook.logged(registered), f"hook log: {registered}")
            # Synchronize reconciles with the agent: ListAttachments shows it arrived.
            await self.agent.wait_for("ListAttachments", syncs + 1)
            # containerd adds the plugin to its event list after Synchronize returns.
            await wait_until(
                lambda: self.containerd_log().count(joined) > connected,
                f"containerd log: {joined}",
            )
        except BaseException:
            await hook.stop()
            raise
        return hook


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="nri-rt-", dir="/tmp"))  # short unix socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def node(containerd: Containerd, sockdir: Path) -> AsyncIterator[Node]:
    agent = FakeAgent()
    server = await serve_fake_agent(agent, str(sockdir / "agent.sock"))
    try:
        logs = containerd.base / "logs"
        async with CriClient(containerd.cri_socket, logs, wait_for_ready=True) as cri:
            try:
                yield Node(containerd, agent, sockdir, cri)
            finally:
                await cri.remove_all()  # the next test's Synchronize starts empty
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def running_hook(node: Node) -> AsyncIterator[HookProcess]:
    hook = await node.start_hook()
    try:
        yield hook
    finally:
        code = await hook.stop()
    assert code == 0, hook.text()


def spec(name: str, *, host_network: bool = False) -> PodSpec:
    return PodSpec(name, "team-" + name, str(uuid.uuid4()), host_network=host_network)


async def test_hook_registers_with_containerd(node: Node) -> None:
    async with running_hook(node) as hook:
        assert "configured by runtime containerd 1.7." in hook.text()
        log = node.containerd_log()
        # containerd names the external plugin by the process that connected.
        assert f'plugin "external:{PLUGIN}[{hook.proc.pid}]" registered as "{PLUGIN}"' in log
        assert f"synchronizing plugin {PLUGIN}" in log
        assert "synchronizing 0 pods" in hook.text()


async def test_pod_lifecycle_attaches_and_detaches_with_the_real_netns(node: Node) -> None:
    pod = spec("web")
    node.agent.claims[pod.uid] = "net1"
    async with running_hook(node):
        pod_id = await node.cri.run_pod(pod)
        netns = await node.cri.netns_path(pod_id)
        assert netns.startswith("/var/run/netns/cni-"), netns
        assert await asyncio.to_thread(os.path.exists, netns)
        attaches = node.agent.methods("AttachPod")
        assert [(c.uid, c.netns) for c in attaches] == [(pod.uid, netns)]
        assert [(a.pod.namespace, a.pod.name) for a in node.agent.attachments] == [
            (pod.namespace, pod.name)
        ]
        await node.cri.stop_pod(pod_id)  # containerd 1.7 sends no netns: the hook remembers it
        assert [(c.uid, c.netns) for c in node.agent.methods("DetachPod")] == [(pod.uid, netns)]
        await node.cri.remove_pod(pod_id)
        assert [(c.uid, c.netns) for c in node.agent.methods("DetachPod")] == [
            (pod.uid, netns),
            (pod.uid, netns),
        ]
        assert node.agent.attachments == []


async def test_agent_error_fails_run_pod_sandbox_and_tears_it_down(node: Node) -> None:
    pod = spec("broken")
    message = "claim c1: device eth9 is gone"
    node.agent.claims[pod.uid] = "net1"
    node.agent.errors[pod.uid] = (grpc.StatusCode.FAILED_PRECONDITION, message)
    async with running_hook(node):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await node.cri.run_pod(pod)
        assert str(caught.value.details()).endswith(
            f"NRI RunPodSandbox failed: rpc error: code = Unknown desc = {message}"
        )
        [attach] = node.agent.methods("AttachPod")
        # containerd sent Stop and Remove for the failed sandbox; the hook detached.
        await node.agent.wait_for("DetachPod", 2)
        assert [(c.uid, c.netns) for c in node.agent.methods("DetachPod")] == [
            (pod.uid, attach.netns),
            (pod.uid, attach.netns),
        ]
        assert [p for p in await node.cri.list_pods() if p.metadata.uid == pod.uid] == []
        assert not await asyncio.to_thread(os.path.exists, attach.netns)


async def test_host_network_pods(node: Node) -> None:
    claimed, plain = spec("claimed", host_network=True), spec("plain", host_network=True)
    node.agent.claims[claimed.uid] = "net1"
    async with running_hook(node):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await node.cri.run_pod(claimed)
        text = str(caught.value.details())
        assert f"pod {claimed.namespace}/{claimed.name} uses the host network" in text
        assert "netns path is empty" in text  # the agent's reason
        assert "set hostNetwork: false" in text
        pod_id = await node.cri.run_pod(plain)
        assert [p.id for p in await node.cri.list_pods()] == [pod_id]
        assert [(c.uid, c.netns) for c in node.agent.methods("AttachPod")] == [
            (claimed.uid, ""),
            (plain.uid, ""),
        ]


async def test_restarted_hook_reconciles_the_running_pod(node: Node) -> None:
    pod = spec("survivor")
    node.agent.claims[pod.uid] = "net1"
    async with running_hook(node):
        pod_id = await node.cri.run_pod(pod)
    netns = await node.cri.netns_path(pod_id)
    assert [(c.uid, c.netns) for c in node.agent.methods("AttachPod")] == [(pod.uid, netns)]
    before = list(node.agent.attachments)
    async with running_hook(node) as hook:
        assert "synchronizing 1 pods" in hook.text()
        # Synchronize carried the running pod: attached again, idempotently.
        assert [(c.uid, c.netns) for c in node.agent.methods("AttachPod")] == [
            (pod.uid, netns),
            (pod.uid, netns),
        ]
        assert node.agent.attachments == before
        # The netns path learnt from Synchronize serves the Stop without one.
        await node.cri.stop_pod(pod_id)
        assert [(c.uid, c.netns) for c in node.agent.methods("DetachPod")] == [(pod.uid, netns)]


async def test_removing_a_replaced_sandbox_leaves_the_new_one_attached(node: Node) -> None:
    """The kubelet stops a pod's sandbox, runs a new attempt, and removes the old
    sandbox later: that Remove (no netns in 1.7) must not detach the new one."""
    first = spec("replaced")
    second = dataclasses.replace(first, attempt=1)
    node.agent.claims[first.uid] = "net1"
    async with running_hook(node):
        old_id = await node.cri.run_pod(first)
        old_netns = await node.cri.netns_path(old_id)
        await node.cri.stop_pod(old_id)
        new_id = await node.cri.run_pod(second)
        new_netns = await node.cri.netns_path(new_id)
        assert new_netns != old_netns
        await node.cri.remove_pod(old_id)
        assert [(c.uid, c.netns) for c in node.agent.methods("DetachPod")] == [
            (first.uid, old_netns)
        ]
        assert [a.netns_path for a in node.agent.attachments] == [new_netns]
        await node.cri.stop_pod(new_id)
        assert [c.netns for c in node.agent.methods("DetachPod")] == [old_netns, new_netns]


async def test_hook_reconnects_when_containerd_restarts(node: Node) -> None:
    # A pod whose NRI messages exceed one 4096-byte mux frame: containerd's Go
    # writer splits them, the hook reassembles.
    blob = {"example.com/blob": "x" * 10_000}
    survivor = dataclasses.replace(spec("survivor"), annotations=blob)
    newcomer = dataclasses.replace(spec("newcomer"), annotations=blob)
    node.agent.claims.update({survivor.uid: "net1", newcomer.uid: "net2"})
    async with running_hook(node) as hook:
        survivor_id = await node.cri.run_pod(survivor)
        survivor_netns = await node.cri.netns_path(survivor_id)
        await asyncio.to_thread(node.containerd.restart)  # the pod keeps running
        again = f"registered with the runtime as {PLUGIN}"
        await wait_until(lambda: hook.text().count(again) >= 2, "the hook to register again")
        assert "reconnecting" in hook.text()
        # The new connection's Synchronize carried the running pod: attached again.
        await node.agent.wait_for("AttachPod", 2)
        assert {(c.uid, c.netns) for c in node.agent.methods("AttachPod")} == {
            (survivor.uid, survivor_netns)
        }
        await wait_until(
            lambda: node.containerd_log().count(f'plugin "{PLUGIN}" connected') >= 2,
            "containerd to add the plugin again",
        )
        # (containerd forgets, on restart, which pods it told NRI about: the
        # survivor's Stop and Remove will reach no plugin. Not checked here.)
        new_id = await node.cri.run_pod(newcomer)
        new_netns = await node.cri.netns_path(new_id)
        await node.cri.stop_pod(new_id)
        await node.cri.remove_pod(new_id)
        assert [c.netns for c in node.agent.methods("AttachPod") if c.uid == newcomer.uid] == [
            new_netns
        ]
        assert [(c.uid, c.netns) for c in node.agent.methods("DetachPod")] == [
            (newcomer.uid, new_netns),
            (newcomer.uid, new_netns),
        ]


async def test_slow_agent_fails_the_sandbox_inside_the_runtime_budget(node: Node) -> None:
    slow, later = spec("slow"), spec("later")
    node.agent.claims.update({slow.uid: "net1", later.uid: "net2"})
    node.agent.delay = 3.0
    async with running_hook(node) as hook:
        mark = len(node.containerd_log())
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await node.cri.run_pod(slow)
        # Answered before containerd's 2 s request timeout, which would drop the
        # plugin and start the pod without its devices.
        assert loop.time() - started < 2.5
        text = str(caught.value.details())
        assert f"AttachPod for pod {slow.namespace}/{slow.name} timed out after 1.5s" in text
        node.agent.delay = 0.0
        await node.cri.run_pod(later)
        assert [c.uid for c in node.agent.methods("AttachPod")] == [slow.uid, later.uid]
        assert "closing plugin" not in node.containerd_log()[mark:]
        assert hook.text().count(f"registered with the runtime as {PLUGIN}") == 1


async def test_pod_gone_while_the_hook_was_down_is_detached_at_synchronize(node: Node) -> None:
    gone, kept = spec("gone"), spec("kept")
    node.agent.claims.update({gone.uid: "net1", kept.uid: "net2"})
    async with running_hook(node):
        gone_id = await node.cri.run_pod(gone)
        gone_netns = await node.cri.netns_path(gone_id)
        await node.cri.run_pod(kept)
    await node.cri.stop_pod(gone_id)  # no plugin hears of it
    await node.cri.remove_pod(gone_id)
    assert node.agent.methods("DetachPod") == []
    async with running_hook(node) as hook:
        assert "synchronizing 1 pods" in hook.text()
        # The agent's attachment for the vanished pod is given back.
        assert [(c.uid, c.netns) for c in node.agent.methods("DetachPod")] == [
            (gone.uid, gone_netns)
        ]
        assert [a.pod.uid for a in node.agent.attachments] == [kept.uid]
