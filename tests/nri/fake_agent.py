"""A test double of the netlink agent: the three RPCs the hook uses, recorded.

Served by grpc.aio on a unix socket like the real agent. Behaviour per pod
UID: `claims` (pods that have prepared claims), `errors` (status to return
from AttachPod), `delay` (seconds every AttachPod takes). `stop()` takes it
off its socket, as when the agent container is down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc

from dranet.agent.v1 import agent_pb2, agent_pb2_grpc


@dataclass
class Call:
    method: str
    uid: str
    netns: str


@dataclass
class FakeAgent(agent_pb2_grpc.NetlinkAgentServicer):
    claims: dict[str, str] = field(default_factory=dict)  # pod uid -> interface name
    errors: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    delay: float = 0.0
    attachments: list[agent_pb2.Attachment] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    server: grpc.aio.Server | None = None  # set by serve_fake_agent

    async def stop(self) -> None:
        """Unreachable from now on: calls wait for it until their deadline."""
        if self.server is not None:
            await self.server.stop(None)
            self.server = None

    def _record(self, method: str, uid: str, netns: str) -> None:
        self.calls.append(Call(method, uid, netns))
        self.changed.set()

    def methods(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        async with asyncio.timeout(timeout):
            while len(self.methods(method)) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.methods(method)

    async def AttachPod(self, request: Any, context: Any) -> agent_pb2.AttachPodResponse:
        pod = request.pod
        self._record("AttachPod", pod.uid, request.netns_path)
        if self.delay:
            await asyncio.sleep(self.delay)
        if pod.uid in self.errors:
            code, message = self.errors[pod.uid]
            await context.abort(code, message)
        if pod.uid not in self.claims:
            return agent_pb2.AttachPodResponse()  # no prepared claims: nothing to do
        if not request.netns_path:  # as the real agent's check_netns_path
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "netns path is empty (pass the pod sandbox's network namespace path)",
            )
        name = self.claims[pod.uid]
        result = agent_pb2.InterfaceResult(claim_uid=f"claim-{pod.uid}", interface_name=name)
        self.attachments = [a for a in self.attachments if a.pod.uid != pod.uid]
        self.attachments.append(
            agent_pb2.Attachment(pod=pod, netns_path=request.netns_path, interface=result)
        )
        return agent_pb2.AttachPodResponse(interfaces=[result])

    async def DetachPod(self, request: Any, context: Any) -> agent_pb2.DetachPodResponse:
        self._record("DetachPod", request.pod.uid, request.netns_path)
        gone = [a for a in self.attachments if a.pod.uid == request.pod.uid]
        self.attachments = [a for a in self.attachments if a.pod.uid != request.pod.uid]
        return agent_pb2.DetachPodResponse(
            devices=[
                agent_pb2.DetachedDevice(
                    claim_uid=a.interface.claim_uid,
                    device=a.interface.interface_name,
                    outcome=agent_pb2.DetachedDevice.RESTORED,
                )
                for a in gone
            ]
        )

    async def ListAttachments(
        self, request: Any, context: Any
    ) -> agent_pb2.ListAttachmentsResponse:
        self._record("ListAttachments", "", "")
        return agent_pb2.ListAttachmentsResponse(attachments=list(self.attachments))

    async def _unused(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the fake agent")

    ListDevices = WatchDevices = ReleaseClaim = WatchAttachments = _unused  # type: ignore[assignment]


async def serve_fake_agent(agent: FakeAgent, socket_path: str) -> grpc.aio.Server:
    server = grpc.aio.server()
    agent_pb2_grpc.add_NetlinkAgentServicer_to_server(agent, server)
    server.add_insecure_port(f"unix:{socket_path}")
    await server.start()
    agent.server = server
    return server
