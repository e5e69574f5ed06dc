"""The order events' one writer: in order, bounded, retried, never silently lost.

Order callbacks arrive on the TWS reader's path, which must never wait for NATS; JetStream
publishes wait for an acknowledgement. So the desk only ``put``s (synchronously) and one task
``run``s the backlog in arrival order: publish the event with its ``Nats-Msg-Id``, then write the
order's record to the journal. While NATS or JetStream is away the head of the backlog is retried
(0.1 s doubling to 2 s) and the rest waits behind it, so one order's events are never reordered.
The backlog is bounded; an event that finds it full is counted in ``dropped`` and logged as an
error, never lost without a word.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

import msgspec

from twsbus.orders.events import UNKNOWN, OrderEvent, OrderRecord
from twsbus.orders.journal import Journal

log = logging.getLogger("twsbus.orders")

_encode = msgspec.json.Encoder().encode


class Write(msgspec.Struct):
    """One item of the backlog: an event to publish and its order's record after it (no key:
    nothing to journal)."""

    subject: str
    event: OrderEvent
    msg_id: str
    key: str = ""
    record: bytes = b""


class EventWriter:
    def __init__(self, journal: Callable[[], Journal | None], bound: int = 100_000) -> None:
        self.journal = journal
        self._backlog: asyncio.Queue[Write] = asyncio.Queue(bound)
        self.dropped = 0

    def __repr__(self) -> str:
        return f"<EventWriter backlog={self.backlog} dropped={self.dropped}>"

    @property
    def backlog(self) -> int:
        return self._backlog.qsize()

    def put(self, record: OrderRecord, event: OrderEvent) -> None:
        self._put(Write(record.subject, event, msg_id(record, event), record.key,
                        _encode(record)))

    def put_plain(self, subject: str, event: OrderEvent, msg_id: str) -> None:
        """An event that belongs to no order (the desk's own state)."""
        self._put(Write(subject, event, msg_id))

    def _put(self, item: Write) -> None:
        try:
            self._backlog.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("orders: backlog full (%d): %s event seq %d on %s NOT kept",
                      self._backlog.maxsize, item.event.type, item.event.seq, item.subject)

    async def run(self) -> None:
        delay = 0.1
        while True:
            item = await self._backlog.get()
            while True:
                journal = self.journal()
                if journal is not None:
                    try:
                        await journal.publish(item.subject, item.event, item.msg_id)
                        if item.key:
                            await journal.put(item.key, item.record)
                        delay = 0.1
                        break
                    except Exception as exc:  # NATS away or JetStream busy: try again
                        log.warning("orders: could not keep %s seq %d: %r", item.subject,
                                    item.event.seq, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


def msg_id(record: OrderRecord, event: OrderEvent) -> str:
    """A Nats-Msg-Id made of TWS facts: the same fact, however it arrives, is kept once."""
    if event.type in ("exec", "commission"):
        exec_id = (event.execution or event.commissionReport or {}).get("execId")
        return f"{event.type}:{exec_id}"
    if event.type in ("order", "status") and event.status != UNKNOWN and not event.reason:
        signature = record.lastOrder if event.type == "order" else record.lastStatus
        digest = hashlib.blake2b(signature.encode(), digest_size=8).hexdigest()
        return f"{event.type}:{record.permId or record.key}:{digest}"
    return f"{event.type}:{record.key}:{event.seq}"
