"""Test doubles and builders for the API-server half of the kubelet plugin.

`FakeAgent` serves the agent's private API (dranet.agent.v1) on a real unix
socket, so the plugin code under test talks real gRPC; the real agent is
written elsewhere and tested on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from dranet.agent.v1 import agent_pb2, agent_pb2_grpc

DRIVER = "dra.net"
NODE = "node-a"


def nic(name: str, **fields: Any) -> agent_pb2.Device:
    """A device as the agent reports it; sensible defaults for a veth 'NIC'."""
    values: dict[str, Any] = {
        "ifname": name,
        "mac": "02:00:00:00:00:01",
        "mtu": 1500,
        "type": "veth",
        "state": "up",
        "encapsulation": "ether",
        "virtual": True,
    }
    values.update(fields)
    return agent_pb2.Device(name=name, **values)


class FakeAgent(agent_pb2_grpc.NetlinkAgentServicer):
    def __init__(self, devices: Iterable[agent_pb2.Device] = ()) -> None:
        self.devices = {d.name: d for d in devices}
        self.attachments: dict[tuple[str, str], agent_pb2.Attachment] = {}
        self.released: list[str] = []
        self.release_error: grpc.StatusCode | None = None
        self._device_watchers: list[asyncio.Queue[agent_pb2.DeviceEvent]] = []
        self._attach_watchers: list[asyncio.Queue[agent_pb2.AttachmentEvent]] = []

    # --- driving the fake -------------------------------------------------------

    def _devices_event(self, kind: int, devices: Iterable[agent_pb2.Device]) -> None:
        event = agent_pb2.DeviceEvent(kind=kind, devices=list(devices))  # type: ignore[arg-type]
        for queue in self._device_watchers:
            queue.put_nowait(event)

    def add(self, *devices: agent_pb2.Device) -> None:
        self.devices.update((d.name, d) for d in devices)
        self._devices_event(agent_pb2.DeviceEvent.ADDED, devices)

    def remove(self, *names: str) -> None:
        gone = [self.devices.pop(n) for n in names]
        self._devices_event(agent_pb2.DeviceEvent.REMOVED, gone)

    def attach(self, attachment: agent_pb2.Attachment) -> None:
        key = (attachment.interface.claim_uid, attachment.interface.device)
        self.attachments[key] = attachment
        event = agent_pb2.AttachmentEvent(
            kind=agent_pb2.AttachmentEvent.ATTACHED, attachments=[attachment]
        )
        for queue in self._attach_watchers:
            queue.put_nowait(event)

    def detach(self, claim_uid: str, device: str) -> None:
        attachment = self.attachments.pop((claim_uid, device))
        event = agent_pb2.AttachmentEvent(
            kind=agent_pb2.AttachmentEvent.DETACHED, attachments=[attachment]
        )
        for queue in self._attach_watchers:
            queue.put_nowait(event)

    # --- the RPCs -----------------------------------------------------------------

    async def ListDevices(self, request: Any, context: Any) -> agent_pb2.ListDevicesResponse:
        return agent_pb2.ListDevicesResponse(devices=list(self.devices.values()))

    async def WatchDevices(
        self, request: Any, context: Any
    ) -> AsyncIterator[agent_pb2.DeviceEvent]:
        queue: asyncio.Queue[agent_pb2.DeviceEvent] = asyncio.Queue()
        self._device_watchers.append(queue)
        try:
            yield agent_pb2.DeviceEvent(
                kind=agent_pb2.DeviceEvent.SNAPSHOT, devices=list(self.devices.values())
            )
            while True:
                yield await queue.get()
        finally:
            self._device_watchers.remove(queue)

    async def WatchAttachments(
        self, request: Any, context: Any
    ) -> AsyncIterator[agent_pb2.AttachmentEvent]:
        queue: asyncio.Queue[agent_pb2.AttachmentEvent] = asyncio.Queue()
        self._attach_watchers.append(queue)
        try:
            yield agent_pb2.AttachmentEvent(
                kind=agent_pb2.AttachmentEvent.SNAPSHOT,
                attachments=list(self.attachments.values()),
            )
            while True:
                yield await queue.get()
        finally:
            self._attach_watchers.remove(queue)

    async def AttachPod(self, request: Any, context: Any) -> agent_pb2.AttachPodResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the plugin never attaches")
        raise AssertionError("unreachable")

    async def DetachPod(self, request: Any, context: Any) -> agent_pb2.DetachPodResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the plugin never detaches")
        raise AssertionError("unreachable")

    async def ListAttachments(
        self, request: Any, context: Any
    ) -> agent_pb2.ListAttachmentsResponse:
        return agent_pb2.ListAttachmentsResponse(attachments=list(self.attachments.values()))

    async def ReleaseClaim(self, request: Any, context: Any) -> agent_pb2.ReleaseClaimResponse:
        if self.release_error is not None:
            await context.abort(self.release_error, "agent says no")
        self.released.append(request.claim_uid)
        return agent_pb2.ReleaseClaimResponse()


class AgentServer:
    """A FakeAgent on a unix socket, plus a client stub for the code under test."""

    def __init__(self, socket_path: str, agent: FakeAgent) -> None:
        self.path = socket_path
        self.agent = agent
        self.server = grpc.aio.server()
        agent_pb2_grpc.add_NetlinkAgentServicer_to_server(agent, self.server)
        self.server.add_insecure_port(f"unix://{socket_path}")
        self.channel = grpc.aio.insecure_channel(f"unix://{socket_path}")
        self.stub = agent_pb2_grpc.NetlinkAgentStub(self.channel)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.channel.close(grace=None)
        await self.server.stop(grace=None)


def claim(
    name: str,
    uid: str,
    *,
    results: list[dict[str, Any]],
    config: list[dict[str, Any]] | None = None,
    pods: Iterable[str] = ("pod-uid-1",),
    namespace: str = "default",
) -> dict[str, Any]:
    """An allocated ResourceClaim as the scheduler leaves it."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {"devices": {"requests": [{"name": r["request"]} for r in results]}},
        "status": {
            "allocation": {"devices": {"results": results, "config": config or []}},
            "reservedFor": [
                {"resource": "pods", "name": f"pod-{i}", "uid": p} for i, p in enumerate(pods)
            ],
        },
    }


def result(request: str, device: str, *, driver: str = DRIVER, pool: str = NODE) -> dict[str, Any]:
    return {"request": request, "driver": driver, "pool": pool, "device": device}


def opaque(
    parameters: Any,
    *,
    source: str = "FromClaim",
    requests: Iterable[str] = (),
    driver: str = DRIVER,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "source": source,
        "opaque": {"driver": driver, "parameters": parameters},
    }
    if requests:
        entry["requests"] = list(requests)
    return entry


async def eventually(check: Any, timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Polls `check()` until it returns something truthy; fails after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await asyncio.sleep(interval)
