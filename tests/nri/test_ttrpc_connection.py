"""ttrpc connections over NRI's mux on a real socketpair: both roles,
concurrency, deadlines, and hostile frames that must not hurt other streams."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from dranet_nri_hook.mux import Mux, MuxConn, MuxDecoder, encode_mux_frame
from dranet_nri_hook.ttrpc import (
    CallContext,
    CallTimeout,
    Code,
    Connection,
    ConnectionClosed,
    Frame,
    FrameDecoder,
    MessageType,
    OversizedFrame,
    RpcError,
    encode_frame,
    encode_request,
    response_payload,
)

SVC = "test.Echo"


@dataclass
class Pair:
    left: Mux
    right: Mux


async def _mux(sock: socket.socket, name: str) -> Mux:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    return Mux(reader, writer, name=name)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    a, b = socket.socketpair()
    p = Pair(await _mux(a, "left"), await _mux(b, "right"))
    yield p
    await p.left.close()
    await p.right.close()


async def echo(body: bytes, ctx: CallContext) -> bytes:
    return body


async def slow(body: bytes, ctx: CallContext) -> bytes:
    await asyncio.sleep(float(body.decode()))
    return b"slept"


async def fail(body: bytes, ctx: CallContext) -> bytes:
    raise RpcError(Code.FAILED_PRECONDITION, "no: " + body.decode())


HANDLERS = {(SVC, "Echo"): echo, (SVC, "Slow"): slow, (SVC, "Fail"): fail}


def serve(mux: Mux, conn_id: int = 1, limit: int = 4 << 20) -> Connection:
    server = Connection(mux.open(conn_id), HANDLERS, name="server", limit=limit)
    server.start()
    return server


async def test_unary_calls_both_roles_on_two_logical_connections(pair: Pair) -> None:
    # Like NRI: each side serves one logical connection and calls on the other.
    serve(pair.left, 1)
    serve(pair.right, 2)
    to_left = Connection(pair.right.open(1), name="c1")
    to_right = Connection(pair.left.open(2), name="c2")
    for conn in (to_left, to_right):
        conn.start()
    pair.left.start()
    pair.right.start()
    assert await to_left.call(SVC, "Echo", b"hi") == b"hi"
    assert await to_right.call(SVC, "Echo", b"x" * 300_000) == b"x" * 300_000
    with pytest.raises(RpcError) as caught:
        await to_left.call(SVC, "Fail", b"bad")
    assert (caught.value.code, str(caught.value)) == (Code.FAILED_PRECONDITION, "no: bad")


async def test_concurrent_streams_answer_out_of_order(pair: Pair) -> None:
    serve(pair.left)
    client = Connection(pair.right.open(1))
    client.start()
    pair.left.start()
    pair.right.start()
    done: list[str] = []

    async def call(method: str, body: bytes) -> None:
        await client.call(SVC, method, body)
        done.append(method)

    await asyncio.gather(call("Slow", b"0.3"), call("Echo", b"fast"))
    assert done == ["Echo", "Slow"]


async def test_client_deadline_then_connection_still_usable(pair: Pair) -> None:
    serve(pair.left)
    client = Connection(pair.right.open(1))
    client.start()
    pair.left.start()
    pair.right.start()
    with pytest.raises(CallTimeout) as caught:
        await client.call(SVC, "Slow", b"0.5", request_timeout=0.1)
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert "no answer within 0.1s" in str(caught.value)
    await asyncio.sleep(0.5)  # the late answer arrives on an inactive stream
    assert await client.call(SVC, "Echo", b"after") == b"after"


async def test_closing_the_trunk_fails_pending_calls(pair: Pair) -> None:
    serve(pair.left)
    client = Connection(pair.right.open(1))
    client.start()
    pair.left.start()
    pair.right.start()
    pending = asyncio.create_task(client.call(SVC, "Slow", b"5"))
    await asyncio.sleep(0.1)
    await pair.left.close()
    with pytest.raises(ConnectionClosed):
        await pending
    with pytest.raises(ConnectionClosed):
        await client.call(SVC, "Echo", b"x")


Reply = tuple[int, int, str, bytes]  # stream id, status code, message, payload


async def _replies(conn: MuxConn, count: int) -> list[Reply]:
    """Raw Response frames, in arrival order."""
    decoder = FrameDecoder()
    out: list[Reply] = []
    async with asyncio.timeout(5):
        while len(out) < count:
            for frame in decoder.feed(await conn.read()):
                assert isinstance(frame, Frame)
                assert frame.type == MessageType.RESPONSE
                try:
                    out.append((frame.stream_id, 0, "", response_payload(frame.payload)))
                except RpcError as err:
                    out.append((frame.stream_id, int(err.code), str(err), b""))
    return out


async def test_hostile_frames_get_errors_and_other_streams_carry_on(pair: Pair) -> None:
    server = serve(pair.left, limit=1024)
    raw = pair.right.open(1)
    pair.left.start()
    pair.right.start()

    async def send(frame: bytes) -> None:
        await pair.right.send(1, frame)

    await send(encode_request(1, SVC, "Slow", b"0.3"))  # in flight throughout
    await send(encode_frame(3, MessageType.REQUEST, b"\x0a\xff\xff\xff"))  # malformed
    await send(  # oversized: header says 2000 > 1024
        (2000).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\x01\x00" + b"\xee" * 2000
    )
    await send(encode_request(7, SVC, "Nope", b""))
    await send(encode_request(9, "other.Service", "Echo", b""))
    await send(encode_request(10, SVC, "Echo", b""))  # even id
    await send(encode_request(9, SVC, "Echo", b""))  # re-used id
    await send(encode_frame(11, MessageType.DATA, b"stray"))  # ignored, no reply
    await send(encode_request(13, SVC, "Echo", b"still fine"))
    replies = await _replies(raw, 8)
    by_stream = {r[0]: r[1:] for r in replies}
    assert by_stream[1] == (0, "", b"slept")
    assert replies[-1][0] == 1  # the slow call finished last, after all the garbage
    assert by_stream[3][0] == Code.INVALID_ARGUMENT
    assert "malformed ttrpc request" in by_stream[3][1]
    assert by_stream[5] == (
        Code.RESOURCE_EXHAUSTED, "message length 2000 exceed maximum message size of 1024", b""
    )  # fmt: skip
    assert by_stream[7] == (Code.UNIMPLEMENTED, "method Nope", b"")
    assert by_stream[10] == (
        Code.INVALID_ARGUMENT, "StreamID must be odd for client initiated streams", b""
    )  # fmt: skip
    nines = [r[1:] for r in replies if r[0] == 9]
    assert nines == [
        (Code.UNIMPLEMENTED, "service other.Service", b""),
        (Code.INVALID_ARGUMENT, "StreamID cannot be re-used and must increment", b""),
    ]
    assert by_stream[13] == (0, "", b"still fine")
    assert 11 not in by_stream
    assert not server.closed.is_set()


async def test_server_enforces_the_callers_deadline(pair: Pair) -> None:
    serve(pair.left)
    raw = pair.right.open(1)
    pair.left.start()
    pair.right.start()
    await pair.right.send(1, encode_request(1, SVC, "Slow", b"3", timeout_nano=100_000_000))
    replies = await _replies(raw, 1)
    assert replies == [(1, Code.DEADLINE_EXCEEDED, "context deadline exceeded", b"")]


async def test_oversized_response_fails_only_its_call(pair: Pair) -> None:
    client = Connection(pair.right.open(1), limit=1024)
    client.start()
    raw = pair.left.open(1)
    pair.left.start()
    pair.right.start()
    big = asyncio.create_task(client.call(SVC, "Echo", b"a"))
    small = asyncio.create_task(client.call(SVC, "Echo", b"b"))
    decoder = FrameDecoder()
    got: list[Frame | OversizedFrame] = []
    while len(got) < 2:
        got += decoder.feed(await raw.read())
    body = b"\x12" + (2000).to_bytes(2, "little")  # not parsed: too long anyway
    await pair.left.send(1, (2000).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x02\x00"
                         + body + b"\0" * (2000 - len(body)))  # fmt: skip
    await pair.left.send(1, encode_frame(3, MessageType.RESPONSE, b"\x12\x02ok"))
    with pytest.raises(RpcError) as caught:
        await big
    assert caught.value.code == Code.RESOURCE_EXHAUSTED
    assert await small == b"ok"


async def test_mux_writes_big_messages_as_go_does_and_drops_unknown_conns() -> None:
    a, b = socket.socketpair()
    mux = await _mux(a, "plugin")
    client = Connection(mux.open(2))
    client.start()
    mux.start()
    reader, writer = await asyncio.open_unix_connection(sock=b)
    call = asyncio.create_task(client.call(SVC, "Echo", b"y" * 10_000))
    message_len = len(encode_request(1, SVC, "Echo", b"y" * 10_000))
    decoder = MuxDecoder()
    frames: list[tuple[int, bytes]] = []
    async with asyncio.timeout(5):
        while sum(len(p) for _, p in frames) < 10_000:
            frames += decoder.feed(await reader.read(65536))
    assert [(conn, len(p)) for conn, p in frames] == [(2, 4096), (2, message_len - 4096)]
    # A frame for a connection nobody opened is dropped; the reply still lands,
    # even cut into 1-byte mux frames.
    writer.write(encode_mux_frame(7, b"junk"))
    reply = encode_frame(1, MessageType.RESPONSE, b"\x12\x03yes")
    writer.write(b"".join(encode_mux_frame(2, reply[i : i + 1]) for i in range(len(reply))))
    await writer.drain()
    assert await call == b"yes"
    writer.close()
    await mux.close()
