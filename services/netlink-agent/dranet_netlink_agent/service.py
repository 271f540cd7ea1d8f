"""The `dranet.agent.v1.NetlinkAgent` gRPC servicer.

Thin: each RPC validates its request, calls attach/detach/the inventory, and
maps a DranetError onto its `grpc_code` with the error's own message, so the
NRI hook, the kubelet plugin and an operator all read the same sentence. Any
other exception is a bug: its traceback goes to the log and the caller gets
INTERNAL saying which call failed and where to look.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, Protocol, TypeVar

import grpc

from dranet.agent.v1 import agent_pb2, agent_pb2_grpc
from dranet.errors import DranetError, InvalidArgumentError, internal_error_text
from dranet.store import AttachmentPhase, AttachmentRecord
from dranet_netlink_agent.attach import PodRef, attach_pod, result_fields
from dranet_netlink_agent.context import AgentContext, Resolver, log
from dranet_netlink_agent.detach import Detached, Outcome, detach_pod, release_claim

T = TypeVar("T")
OUTCOMES = {
    Outcome.RESTORED: agent_pb2.DetachedDevice.RESTORED,
    Outcome.LOST: agent_pb2.DetachedDevice.LOST,
}


class DeviceSource(Resolver, Protocol):
    """What the servicer needs from the inventory."""

    def devices(self) -> list[agent_pb2.Device]: ...
    def subscribe(self) -> AsyncIterator[agent_pb2.DeviceEvent]: ...


def interface_result(rec: AttachmentRecord) -> agent_pb2.InterfaceResult:
    fields = result_fields(rec)
    conditions = [agent_pb2.Condition(**c) for c in fields.pop("conditions")]
    return agent_pb2.InterfaceResult(**fields, conditions=conditions)


def attachment(rec: AttachmentRecord) -> agent_pb2.Attachment:
    return agent_pb2.Attachment(
        pod=agent_pb2.PodRef(uid=rec.pod_uid, namespace=rec.pod_namespace, name=rec.pod_name),
        netns_path=rec.netns_path,
        interface=interface_result(rec),
    )


def detached(done: Detached) -> agent_pb2.DetachedDevice:
    return agent_pb2.DetachedDevice(
        claim_uid=done.claim_uid,
        device=done.device,
        outcome=OUTCOMES[done.outcome],
        message=done.message,
    )


class AttachmentHub:
    """Fans attach/detach events out to WatchAttachments streams."""

    def __init__(self) -> None:
        # None in a queue ends that stream (the agent is stopping).
        self._queues: set[asyncio.Queue[agent_pb2.AttachmentEvent | None]] = set()

    def publish(self, kind: str, rec: AttachmentRecord) -> None:
        event = agent_pb2.AttachmentEvent(
            kind=agent_pb2.AttachmentEvent.ATTACHED
            if kind == "attached"
            else agent_pb2.AttachmentEvent.DETACHED,
            attachments=[attachment(rec)],
        )
        for queue in self._queues:
            queue.put_nowait(event)

    def close(self) -> None:
        """Ends every stream, so a graceful server stop need not wait for them."""
        for queue in self._queues:
            queue.put_nowait(None)

    @contextlib.contextmanager
    def subscription(self) -> Any:
        queue: asyncio.Queue[agent_pb2.AttachmentEvent | None] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: DranetError) -> NoReturn:
    await context.abort(exc.grpc_code, str(exc))
    raise AssertionError("unreachable")  # abort always raises


async def guarded(
    context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[T]], rpc: str
) -> T:
    """Runs one RPC's work; `rpc` names it in an error ("AttachPod for pod ns/name")."""
    try:
        return await call()
    except DranetError as exc:
        log.warning("%s", exc)
        await _abort(context, exc)
    except Exception as exc:  # a bug: not grpc's bare "Unexpected <class ...>"
        log.exception("%s failed unexpectedly", rpc)
        text = internal_error_text("netlink-agent", f"handling {rpc}", exc)
        await context.abort(grpc.StatusCode.INTERNAL, text)
        raise AssertionError("unreachable") from exc  # abort always raises


def _pod_name(ref: agent_pb2.PodRef) -> str:
    return f"pod {ref.namespace}/{ref.name}" if ref.name else f"pod {ref.uid}"


def _pod(ref: agent_pb2.PodRef) -> PodRef:
    if not ref.uid:
        raise InvalidArgumentError("pod.uid is empty", hint="pass the pod's metadata.uid")
    return PodRef(ref.uid, ref.namespace, ref.name)


class NetlinkAgentService(agent_pb2_grpc.NetlinkAgentServicer):
    def __init__(self, ctx: AgentContext, devices: DeviceSource, hub: AttachmentHub) -> None:
        self._ctx = ctx
        self._devices = devices
        self._hub = hub
        self._running: set[asyncio.Task[Any]] = set()

    async def _whole(self, work: Awaitable[T]) -> T:
        """Runs a transaction to its end even if the caller gives up (deadline, disconnect).

        A half-done attach must never be abandoned: the caller's retry then
        finds it attached (idempotent) or rolled back.
        """
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    async def drain(self, timeout: float) -> int:
        """Waits up to `timeout` seconds for shielded transactions still running.

        The server stop cancels the RPCs, not the transactions they started;
        the store must not close under them. Returns how many are still running.
        """
        running = set(self._running)
        if not running:
            return 0
        _, pending = await asyncio.wait(running, timeout=timeout)
        if pending:
            log.error("%d attach/detach transactions still running after %.0fs; "
                      "start-up recovery will finish them", len(pending), timeout)  # fmt: skip
        return len(pending)

    async def ListDevices(
        self, request: agent_pb2.ListDevicesRequest, context: Any
    ) -> agent_pb2.ListDevicesResponse:
        return agent_pb2.ListDevicesResponse(devices=self._devices.devices())

    async def WatchDevices(
        self, request: agent_pb2.WatchDevicesRequest, context: Any
    ) -> AsyncIterator[agent_pb2.DeviceEvent]:
        async for event in self._devices.subscribe():
            yield event

    async def AttachPod(
        self, request: agent_pb2.AttachPodRequest, context: Any
    ) -> agent_pb2.AttachPodResponse:
        async def call() -> agent_pb2.AttachPodResponse:
            pod = _pod(request.pod)
            recs = await self._whole(attach_pod(self._ctx, pod, request.netns_path))
            return agent_pb2.AttachPodResponse(interfaces=[interface_result(r) for r in recs])

        return await guarded(context, call, f"AttachPod for {_pod_name(request.pod)}")

    async def DetachPod(
        self, request: agent_pb2.DetachPodRequest, context: Any
    ) -> agent_pb2.DetachPodResponse:
        async def call() -> agent_pb2.DetachPodResponse:
            done = await self._whole(detach_pod(self._ctx, _pod(request.pod).uid))
            return agent_pb2.DetachPodResponse(devices=[detached(d) for d in done])

        return await guarded(context, call, f"DetachPod for {_pod_name(request.pod)}")

    async def ReleaseClaim(
        self, request: agent_pb2.ReleaseClaimRequest, context: Any
    ) -> agent_pb2.ReleaseClaimResponse:
        async def call() -> agent_pb2.ReleaseClaimResponse:
            if not request.claim_uid:
                raise InvalidArgumentError("claim_uid is empty")
            done = await self._whole(release_claim(self._ctx, request.claim_uid))
            return agent_pb2.ReleaseClaimResponse(devices=[detached(d) for d in done])

        return await guarded(context, call, f"ReleaseClaim for claim {request.claim_uid}")

    async def _attached(self) -> list[agent_pb2.Attachment]:
        rows = await self._ctx.rows()
        return [attachment(r) for r in rows if r.phase == AttachmentPhase.ATTACHED]

    async def ListAttachments(
        self, request: agent_pb2.ListAttachmentsRequest, context: Any
    ) -> agent_pb2.ListAttachmentsResponse:
        return await guarded(context, self._list, "ListAttachments")

    async def _list(self) -> agent_pb2.ListAttachmentsResponse:
        return agent_pb2.ListAttachmentsResponse(attachments=await self._attached())

    async def WatchAttachments(
        self, request: agent_pb2.WatchAttachmentsRequest, context: Any
    ) -> AsyncIterator[agent_pb2.AttachmentEvent]:
        with self._hub.subscription() as queue:  # subscribe first: no event falls in between
            yield agent_pb2.AttachmentEvent(
                kind=agent_pb2.AttachmentEvent.SNAPSHOT, attachments=await self._attached()
            )
            while (event := await queue.get()) is not None:
                yield event
