"""Data subjects out to NATS in one socket write per flush, without waiting for another task.

nats-py's ``publish`` is a coroutine: it frames a PUB, appends it to the client's pending buffer
and wakes the client's flusher task, which writes the buffer to the socket on a later turn of the
loop. For the tick path that was two more turns per TWS read (a publisher task, then nats-py's
flusher), and under load each turn waits behind whatever else is ready: at 10k ticks/s, taking
them out moved the latency twsbus adds at p50 from +245-258 us to +110-197 us (BENCHMARKS.md,
"Latency"). ``NatsOut`` frames and buffers the same way, synchronously, and ``flush`` writes the
buffer to the socket at once, keeping nats-py's own rules:

- while NATS is away, messages wait in nats-py's pending buffer, which nats-py writes after it
  reconnects, up to its ``pending_size``; past that ``publish`` raises ``OutboundBufferLimitError``
  (the caller counts the drop);
- a payload over the server's ``max_payload`` raises ``MaxPayloadError``, and a subject the server
  would refuse (whitespace, control characters, empty tokens, over ``MAX_SUBJECT``) raises
  ``BadSubjectError``: a refused PUB makes nats-server close the connection, so nothing the
  daemon publishes may reach it unchecked;
- when the socket is backed up (the kernel buffer is full and asyncio's is over its high-water
  mark), ``flush`` leaves the write to nats-py's flusher, which waits for the socket to drain; the
  pending buffer then fills up to ``pending_size`` and further messages are refused, not queued
  without bound.

It reads attributes nats-py keeps private (``_pending``, ``_pending_data_size``,
``_max_pending_size``, ``_flush_queue``, ``_transport``), unchanged from nats-py 2.9 to 2.16;
``NatsOut`` checks for them when it is made and says which nats-py it needs if they are gone.
tests/daemon/test_natsout.py pins the behaviour against a real nats-server.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import (
    BadSubjectError,
    ConnectionClosedError,
    MaxPayloadError,
    OutboundBufferLimitError,
)

#: nats-server refuses a control line (``PUB <subject> <size>``) over 4096 bytes and closes the
#: connection; a subject is kept well below that.
MAX_SUBJECT = 1024


def check_subject(subject: str) -> None:
    """Raise BadSubjectError for a subject the server would answer with an error (and a dropped
    connection): empty tokens, whitespace or control characters, or too long."""
    if (not subject or len(subject) > MAX_SUBJECT or not subject.isprintable()
            or " " in subject or ".." in subject or subject[0] == "." or subject[-1] == "."):
        raise BadSubjectError


_PRIVATE = ("_pending", "_pending_data_size", "_max_pending_size", "_flush_queue", "_transport",
            "stats")


class NatsOut:
    """Synchronous ``publish`` into a nats-py client's buffer, and ``flush`` to its socket."""

    def __init__(self, nc: NATS) -> None:
        missing = [name for name in _PRIVATE if not hasattr(nc, name)]
        if missing:
            version = importlib.metadata.version("nats-py")
            raise RuntimeError(f"twsbus needs nats-py 2.9 to 2.x; nats-py {version} has no "
                               f"{', '.join(missing)}")
        self.nc = nc
        self._checked: set[str] = set()  # subjects already found valid
        self.direct_writes = 0  # flushes written here
        self.deferred = 0  # flushes left to nats-py's flusher (socket backed up, or not TCP)

    def __repr__(self) -> str:
        return f"<NatsOut direct={self.direct_writes} deferred={self.deferred}>"

    def publish(self, subject: str, payload: bytes) -> None:
        nc: Any = self.nc
        if nc.is_closed:
            raise ConnectionClosedError
        size = len(payload)
        if size > nc.max_payload > 0:
            raise MaxPayloadError
        if subject not in self._checked:
            check_subject(subject)
            if len(self._checked) < 100_000:
                self._checked.add(subject)
        cmd = b"PUB %s %d\r\n%s\r\n" % (subject.encode(), size, payload)
        limit = nc._max_pending_size
        if limit > 0 and nc._pending_data_size + len(cmd) > limit:
            raise OutboundBufferLimitError
        nc._pending.append(cmd)
        nc._pending_data_size += len(cmd)
        nc.stats["out_msgs"] += 1
        nc.stats["out_bytes"] += size

    def flush(self) -> None:
        """Write what is pending now, or hand it to nats-py's flusher if the socket is busy."""
        nc: Any = self.nc
        if not nc._pending or not nc.is_connected:
            return  # nothing to write, or NATS is away: nats-py writes the buffer on reconnect
        writer = getattr(nc._transport, "_io_writer", None)  # TCP (and TLS); not websocket
        transport = getattr(writer, "transport", None)
        if transport is not None and not transport.is_closing() and (
                transport.get_write_buffer_size() < transport.get_write_buffer_limits()[1]):
            pending = nc._pending
            nc._pending = []
            nc._pending_data_size = 0
            transport.writelines(pending)
            self.direct_writes += 1
            return
        self.deferred += 1
        queue: asyncio.Queue[asyncio.Future[Any]] = nc._flush_queue
        if queue.empty():  # the same kick nats-py's own publish gives its flusher
            queue.put_nowait(asyncio.get_running_loop().create_future())
