"""Publishing data subjects: sequence numbers, conflation, bounded buffers, one flush per turn.

Data messages arrive from TWS on the reader's path, which must never wait for NATS. So producers
only record, into a per-subject ``Outbox`` that does one of three things:
- merges fields (latest value wins, for tick fields: a field that changed twice before a flush
  is sent once, with its last value);
- collects items into one message (tick-by-tick: the ticks one TWS read brought travel
  together, up to ``collect_max`` a message);
- or queues whole messages up to a bound. A queue that fills before the flush goes out at once;
  only while NATS is away does the bound drop the oldest, counted.
The first record after a flush schedules one ``flush`` for the next turn of the event loop, so
everything one TWS read produced goes out together, before the loop reads again, in one socket
write (``NatsOut``). ``seq`` is stamped at flush time, per subject, so conflation never leaves
gaps; ``ts`` is the daemon's receive time of the newest data in the message.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Protocol

import msgspec

log = logging.getLogger("twsbus.publisher")


class Out(Protocol):
    """Where flushed messages go (``NatsOut`` in the daemon)."""

    def publish(self, subject: str, payload: bytes) -> None: ...

    def flush(self) -> None: ...

_encode = msgspec.json.Encoder().encode


class Outbox:
    """What is waiting to go out on one subject."""

    __slots__ = ("collect", "collected", "collected_ts", "conflate", "dropped", "merged",
                 "merged_ts", "queue", "seq", "subject", "type_name")

    def __init__(self, subject: str, type_name: str, conflate: bool, bound: int,
                 collect: str = "") -> None:
        self.subject = subject
        self.type_name = type_name
        self.conflate = conflate
        self.merged: dict[str, Any] = {}
        self.merged_ts = 0
        #: The field that carries the collected items (``ticks``); "" when the subject does not
        #: collect.
        self.collect = collect
        self.collected: list[dict[str, Any]] = []
        self.collected_ts = 0
        self.queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=bound)
        self.seq = 0
        self.dropped = 0

    def __repr__(self) -> str:
        return (f"<Outbox {self.subject} seq={self.seq} merged={len(self.merged)} "
                f"collected={len(self.collected)} queued={len(self.queue)} "
                f"dropped={self.dropped}>")

    @property
    def empty(self) -> bool:
        return not self.merged and not self.collected and not self.queue

    def items(self, message: dict[str, Any]) -> int:
        """What ``message`` carries, as a drop counts it: its items if it collected some."""
        collected = message.get(self.collect) if self.collect else None
        return len(collected) if collected is not None else 1


class PublisherStatistics(msgspec.Struct, frozen=True):
    """A snapshot of the publisher's buffers (``Publisher.statistics()``)."""

    subjects: int
    current: int  # subjects with something waiting for the next flush
    peak: int  # the most subjects one flush wrote
    published: int
    failed: int  # NATS refused (away, its buffer full): counted in dropped too
    dropped: int  # lost from a subject's bound while NATS was away, or refused (items counted)


class Publisher:
    def __init__(self, epoch: str, bound: int = 1000, collect_max: int = 100) -> None:
        self.epoch = epoch
        #: Messages a subject keeps while NATS is away (the oldest go first, counted).
        self.bound = bound
        #: Items one collected message carries at most.
        self.collect_max = collect_max
        self._outboxes: dict[str, Outbox] = {}
        self._dirty: dict[str, Outbox] = {}
        self._scheduled = False
        self._out: Out | None = None
        self.published = 0
        self.failed = 0
        self.peak_dirty = 0

    def __repr__(self) -> str:
        return f"<Publisher subjects={len(self._outboxes)} published={self.published}>"

    # ---- producers (synchronous, on the TWS reader's path) ---------------------------------

    def outbox(self, subject: str, type_name: str, conflate: bool = False,
               collect: str = "") -> Outbox:
        box = self._outboxes.get(subject)
        if box is None:
            box = self._outboxes[subject] = Outbox(subject, type_name, conflate, self.bound,
                                                   collect)
        return box

    def forget(self, subject: str) -> None:
        """The subject's stream is gone for good (its seq restarts if it comes back)."""
        box = self._outboxes.get(subject)
        if box is not None and box.empty:
            del self._outboxes[subject]

    def merge(self, box: Outbox, fields: dict[str, Any]) -> None:
        """Latest-value-wins update of a conflating subject."""
        box.merged.update(fields)
        box.merged_ts = time.time_ns()
        self._mark(box)

    def merge_field(self, box: Outbox, field: str, value: Any) -> None:
        """``merge`` of one field: the tick path's call."""
        box.merged[field] = value
        box.merged_ts = time.time_ns()
        if box.subject not in self._dirty:
            self._mark(box)

    def add(self, box: Outbox, item: dict[str, Any]) -> None:
        """Collect one item (a tick-by-tick tick) into the subject's next message."""
        box.collected.append(item)
        box.collected_ts = time.time_ns()
        if len(box.collected) >= self.collect_max:
            self._enqueue(box, self._take_collected(box))
        self._mark(box)

    def offer(self, box: Outbox, message: dict[str, Any]) -> None:
        """Queue one whole message (bars, the book, status...)."""
        # Keep order: merged fields and collected items go out before this message.
        if box.merged:
            self._enqueue(box, self._take_merged(box))
        if box.collected:
            self._enqueue(box, self._take_collected(box))
        self._enqueue(box, {"ts": time.time_ns(), **message})
        self._mark(box)

    def _enqueue(self, box: Outbox, message: dict[str, Any]) -> None:
        if len(box.queue) == box.queue.maxlen:
            if self._out is not None:
                # One TWS read brought more than the bound (a tick-by-tick burst): what is
                # queued goes out now rather than the oldest being lost. Only while NATS is
                # away does the bound drop (counted: the items of a collected message).
                self._publish(self._out, box)
            else:
                box.dropped += box.items(box.queue[0])
        box.queue.append(message)

    def _mark(self, box: Outbox) -> None:
        if box.subject not in self._dirty:
            self._dirty[box.subject] = box
            self.flush_soon()

    def _take_merged(self, box: Outbox) -> dict[str, Any]:
        message = {"type": box.type_name, "ts": box.merged_ts, **box.merged}
        box.merged = {}
        return message

    def _take_collected(self, box: Outbox) -> dict[str, Any]:
        message = {"type": box.type_name, "ts": box.collected_ts, box.collect: box.collected}
        box.collected = []
        return message

    def dropped(self) -> int:
        return sum(box.dropped for box in self._outboxes.values())

    def statistics(self) -> PublisherStatistics:
        return PublisherStatistics(subjects=len(self._outboxes), current=len(self._dirty),
                                   peak=self.peak_dirty, published=self.published,
                                   failed=self.failed, dropped=self.dropped())

    # ---- the flush -------------------------------------------------------------------------

    def attach(self, out: Out | None) -> None:
        """Where flushes go; None while NATS is being replaced (records wait, bounded)."""
        self._out = out
        self.flush_soon()

    def flush_soon(self) -> None:
        """Flush on the loop's next turn (once, however many records come before it)."""
        if self._dirty and not self._scheduled and self._out is not None:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        out = self._out
        if out is None or not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        self.peak_dirty = max(self.peak_dirty, len(dirty))
        for box in dirty.values():
            self._publish(out, box)
        out.flush()

    def _publish(self, out: Out, box: Outbox) -> None:
        """Everything ``box`` holds, in order, each message with its seq."""
        messages = list(box.queue)
        box.queue.clear()
        if box.merged:
            messages.append(self._take_merged(box))
        if box.collected:
            messages.append(self._take_collected(box))
        for message in messages:
            box.seq += 1
            message["seq"] = box.seq
            message["epoch"] = self.epoch
            try:
                out.publish(box.subject, _encode(message))
                self.published += 1
            except Exception as exc:  # NATS away and its buffer full: counted, not raised
                self.failed += 1
                box.dropped += box.items(message)
                log.debug("publish to %s failed: %r", box.subject, exc)
