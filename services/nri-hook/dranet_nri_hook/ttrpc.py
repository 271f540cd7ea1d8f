"""ttrpc, containerd's small RPC protocol, over one ordered byte stream.

`Connection` does the I/O and plays both roles: it serves the handlers it was
given and makes calls of its own. The pure framing and envelope code lives in
`ttrpc_wire` and is re-exported here.

Error behaviour mirrors Go ttrpc so runtimes see what they expect: unknown
service/method -> Unimplemented, bad stream ids -> InvalidArgument, an
oversized frame is skipped and answered ResourceExhausted on its own stream,
a malformed request is answered on its stream; other streams carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from google.protobuf.message import DecodeError, Message

from dranet_nri_hook.ttrpc_wire import (
    HEADER_LEN,
    MESSAGE_LENGTH_MAX,
    CallTimeout,
    Code,
    ConnectionClosed,
    Frame,
    FrameDecoder,
    MessageType,
    OversizedFrame,
    RpcError,
    decode_header,
    decode_request,
    encode_frame,
    encode_header,
    encode_request,
    encode_response,
    oversize_message,
    response_payload,
)

__all__ = [
    "HEADER_LEN",
    "MESSAGE_LENGTH_MAX",
    "ByteStream",
    "CallContext",
    "CallTimeout",
    "Code",
    "Connection",
    "ConnectionClosed",
    "Frame",
    "FrameDecoder",
    "Handler",
    "MessageType",
    "OversizedFrame",
    "RpcError",
    "current_call",
    "decode_header",
    "decode_request",
    "encode_frame",
    "encode_header",
    "encode_request",
    "encode_response",
    "oversize_message",
    "response_payload",
]

log = logging.getLogger(__name__)


class ByteStream(Protocol):
    """One logical connection. `write` gets exactly one whole ttrpc frame."""

    async def read(self) -> bytes: ...  # b"" at end of stream

    async def write(self, frame: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CallContext:
    service: str
    method: str
    timeout: float | None  # seconds the caller gave us, None = no deadline
    metadata: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[bytes, CallContext], Awaitable[bytes]]
# The request being served by this task, for code far from the handler
# (e.g. to fit outgoing calls inside the caller's deadline).
current_call: ContextVar[CallContext | None] = ContextVar("current_call", default=None)
M = TypeVar("M", bound=Message)


class Connection:
    """ttrpc endpoint on a ByteStream: serves `handlers`, makes calls."""

    def __init__(
        self,
        stream: ByteStream,
        handlers: Mapping[tuple[str, str], Handler] | None = None,
        *,
        name: str = "ttrpc",
        limit: int = MESSAGE_LENGTH_MAX,
    ) -> None:
        self._stream = stream
        self._handlers = dict(handlers or {})
        self._services = {service for service, _ in self._handlers}
        self._name = name
        self._limit = limit
        self._decoder = FrameDecoder(limit)
        self._next_stream = 1
        self._last_served = 0
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read_loop(), name=f"{self._name}-reader")

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def close(self) -> None:
        self._stream.close()
        for task in (self._reader, *self._tasks):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        for task in (self._reader, *self._tasks):
            if task is not None and task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._finish("closed locally")

    # ---- client role ----

    async def call(
        self,
        service: str,
        method: str,
        payload: bytes,
        *,
        request_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> bytes:
        if self.closed.is_set():
            raise ConnectionClosed(Code.UNAVAILABLE, f"ttrpc: closed ({self.close_reason})")
        stream_id = self._next_stream
        self._next_stream += 2  # client streams are odd: 1, 3, 5...
        timeout = request_timeout
        nano = int(timeout * 1e9) if timeout else 0
        frame = encode_request(
            stream_id, service, method, payload, timeout_nano=nano, metadata=metadata,
            limit=self._limit,
        )  # fmt: skip
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        try:
            await self._stream.write(frame)
            async with asyncio.timeout(timeout):
                body = await future
        except TimeoutError:
            raise CallTimeout(
                Code.DEADLINE_EXCEEDED,
                f"{service}/{method}: no answer within {timeout:g}s (context deadline exceeded)",
            ) from None
        except OSError as exc:
            raise ConnectionClosed(Code.UNAVAILABLE, f"ttrpc: closed ({exc})") from exc
        finally:
            self._pending.pop(stream_id, None)
        return response_payload(body)

    async def call_message(
        self, service: str, method: str, request: Message, reply_type: type[M], *,
        request_timeout: float | None = None,
    ) -> M:  # fmt: skip
        body = await self.call(
            service, method, request.SerializeToString(), request_timeout=request_timeout
        )
        reply = reply_type()
        try:
            reply.ParseFromString(body)
        except DecodeError as exc:
            raise RpcError(Code.INTERNAL, f"{service}/{method}: malformed reply: {exc}") from exc
        return reply

    # ---- reading and dispatch ----

    async def _read_loop(self) -> None:
        reason = "end of stream"
        try:
            while True:
                chunk = await self._stream.read()
                if not chunk:
                    break
                for item in self._decoder.feed(chunk):
                    self._dispatch(item)
        except OSError as exc:
            reason = f"read error: {exc}"
        finally:
            self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    ConnectionClosed(Code.UNAVAILABLE, f"ttrpc: closed ({reason})")
                )
        self._pending.clear()

    def _dispatch(self, item: Frame | OversizedFrame) -> None:
        if isinstance(item, OversizedFrame):
            self._oversized(item)
        elif item.type == MessageType.RESPONSE:
            future = self._pending.get(item.stream_id)
            if future is None or future.done():
                log.debug("%s: response on inactive stream %d dropped", self._name, item.stream_id)
            else:
                future.set_result(item.payload)
        elif item.type == MessageType.REQUEST:
            self._spawn(self._serve(item))
        else:
            # Data frames belong to streaming RPCs, which NRI does not have.
            log.warning(
                "%s: ignoring frame of type %d on stream %d", self._name, item.type, item.stream_id
            )

    def _oversized(self, item: OversizedFrame) -> None:
        text = oversize_message(item.length, self._limit)
        log.warning("%s: stream %d: %s", self._name, item.stream_id, text)
        if item.type == MessageType.REQUEST:
            self._spawn(self._reply(item.stream_id, Code.RESOURCE_EXHAUSTED, text))
        elif item.type == MessageType.RESPONSE:
            future = self._pending.get(item.stream_id)
            if future is not None and not future.done():
                future.set_exception(RpcError(Code.RESOURCE_EXHAUSTED, text))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- server role ----

    def _check_stream(self, stream_id: int) -> str:
        if stream_id % 2 == 0:
            return "StreamID must be odd for client initiated streams"
        if stream_id <= self._last_served:
            return "StreamID cannot be re-used and must increment"
        self._last_served = stream_id
        return ""

    async def _serve(self, frame: Frame) -> None:
        problem = self._check_stream(frame.stream_id)
        if problem:
            await self._reply(frame.stream_id, Code.INVALID_ARGUMENT, problem)
            return
        try:
            req = decode_request(frame.payload)
        except RpcError as exc:
            await self._reply(frame.stream_id, exc.code, str(exc))
            return
        handler = self._handlers.get((req.service, req.method))
        if handler is None:
            missing = "method" if req.service in self._services else "service"
            name = req.method if missing == "method" else req.service
            await self._reply(frame.stream_id, Code.UNIMPLEMENTED, f"{missing} {name}")
            return
        timeout = req.timeout_nano / 1e9 if req.timeout_nano > 0 else None
        ctx = CallContext(req.service, req.method, timeout, {m.key: m.value for m in req.metadata})
        current_call.set(ctx)  # this task's own context: no reset needed
        try:
            async with asyncio.timeout(timeout):
                body = await handler(req.payload, ctx)
        except RpcError as exc:
            await self._reply(frame.stream_id, exc.code, str(exc))
        except TimeoutError:
            await self._reply(frame.stream_id, Code.DEADLINE_EXCEEDED, "context deadline exceeded")
        except Exception as exc:
            log.exception("%s: %s/%s failed", self._name, req.service, req.method)
            await self._reply(frame.stream_id, Code.UNKNOWN, str(exc) or type(exc).__name__)
        else:
            await self._reply(frame.stream_id, Code.OK, "", body)

    async def _reply(self, stream_id: int, code: Code, message: str, body: bytes = b"") -> None:
        try:
            frame = encode_response(stream_id, body, code=code, message=message, limit=self._limit)
        except RpcError as exc:
            frame = encode_response(stream_id, code=exc.code, message=str(exc))
        try:
            await self._stream.write(frame)
        except OSError as exc:
            log.debug("%s: reply on stream %d not sent: %s", self._name, stream_id, exc)
