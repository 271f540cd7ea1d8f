"""The hook as a real process, started from its console script with flags,
against the runtime stand-in and the fake agent (both in this test)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from dranet_nri_hook.mux import encode_mux_frame
from dranet_sandbox.standins.runtime import PluginRejectedError, RuntimeStandIn, make_pod

from .fake_agent import FakeAgent, serve_fake_agent

HOOK = Path(sys.executable).parent / "dranet-nri-hook"
NETNS = "/var/run/netns/cni-2222"


@contextlib.asynccontextmanager
async def hook_process(sockdir: Path, *flags: str) -> AsyncIterator[Path]:
    """Yields the log file; the process must stop cleanly on SIGTERM."""
    log = sockdir / "hook.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(HOOK),
            "--nri-socket", str(sockdir / "nri.sock"),
            "--agent-socket", str(sockdir / "agent.sock"),
            "--health-socket", str(sockdir / "hook-health.sock"),
            "--max-backoff", "0.3",
            "--log-level", "debug",
            *flags,
            stdout=out,
            stderr=out,
        )  # fmt: skip
        try:
            yield log
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 10)
    assert code == 0, log.read_text()


@contextlib.asynccontextmanager
async def runtime(sockdir: Path, **kwargs: object) -> AsyncIterator[RuntimeStandIn]:
    standin = RuntimeStandIn(sockdir / "nri.sock", **kwargs)  # type: ignore[arg-type]
    await standin.start()
    try:
        yield standin
    finally:
        await standin.stop()


@pytest.mark.parametrize(("style", "method"), [("old", "StateChange"), ("new", "RunPodSandbox")])
async def test_lifecycle_in_both_runtime_styles(
    sockdir: Path, agent: FakeAgent, style: str, method: str
) -> None:
    agent.claims["p1"] = "net1"
    async with runtime(sockdir, style=style) as rt:
        rt.pods["sb-early"] = make_pod("early", netns="/var/run/netns/cni-early")
        async with hook_process(sockdir, "--plugin-name", "dranet-test", "--plugin-index", "07"):
            link = await rt.wait_for_plugin(timeout=20)
            assert (link.label, link.events) == ("07-dranet-test", 0x7)
            # Synchronize reached the agent for the pod that already ran.
            assert [c.uid for c in agent.methods("AttachPod")] == ["early"]
            outcomes = await rt.run_pod_sandbox(make_pod("p1", netns=NETNS))
            assert [(o.method, o.result) for o in outcomes] == [(method, "ok")]
            assert (agent.methods("AttachPod")[-1].uid, agent.methods("AttachPod")[-1].netns) == (
                "p1", NETNS,
            )  # fmt: skip
            await rt.stop_pod_sandbox(make_pod("p1"))  # no netns, as containerd 1.7
            await rt.remove_pod_sandbox(make_pod("p1"))
            assert [(c.uid, c.netns) for c in agent.methods("DetachPod")] == [
                ("p1", NETNS),
                ("p1", NETNS),
            ]


async def test_reconnects_after_the_runtime_restarts(sockdir: Path, agent: FakeAgent) -> None:
    async with hook_process(sockdir) as log:
        await asyncio.sleep(0.5)  # no runtime yet: attempts fail, are logged, retried
        async with runtime(sockdir, style="old") as rt:
            await rt.wait_for_plugin(timeout=20)
        async with runtime(sockdir, style="new") as rt:
            await rt.wait_for_plugin(timeout=20)
            outcomes = await rt.run_pod_sandbox(make_pod("again", netns=NETNS))
            assert [o.result for o in outcomes] == ["ok"]
        text = log.read_text()
        assert "attempt 1 to" in text and "failed" in text
        assert "reconnecting" in text
        assert text.count("registered with the runtime") == 2


async def test_slow_agent_fails_the_sandbox_with_a_clear_timeout(
    sockdir: Path, agent: FakeAgent
) -> None:
    agent.claims["slow"] = "net1"
    agent.delay = 1.5
    async with (
        runtime(sockdir, style="new", request_timeout=2.0) as rt,
        hook_process(sockdir, "--agent-timeout", "0.5"),
    ):
        await rt.wait_for_plugin(timeout=20)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PluginRejectedError) as caught:
            await rt.run_pod_sandbox(make_pod("slow", name="db", netns=NETNS))
        assert loop.time() - started < 2.0  # inside the runtime's budget: not dropped
        text = caught.value.plugin_message
        assert "AttachPod for pod default/db timed out after 0.5s" in text
        assert "netlink agent is slow, stuck or not running" in text
        # The plugin was not disconnected: it is still the only, live plugin.
        assert [p.label for p in rt.live_plugins()] == ["00-dranet"]


async def test_agent_message_reaches_the_runtime(sockdir: Path, agent: FakeAgent) -> None:
    agent.errors["bad"] = (grpc.StatusCode.FAILED_PRECONDITION, "claim c1: device eth3 is gone")
    async with runtime(sockdir, style="old") as rt, hook_process(sockdir):
        await rt.wait_for_plugin(timeout=20)
        with pytest.raises(PluginRejectedError) as caught:
            await rt.run_pod_sandbox(make_pod("bad", netns=NETNS))
        assert caught.value.plugin_message == "claim c1: device eth3 is gone"


async def test_reassembles_runtime_frames_cut_anywhere(sockdir: Path, agent: FakeAgent) -> None:
    def tiny_frames(conn_id: int, message: bytes) -> list[bytes]:
        return [encode_mux_frame(conn_id, message[i : i + 3]) for i in range(0, len(message), 3)]

    agent.claims["big"] = "net1"
    big = make_pod("big", netns=NETNS)
    big.annotations["blob"] = "x" * 20_000  # a Synchronize far beyond 4096 bytes
    async with runtime(sockdir, style="old", framing=tiny_frames) as rt:
        rt.pods[big.id] = big
        async with hook_process(sockdir):
            await rt.wait_for_plugin(timeout=20)
            assert [(c.uid, c.netns) for c in agent.methods("AttachPod")] == [("big", NETNS)]
            outcomes = await rt.run_pod_sandbox(make_pod("big", netns=NETNS))
            assert [o.result for o in outcomes] == ["ok"]


async def test_agent_starting_late_or_restarting_is_found_quickly(sockdir: Path) -> None:
    fake = FakeAgent(claims={"p": "net1"})
    async with runtime(sockdir, style="new") as rt, hook_process(sockdir):
        await rt.wait_for_plugin(timeout=20)  # Synchronize found no agent: logged only
        await asyncio.sleep(1.0)  # the hook's channel has been failing for a while
        server = await serve_fake_agent(fake, str(sockdir / "agent.sock"))
        try:
            outcomes = await rt.run_pod_sandbox(make_pod("p", netns=NETNS))
            assert [o.result for o in outcomes] == ["ok"]
        finally:
            await server.stop(None)
        # The agent restarts (new process, same socket) while pods keep coming.
        fake2 = FakeAgent(claims={"q": "net2"})
        server = await serve_fake_agent(fake2, str(sockdir / "agent.sock"))
        try:
            outcomes = await rt.run_pod_sandbox(make_pod("q", netns=NETNS))
            assert [o.result for o in outcomes] == ["ok"]
            assert [c.uid for c in fake2.methods("AttachPod")] == ["q"]
        finally:
            await server.stop(None)


async def test_pre_launched_process_on_an_inherited_fd(sockdir: Path, agent: FakeAgent) -> None:
    """As a runtime launches it: the socket as an inherited fd, named by NRI_* variables."""
    ours, theirs = socket.socketpair()
    rt = RuntimeStandIn(sockdir / "unused.sock", style="old")
    await rt.adopt(ours)
    env = {
        "NRI_PLUGIN_NAME": "dranet",
        "NRI_PLUGIN_IDX": "10",
        "NRI_PLUGIN_SOCKET": str(theirs.fileno()),
        "DRANET_AGENT_SOCKET": str(sockdir / "agent.sock"),
        "DRANET_HEALTH_SOCKET": str(sockdir / "hook-health.sock"),
    }
    log = sockdir / "pre.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(HOOK), env=env, pass_fds=[theirs.fileno()], stdout=out, stderr=out
        )
    theirs.close()
    try:
        link = await rt.wait_for_plugin(timeout=20)
        assert link.label == "10-dranet"
        await rt.run_pod_sandbox(make_pod("pre", netns=NETNS))
        assert [c.uid for c in agent.methods("AttachPod")] == ["pre"]
        await rt.stop()  # the runtime goes: the socket cannot be reopened
        assert await asyncio.wait_for(proc.wait(), 10) == 1
        assert "closed the pre-launched plugin socket" in log.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_bad_flags_exit_with_a_one_line_error(sockdir: Path) -> None:
    done = subprocess.run(
        [str(HOOK), "--plugin-index", "7"], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "NRI plugin index '7' is invalid" in done.stderr
    assert "two digits" in done.stderr
