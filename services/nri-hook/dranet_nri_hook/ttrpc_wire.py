"""ttrpc wire format, pure: frames, the Request/Response envelope, status codes.

Frame: a 10-byte big-endian header (data length u32, stream id u32, type u8,
flags u8) then `length` bytes of protobuf (`ttrpc.Request` / `ttrpc.Response`).
No I/O here; `ttrpc.Connection` drives these over a byte stream.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from google.protobuf.message import DecodeError

from dranet.errors import PeerError
from dranet.nri import ttrpc_pb2

HEADER_LEN = 10
MESSAGE_LENGTH_MAX = 4 << 20  # Go's messageLengthMax
_HEADER = struct.Struct(">IIBB")


class MessageType(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    DATA = 3


class Code(IntEnum):
    """gRPC status codes, as ttrpc uses them."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def _code(value: int) -> Code:
    try:
        return Code(value)
    except ValueError:
        return Code.UNKNOWN


class RpcError(PeerError):
    """A ttrpc call ended with a non-OK status (from the peer or locally).

    `str()` is the bare status message, so a handler raising it sends exactly
    that text to the peer.
    """

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code


class CallTimeout(RpcError):
    """Our own deadline for a call passed (not a status sent by the peer)."""


class ConnectionClosed(RpcError):
    """The connection ended before the call was answered."""


@dataclass(frozen=True)
class Frame:
    stream_id: int
    type: int
    flags: int
    payload: bytes


@dataclass(frozen=True)
class OversizedFrame:
    """A header announced more than the maximum; its data was skipped."""

    stream_id: int
    type: int
    length: int


def encode_header(length: int, stream_id: int, msg_type: int, flags: int = 0) -> bytes:
    return _HEADER.pack(length, stream_id, msg_type, flags)


def decode_header(data: bytes) -> tuple[int, int, int, int]:
    """(length, stream id, type, flags) of the first 10 bytes."""
    length, stream_id, msg_type, flags = _HEADER.unpack_from(data)
    return length, stream_id, msg_type, flags


def oversize_message(length: int, limit: int) -> str:
    return f"message length {length} exceed maximum message size of {limit}"


def encode_frame(
    stream_id: int,
    msg_type: int,
    payload: bytes,
    flags: int = 0,
    *,
    limit: int = MESSAGE_LENGTH_MAX,
) -> bytes:
    if len(payload) > limit:
        raise RpcError(Code.RESOURCE_EXHAUSTED, oversize_message(len(payload), limit))
    return encode_header(len(payload), stream_id, msg_type, flags) + payload


class FrameDecoder:
    """Incremental parser: bytes in any chunking -> whole frames, in order."""

    def __init__(self, limit: int = MESSAGE_LENGTH_MAX) -> None:
        self._limit = limit
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized frame still to discard

    def feed(self, data: bytes) -> list[Frame | OversizedFrame]:
        out: list[Frame | OversizedFrame] = []
        self._buf += data
        while True:
            if self._skip:
                dropped = min(self._skip, len(self._buf))
                del self._buf[:dropped]
                self._skip -= dropped
                if self._skip:
                    return out
            if len(self._buf) < HEADER_LEN:
                return out
            length, stream_id, msg_type, flags = decode_header(bytes(self._buf[:HEADER_LEN]))
            if length > self._limit:
                # Skip the data but stay in step: the next header follows it.
                del self._buf[:HEADER_LEN]
                self._skip = length
                out.append(OversizedFrame(stream_id, msg_type, length))
                continue
            if len(self._buf) < HEADER_LEN + length:
                return out
            payload = bytes(self._buf[HEADER_LEN : HEADER_LEN + length])
            del self._buf[: HEADER_LEN + length]
            out.append(Frame(stream_id, msg_type, flags, payload))


def encode_request(
    stream_id: int,
    service: str,
    method: str,
    payload: bytes,
    *,
    timeout_nano: int = 0,
    metadata: Mapping[str, str] | None = None,
    limit: int = MESSAGE_LENGTH_MAX,
) -> bytes:
    req = ttrpc_pb2.Request(
        service=service, method=method, payload=payload, timeout_nano=timeout_nano
    )
    for key, value in (metadata or {}).items():
        req.metadata.add(key=key.lower(), value=value)
    return encode_frame(stream_id, MessageType.REQUEST, req.SerializeToString(), limit=limit)


def encode_response(
    stream_id: int,
    payload: bytes = b"",
    *,
    code: Code = Code.OK,
    message: str = "",
    limit: int = MESSAGE_LENGTH_MAX,
) -> bytes:
    """Success omits the status, as Go does (an empty reply is a 0-byte body)."""
    resp = ttrpc_pb2.Response(payload=payload)
    if code != Code.OK:
        resp.status.code = int(code)
        resp.status.message = message
    return encode_frame(stream_id, MessageType.RESPONSE, resp.SerializeToString(), limit=limit)


def decode_request(data: bytes) -> ttrpc_pb2.Request:
    req = ttrpc_pb2.Request()
    try:
        req.ParseFromString(data)
    except DecodeError as exc:
        raise RpcError(Code.INVALID_ARGUMENT, f"malformed ttrpc request: {exc}") from exc
    return req


def response_payload(data: bytes) -> bytes:
    """The reply bytes of a Response body, or RpcError for a non-OK status."""
    resp = ttrpc_pb2.Response()
    try:
        resp.ParseFromString(data)
    except DecodeError as exc:
        raise RpcError(Code.INTERNAL, f"malformed ttrpc response: {exc}") from exc
    if resp.HasField("status") and resp.status.code != Code.OK:
        raise RpcError(_code(resp.status.code), resp.status.message)
    return resp.payload
