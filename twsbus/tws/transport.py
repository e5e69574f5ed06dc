"""The TWS socket, replacing ibapi's EReader thread and Connection with one asyncio protocol.

ibapi's reader slices a growing bytes buffer once per message, so its cost grows with the square of
a backlog and it stalls under bursts. Here ``data_received`` appends to one ``bytearray``, walks
every complete frame in it with a moving offset, and trims the consumed prefix once per read: cost
is linear in bytes. Frames go straight to ``on_frame`` on the event loop (IB's decoder, then the
wrapper), so the reader never waits for anything downstream; downstream queues are bounded there.

``handshake`` does the API handshake on a fresh connection: ``API\\0`` + the version range, then
the server's (version, connection time) frame.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable

_LEN = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024


class TwsProtocol(asyncio.Protocol):
    def __init__(self, on_lost: Callable[[Exception | None], None]) -> None:
        self.on_frame: Callable[[bytes], None] = self._handshake_frame
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.frames = 0
        self.bytes = 0
        self.last_rx = time.monotonic()  # when bytes last came in (the session probes if quiet)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        buf = self._buf
        buf += data
        self.bytes += len(data)
        frames: list[bytes] = []
        pos, end = 0, len(buf)
        with memoryview(buf) as view:
            while end - pos >= 4:
                (size,) = _LEN.unpack_from(view, pos)
                if size > MAX_FRAME:
                    self.abort()
                    return
                if end - pos - 4 < size:
                    break
                frames.append(bytes(view[pos + 4 : pos + 4 + size]))
                pos += 4 + size
        if pos:
            del buf[:pos]
        self.frames += len(frames)
        for frame in frames:
            self.on_frame(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._first.done():
            self._first.set_exception(exc or ConnectionError("TWS closed the connection"))
        self.on_lost(exc)

    def _handshake_frame(self, frame: bytes) -> None:
        if not self._first.done():
            self._first.set_result(frame)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close after what is written so far has gone out (abort drops it)."""
        if self.transport is not None:
            self.transport.close()

    async def handshake(self, min_version: int, max_version: int,
                        options: str = "") -> tuple[int, str]:
        spec = f"v{min_version}..{max_version}" + (f" {options}" if options else "")
        payload = spec.encode()
        self.write(b"API\0" + _LEN.pack(len(payload)) + payload)
        frame = await self._first
        fields = frame.split(b"\0")
        try:
            version, conn_time = int(fields[0]), fields[1].decode()
        except (ValueError, IndexError):
            raise ConnectionError(f"bad handshake answer {frame!r}") from None
        return version, conn_time
