"""Byte-level tests: our encoders and decoders against frames verified with Go.

The hex strings are from the reference (captured from, or accepted by, Go
ttrpc + NRI's mux); the others are worked out by hand field by field.
"""

from __future__ import annotations

import pytest

from dranet.errors import ProtocolError
from dranet.nri import api_pb2, ttrpc_pb2
from dranet_nri_hook.mux import MuxDecoder, encode_mux_frame, go_frames
from dranet_nri_hook.ttrpc_wire import (
    MESSAGE_LENGTH_MAX,
    Code,
    Frame,
    FrameDecoder,
    MessageType,
    OversizedFrame,
    RpcError,
    decode_request,
    encode_request,
    encode_response,
    response_payload,
)

RUNTIME = "nri.pkg.api.v1alpha1.Runtime"
PLUGIN = "nri.pkg.api.v1alpha1.Plugin"

# nri.md §1.5: plugin -> runtime RegisterPlugin{pyplug, 10}, 5 s timeout.
REGISTER_CALL = bytes.fromhex(
    "000000020000004c000000420000000101000a1c6e72692e706b672e6170692e7631616c706861312e"
    "52756e74696d65120e5265676973746572506c7567696e1a0c0a067079706c7567120231302080e497d012"
)
# ... and the runtime's answer: Empty, OK (captured from NRI 0.6.1).
REGISTER_REPLY = bytes.fromhex("000000020000000a00000000000000010200")
# Appendix A: Configure request from the real NRI 0.6.1 runtime.
CONFIGURE_CALL = bytes.fromhex(
    "000000010000004f000000450000000101000a1b6e72692e706b672e6170692e7631616c706861312e"
    "506c7567696e1209436f6e6669677572651a15120a636f6e7461696e6572641a0776312e372e3234"
    "20ad89c6b907"
)
# Appendix B: ConfigureResponse{events = 0xF}, stream 1.
CONFIGURE_REPLY = bytes.fromhex("000000010000000e000000040000000102001202100f")
# Appendix C: Unimplemented error reply on stream 5.
UNIMPLEMENTED_REPLY = bytes.fromhex(
    "0000000100000024" "0000001a" "00000005" "02" "00"
    "0a18080c12146d6574686f642052756e506f6453616e64626f78"
)  # fmt: skip


def test_register_plugin_call_matches_verified_bytes() -> None:
    payload = api_pb2.RegisterPluginRequest(plugin_name="pyplug", plugin_idx="10")
    frame = encode_request(
        1, RUNTIME, "RegisterPlugin", payload.SerializeToString(), timeout_nano=5_000_000_000
    )
    assert go_frames(2, frame) == [REGISTER_CALL]


def test_register_plugin_call_by_hand() -> None:
    # Built field by field for dranet's own identity: name "dranet", index "00".
    inner = b"\x0a\x06dranet" + b"\x12\x0200"
    body = (
        b"\x0a\x1c" + RUNTIME.encode()
        + b"\x12\x0e" + b"RegisterPlugin"
        + b"\x1a" + bytes([len(inner)]) + inner
    )  # fmt: skip
    ttrpc = len(body).to_bytes(4, "big") + b"\x00\x00\x00\x01" + b"\x01\x00" + body
    expected = b"\x00\x00\x00\x02" + len(ttrpc).to_bytes(4, "big") + ttrpc
    request = api_pb2.RegisterPluginRequest(plugin_name="dranet", plugin_idx="00")
    frame = encode_request(1, RUNTIME, "RegisterPlugin", request.SerializeToString())
    assert go_frames(2, frame) == [expected]
    assert len(expected) == 8 + 10 + 2 + 28 + 2 + 14 + 2 + 12


def test_register_plugin_reply_decodes_to_empty_ok() -> None:
    (conn, data), = MuxDecoder().feed(REGISTER_REPLY)  # fmt: skip
    assert conn == 2
    (frame,) = FrameDecoder().feed(data)
    assert isinstance(frame, Frame)
    assert frame == Frame(stream_id=1, type=MessageType.RESPONSE, flags=0, payload=b"")
    assert response_payload(frame.payload) == b""
    # And we produce exactly those bytes for a successful empty reply.
    assert go_frames(2, encode_response(1)) == [REGISTER_REPLY]


def test_configure_call_from_real_runtime_decodes() -> None:
    ((conn, data),) = MuxDecoder().feed(CONFIGURE_CALL)
    assert conn == 1
    (frame,) = FrameDecoder().feed(data)
    assert isinstance(frame, Frame)
    assert (frame.stream_id, frame.type, frame.flags) == (1, MessageType.REQUEST, 0)
    req = decode_request(frame.payload)
    assert (req.service, req.method, req.timeout_nano) == (PLUGIN, "Configure", 1999733933)
    cfg = api_pb2.ConfigureRequest.FromString(req.payload)
    assert (cfg.runtime_name, cfg.runtime_version) == ("containerd", "v1.7.24")


def test_configure_reply_and_error_reply_bytes() -> None:
    reply = api_pb2.ConfigureResponse(events=0xF).SerializeToString()
    assert go_frames(1, encode_response(1, reply)) == [CONFIGURE_REPLY]
    error = encode_response(5, code=Code.UNIMPLEMENTED, message="method RunPodSandbox")
    assert go_frames(1, error) == [UNIMPLEMENTED_REPLY]
    (frame,) = FrameDecoder().feed(UNIMPLEMENTED_REPLY[8:])
    assert isinstance(frame, Frame)
    with pytest.raises(RpcError) as caught:
        response_payload(frame.payload)
    assert caught.value.code == Code.UNIMPLEMENTED
    assert str(caught.value) == "method RunPodSandbox"


def test_reassembly_from_any_split() -> None:
    stream = REGISTER_CALL + CONFIGURE_CALL + REGISTER_REPLY
    for size in (1, 3, 7, 8, 9, 50, len(stream)):
        mux, ttrpc = MuxDecoder(), FrameDecoder()
        frames: list[Frame | OversizedFrame] = []
        per_conn: dict[int, bytes] = {}
        for start in range(0, len(stream), size):
            for conn, data in mux.feed(stream[start : start + size]):
                per_conn[conn] = per_conn.get(conn, b"") + data
        assert sorted(per_conn) == [1, 2]
        # Logical streams split anywhere (one byte at a time) still parse.
        for byte in per_conn[2]:
            frames += ttrpc.feed(bytes([byte]))
        assert [f.type for f in frames] == [MessageType.REQUEST, MessageType.RESPONSE]


def test_ttrpc_message_split_across_many_mux_frames() -> None:
    frame = encode_request(3, PLUGIN, "Synchronize", b"x" * 10_000)
    chunks = [encode_mux_frame(1, frame[i : i + 999]) for i in range(0, len(frame), 999)]
    mux, ttrpc = MuxDecoder(), FrameDecoder()
    out = [f for c in chunks for _, data in mux.feed(c) for f in ttrpc.feed(data)]
    assert len(out) == 1
    assert isinstance(out[0], Frame)
    assert decode_request(out[0].payload).payload == b"x" * 10_000


@pytest.mark.parametrize("payload_len", [4096, 4097, 200_000])
def test_go_write_rule(payload_len: int) -> None:
    message = encode_request(1, PLUGIN, "M", b"")  # header + small body
    message = message[:10] + b"p" * (payload_len - 10)
    frames = go_frames(2, message)
    decoded = MuxDecoder().feed(b"".join(frames))
    if len(message) <= 4096:
        assert len(frames) == 1
    else:
        assert len(frames) == 2
        assert len(decoded[0][1]) == 4096  # exactly Go's bufio size first
    assert b"".join(data for _, data in decoded) == message


def test_big_message_is_exactly_two_mux_frames() -> None:
    big = api_pb2.RunPodSandboxRequest(
        pod=api_pb2.PodSandbox(uid="u", annotations={"k": "v" * 300_000})
    )
    frame = encode_request(7, PLUGIN, "RunPodSandbox", big.SerializeToString())
    wire = b"".join(go_frames(1, frame))
    (first_conn, first), (second_conn, second) = MuxDecoder().feed(wire)
    assert (first_conn, second_conn) == (1, 1)
    assert len(first) == 4096
    assert len(second) == len(frame) - 4096
    assert int.from_bytes(wire[4:8], "big") == 4096


def test_oversized_frame_is_skipped_and_the_next_frame_parses() -> None:
    limit = 64
    decoder = FrameDecoder(limit)
    big = (limit + 1).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"\x01\x00" + b"z" * (limit + 1)
    good = encode_request(5, PLUGIN, "Configure", b"")
    out: list[Frame | OversizedFrame] = []
    for byte in big + good:  # arrives in the worst possible chunking
        out += decoder.feed(bytes([byte]))
    assert out[0] == OversizedFrame(stream_id=3, type=MessageType.REQUEST, length=limit + 1)
    assert isinstance(out[1], Frame)
    assert out[1].stream_id == 5
    assert len(out) == 2


def test_sender_refuses_oversized_messages() -> None:
    with pytest.raises(RpcError) as caught:
        encode_request(1, PLUGIN, "M", b"\0" * MESSAGE_LENGTH_MAX)
    assert caught.value.code == Code.RESOURCE_EXHAUSTED
    assert "exceed maximum message size of 4194304" in str(caught.value)


def test_malformed_envelopes_raise_clean_errors() -> None:
    with pytest.raises(RpcError) as bad_request:
        decode_request(b"\x0a\xff\xff")
    assert bad_request.value.code == Code.INVALID_ARGUMENT
    with pytest.raises(RpcError) as bad_response:
        response_payload(b"\x12\x05ab")
    assert bad_response.value.code == Code.INTERNAL


def test_mux_rejects_a_corrupt_length() -> None:
    with pytest.raises(ProtocolError, match="announces"):
        MuxDecoder(max_payload=100).feed(encode_mux_frame(1, b"a" * 101))


def test_request_metadata_and_status_envelope_fields() -> None:
    frame = encode_request(9, PLUGIN, "M", b"\x01", timeout_nano=7, metadata={"TraceParent": "x"})
    req = ttrpc_pb2.Request.FromString(frame[10:])
    assert [(m.key, m.value) for m in req.metadata] == [("traceparent", "x")]
    resp = ttrpc_pb2.Response.FromString(encode_response(9, code=Code.INTERNAL, message="m")[10:])
    assert (resp.status.code, resp.status.message, resp.payload) == (13, "m", b"")
