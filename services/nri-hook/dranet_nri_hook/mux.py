"""NRI's connection multiplexer: several byte streams over one unix socket.

Frame: 8-byte big-endian header (connection id u32, payload length u32) then
the payload. Connection 1 carries the Plugin service (the plugin serves it),
connection 2 the Runtime service (the plugin calls it). No handshake, no
close frames: end of the socket ends every logical connection.

Writing: Go's reader hands each frame to a 4096-byte bufio buffer and fails
the whole connection on a frame that does not fit, so each ttrpc message goes
out the way Go itself writes it: one frame if it is at most 4096 bytes,
otherwise the first 4096 bytes then the rest (`go_frames`). Reading: frames may
split messages anywhere; each logical connection is a plain byte stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable

from dranet.errors import ProtocolError

log = logging.getLogger(__name__)

MUX_HEADER_LEN = 8
PLUGIN_SERVICE_CONN = 1
RUNTIME_SERVICE_CONN = 2
GO_BUFFER_SIZE = 4096
# Go accepts any length; we bound it so a corrupt header cannot eat memory.
# Any legal ttrpc message (4 MiB + 10) fits.
MAX_MUX_PAYLOAD = 16 << 20
_HEADER = struct.Struct(">II")

Framing = Callable[[int, bytes], list[bytes]]


def encode_mux_frame(conn_id: int, payload: bytes) -> bytes:
    return _HEADER.pack(conn_id, len(payload)) + payload


def go_frames(conn_id: int, message: bytes) -> list[bytes]:
    """Frames for one ttrpc message, exactly as Go's bufio+mux writer emits them."""
    if len(message) <= GO_BUFFER_SIZE:
        return [encode_mux_frame(conn_id, message)]
    return [
        encode_mux_frame(conn_id, message[:GO_BUFFER_SIZE]),
        encode_mux_frame(conn_id, message[GO_BUFFER_SIZE:]),
    ]


class MuxDecoder:
    """Incremental parser: trunk bytes in any chunking -> (conn id, payload)."""

    def __init__(self, max_payload: int = MAX_MUX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max = max_payload

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while len(self._buf) >= MUX_HEADER_LEN:
            conn_id, length = _HEADER.unpack_from(self._buf)
            if length > self._max:
                # The mux has no way to resynchronise: the trunk is lost.
                raise ProtocolError(
                    f"NRI mux frame for connection {conn_id} announces {length} bytes,"
                    f" more than {self._max}",
                    hint="the peer is not speaking NRI's multiplexer protocol",
                )
            if len(self._buf) < MUX_HEADER_LEN + length:
                break
            out.append((conn_id, bytes(self._buf[MUX_HEADER_LEN : MUX_HEADER_LEN + length])))
            del self._buf[: MUX_HEADER_LEN + length]
        return out


class MuxConn:
    """One logical connection; satisfies ttrpc.ByteStream."""

    def __init__(self, mux: Mux, conn_id: int) -> None:
        self._mux = mux
        self.conn_id = conn_id
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def read(self) -> bytes:
        return await self._queue.get()

    async def write(self, frame: bytes) -> None:
        await self._mux.send(self.conn_id, frame)

    def close(self) -> None:
        # Local only, like Go: the peer learns nothing until the trunk closes.
        self._queue.put_nowait(b"")

    def _deliver(self, payload: bytes) -> None:
        if payload:
            self._queue.put_nowait(payload)


class Mux:
    """The trunk: one reader task, one write lock so frames never interleave."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        framing: Framing = go_frames,
        name: str = "nri-mux",
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._framing = framing
        self._name = name
        self._conns: dict[int, MuxConn] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""

    def open(self, conn_id: int) -> MuxConn:
        if conn_id < 1:
            raise ValueError(f"NRI mux connection id {conn_id} is reserved")
        conn = self._conns.get(conn_id)
        if conn is None:
            conn = self._conns[conn_id] = MuxConn(self, conn_id)
        return conn

    def start(self) -> None:
        """Start reading; open the connections first, frames for others are dropped."""
        self._task = asyncio.create_task(self._read_loop(), name=f"{self._name}-reader")

    async def send(self, conn_id: int, message: bytes) -> None:
        if self.closed.is_set():
            raise ConnectionResetError(f"NRI connection closed ({self.close_reason})")
        async with self._lock:
            for frame in self._framing(conn_id, message):
                self._writer.write(frame)
            await self._writer.drain()

    async def send_raw(self, data: bytes) -> None:
        """Bytes straight onto the trunk (tests of hostile peers)."""
        async with self._lock:
            self._writer.write(data)
            await self._writer.drain()

    async def _read_loop(self) -> None:
        decoder = MuxDecoder()
        reason = "end of connection"
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for conn_id, payload in decoder.feed(data):
                    conn = self._conns.get(conn_id)
                    if conn is None:
                        log.debug("%s: frame for unopened conn %d dropped", self._name, conn_id)
                    else:
                        conn._deliver(payload)
        except (OSError, ProtocolError) as exc:
            reason = str(exc)
            log.warning("%s: %s", self._name, reason)
        finally:
            self._shutdown(reason)

    def _shutdown(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        for conn in self._conns.values():
            conn.close()
        self._writer.close()

    async def close(self) -> None:
        self._shutdown("closed locally")
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
