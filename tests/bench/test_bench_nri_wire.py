"""NRI wire: ttrpc request envelope + NRI mux framing, both directions.

Small: a RunPodSandbox for a typical pod (one mux frame). Large: a
Synchronize with 40 pods, which the hook receives after every (re)connect:
well over Go's 4096-byte buffer, so it travels as two mux frames and is
reassembled here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from google.protobuf.message import Message
from pytest_benchmark.fixture import BenchmarkFixture

from dranet.nri import api_pb2
from dranet_nri_hook.mux import GO_BUFFER_SIZE, PLUGIN_SERVICE_CONN, MuxDecoder, go_frames
from dranet_nri_hook.ttrpc_wire import (
    Frame,
    FrameDecoder,
    MessageType,
    decode_request,
    encode_request,
)

from .workloads import pod_sandbox

pytestmark = pytest.mark.benchmark(group="nri-wire")
PLUGIN = "nri.pkg.api.v1alpha1.Plugin"
TIMEOUT_NANO = 2_000_000_000  # containerd's per-request budget
STREAM = 7


@dataclass(frozen=True)
class Case:
    method: str
    message: Message
    frames: int  # mux frames Go writes for it


def _case(size: str) -> Case:
    if size == "small":
        return Case("RunPodSandbox", api_pb2.RunPodSandboxRequest(pod=pod_sandbox(1)), 1)
    pods = [pod_sandbox(i, heavy=i % 4 == 0) for i in range(40)]
    return Case("Synchronize", api_pb2.SynchronizeRequest(pods=pods), 2)


def encode(method: str, message: Message) -> list[bytes]:
    frame = encode_request(
        STREAM, PLUGIN, method, message.SerializeToString(), timeout_nano=TIMEOUT_NANO
    )
    return go_frames(PLUGIN_SERVICE_CONN, frame)


def decode(chunks: list[bytes], kind: type[Message]) -> tuple[str, int, Message]:
    """Trunk reads -> mux payloads -> ttrpc frame -> Request -> NRI message."""
    mux, ttrpc = MuxDecoder(), FrameDecoder()
    frames = []
    for chunk in chunks:
        for conn, data in mux.feed(chunk):
            assert conn == PLUGIN_SERVICE_CONN
            frames += ttrpc.feed(data)
    (frame,) = frames
    assert isinstance(frame, Frame) and frame.type == MessageType.REQUEST
    req = decode_request(frame.payload)
    return req.method, req.timeout_nano, kind.FromString(req.payload)


@pytest.mark.parametrize("size", ["small", "large"])
def test_encode_request(benchmark: BenchmarkFixture, size: str) -> None:
    case = _case(size)
    chunks = benchmark(encode, case.method, case.message)
    assert len(chunks) == case.frames
    wire = b"".join(chunks)
    if size == "large":
        assert len(wire) > 2 * GO_BUFFER_SIZE
        assert int.from_bytes(chunks[0][4:8], "big") == GO_BUFFER_SIZE
    assert decode(chunks, type(case.message))[2] == case.message


@pytest.mark.parametrize("size", ["small", "large"])
def test_decode_request(benchmark: BenchmarkFixture, size: str) -> None:
    case = _case(size)
    chunks = encode(case.method, case.message)  # one read per frame Go wrote
    method, timeout, message = benchmark(decode, chunks, type(case.message))
    assert (method, timeout) == (case.method, TIMEOUT_NANO)
    assert message == case.message
    if size == "large":
        assert isinstance(message, api_pb2.SynchronizeRequest) and len(message.pods) == 40
