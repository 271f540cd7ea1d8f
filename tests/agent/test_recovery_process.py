"""The agent as a real process (its console script, inside the node netns), killed mid-attach.

DRANET_AGENT_CRASH_AT makes the agent SIGKILL itself right after the
write-ahead row (`pending`) or right after the move (`moved`); the restarted
agent must converge: the NIC back on the node as before, the pod empty, no row.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dranet.agent.v1 import agent_pb2, agent_pb2_grpc
from dranet.grpcserver import unix_channel
from dranet.store import AttachmentPhase, Role, Store
from dranet_sandbox.netlab import NetLab, ip

pytestmark = pytest.mark.root
AGENT = Path(sys.executable).parent / "dranet-netlink-agent"
POD = agent_pb2.PodRef(uid="pod-p", namespace="default", name="p-0")


class Agent:
    """One agent process; `start` waits until it answers on its socket."""

    def __init__(self, lab: NetLab, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp
        self.socket = tmp / "run" / "agent.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, crash_at: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "DRANET_AGENT_CRASH_AT": crash_at, "OTEL_TRACES_EXPORTER": "none"}
        cmd = ["ip", "netns", "exec", self.lab.node, str(AGENT),
               "--socket", str(self.socket), "--state-db", str(self.tmp / "state.db"),
               "--resync-interval", "30", "--log-level", "debug"]  # fmt: skip
        self.log = open(self.tmp / f"agent-{crash_at or 'plain'}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    async def start(self, crash_at: str = "") -> None:
        self.proc = self.spawn(crash_at)
        for _ in range(150):
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.output()}")
            if self.socket.exists():
                try:
                    await self.call("ListAttachments", agent_pb2.ListAttachmentsRequest())
                    return
                except grpc.aio.AioRpcError:
                    pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"agent did not come up: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    async def call(self, method: str, request: Any) -> Any:
        async with unix_channel(self.socket) as channel:
            stub = agent_pb2_grpc.NetlinkAgentStub(channel)
            return await getattr(stub, method)(request, timeout=10)

    def wait(self) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=10)
        self.log.close()
        return code

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()


@pytest.fixture
def agent(lab: NetLab, tmp_path: Path) -> Iterator[Agent]:
    made = Agent(lab, tmp_path)
    yield made
    if made.proc is not None and made.proc.poll() is None:
        made.proc.kill()
        made.proc.wait()


def _rows(tmp: Path) -> list[Any]:
    with Store(tmp / "state.db", role=Role.READER) as store:
        return store.list_attachments()


@pytest.mark.parametrize("crash_at", ["pending", "moved"])
async def test_killed_agent_converges_after_restart(
    lab: NetLab, agent: Agent, tmp_path: Path, kit: Any, crash_at: str
) -> None:
    lab.add_nic("nicp", node_cidr="10.81.0.2/24", fabric_cidr="10.81.0.1/24", mtu=1450)
    ip("route", "add", "10.181.0.0/16", "via", "10.81.0.1", netns=lab.node)
    pod = lab.add_pod()
    before = kit.snapshot(lab.node, "nicp")
    with Store(tmp_path / "state.db", role=Role.PLUGIN) as plugin:
        kit.claim(plugin, POD.uid, ("nicp", {"interface": {"name": "net1", "mtu": 1300}}))
    await agent.start(crash_at=crash_at)
    request = agent_pb2.AttachPodRequest(pod=POD, netns_path=lab.path(pod))

    with pytest.raises(grpc.aio.AioRpcError):
        await agent.call("AttachPod", request)

    assert agent.wait() == -signal.SIGKILL
    (row,) = _rows(tmp_path)
    assert row.phase == AttachmentPhase(crash_at)
    if crash_at == "moved":
        assert kit.pod_links(pod) == ["lo", "net1"]  # the crash left it half-done

    await agent.start()

    assert _rows(tmp_path) == []
    assert kit.pod_links(pod) == ["lo"]
    assert kit.snapshot(lab.node, "nicp") == before
    # The restarted agent works normally: attach, then detach back to the same state.
    resp = await agent.call("AttachPod", request)
    assert [i.interface_name for i in resp.interfaces] == ["net1"]
    await agent.call("DetachPod", agent_pb2.DetachPodRequest(pod=POD))
    assert kit.snapshot(lab.node, "nicp") == before
    assert agent.stop() == 0, agent.output()


async def test_attached_rows_survive_a_kill(
    lab: NetLab, agent: Agent, tmp_path: Path, kit: Any
) -> None:
    lab.add_nic("nicp", node_cidr="10.82.0.2/24")
    pod = lab.add_pod()
    with Store(tmp_path / "state.db", role=Role.PLUGIN) as plugin:
        kit.claim(plugin, POD.uid, ("nicp", {}))
    await agent.start()
    await agent.call("AttachPod", agent_pb2.AttachPodRequest(pod=POD, netns_path=lab.path(pod)))
    assert agent.proc is not None
    agent.proc.kill()
    agent.wait()

    await agent.start()

    listed = await agent.call("ListAttachments", agent_pb2.ListAttachmentsRequest())
    assert [a.interface.device for a in listed.attachments] == ["nicp"]
    assert kit.pod_links(pod) == ["lo", "nicp"]
    devices = await agent.call("ListDevices", agent_pb2.ListDevicesRequest())
    held = [d for d in devices.devices if d.name == "nicp"]
    assert held and held[0].allocation.pod.uid == POD.uid
    assert agent.stop() == 0, agent.output()


async def test_sigterm_ends_watch_streams_cleanly(lab: NetLab, agent: Agent) -> None:
    """A stopping agent closes its watch streams itself rather than have them cut off."""
    lab.add_nic("nicw")
    await agent.start()
    async with unix_channel(agent.socket) as channel:
        stub = agent_pb2_grpc.NetlinkAgentStub(channel)
        devices = stub.WatchDevices(agent_pb2.WatchDevicesRequest())
        attachments = stub.WatchAttachments(agent_pb2.WatchAttachmentsRequest())
        seen_devices = devices.__aiter__()
        seen_attachments = attachments.__aiter__()
        first = await anext(seen_devices)
        assert first.kind == agent_pb2.DeviceEvent.SNAPSHOT
        assert (await anext(seen_attachments)).kind == agent_pb2.AttachmentEvent.SNAPSHOT
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGTERM)
        # Both streams end with OK (EOF), not CANCELLED/UNAVAILABLE from a cut connection.
        assert [event async for event in seen_attachments] == []
        assert [event.kind async for event in seen_devices] in ([], [agent_pb2.DeviceEvent.REMOVED])
        assert await devices.code() == grpc.StatusCode.OK
        assert await attachments.code() == grpc.StatusCode.OK
    assert agent.wait() == 0
