"""Outbound pacing: a token bucket in front of every message the daemon sends to TWS.

TWS allows 50 messages a second per client and answers more with error 100 (and, persisting,
a disconnect). Every encoded request goes into a bounded FIFO; one task takes messages out at
``rate`` per second (with a small ``burst`` so that any one-second window stays under the limit:
burst + rate <= 50) and writes them. Requests queue rather than fail; only a full queue refuses
(``max_queue`` messages waiting), and its depth, peak and totals are visible in status.

A queued message can be taken back. ``send`` returns the message's queue entry, and a
``Ticket`` names the entries one request produced; ``withdraw(ticket)`` takes them all back if
none has been written yet (the request never reached TWS, so nothing needs cancelling) and says
False if one has. Withdrawn entries stay in the deque, emptied, until the drain reaches them and
skips them without spending a token; they no longer count as queued, and when more than
``max_queue`` of them pile up behind a slow head the deque is compacted, so it holds at most
about twice ``max_queue`` entries. The probe goes to the front (``first=True``), still paced,
so a backlog of requests cannot make a live link look dead, nor a full queue refuse it.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import time
from collections.abc import Callable, Iterable

import msgspec

from twsbus.errors import BudgetExhausted


class TokenBucket:
    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def __repr__(self) -> str:
        return f"<TokenBucket {self.rate}/s burst={self.burst} tokens={self._tokens:.1f}>"

    def take(self) -> float:
        """Take a token; returns 0 when one was available, else the seconds to wait for one
        (and takes nothing)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class EntryState(enum.IntEnum):
    QUEUED = 0
    WRITTEN = 1
    WITHDRAWN = 2
    DISCARDED = 3  # dropped unwritten with its connection


class Entry:
    """One framed message in the queue, and what became of it."""

    __slots__ = ("message", "state")

    def __init__(self, message: bytes) -> None:
        self.message = message
        self.state = EntryState.QUEUED

    def __repr__(self) -> str:
        return f"<Entry {self.state.name} {len(self.message)}B>"


class Ticket:
    """The queue entries one request produced (EClient may frame a call as several messages).
    Hand it to ``withdraw`` when the caller gives up on the request."""

    __slots__ = ("entries", "method")

    def __init__(self, method: str, entries: Iterable[Entry]) -> None:
        self.method = method
        self.entries = tuple(entries)

    def __repr__(self) -> str:
        states = ",".join(e.state.name for e in self.entries) or "nothing queued"
        return f"<Ticket {self.method} {states}>"

    @property
    def written(self) -> bool:
        """Whether any of the request's messages reached the socket."""
        return any(e.state is EntryState.WRITTEN for e in self.entries)


class PacingStatistics(msgspec.Struct, frozen=True):
    """A snapshot of the outbound queue (``PacedSender.statistics()``)."""

    current: int  # waiting to be written
    peak: int
    sent: int
    refused: int  # past the bound: the caller got 429
    discarded: int  # queued for a connection that died: their request ids died with it
    withdrawn: int  # taken back unsent: their callers had given up


class PacedSender:
    """A bounded queue of framed messages drained through a token bucket."""

    def __init__(self, rate: float = 45.0, burst: int = 5, max_queue: int = 10_000,
                 bucket: TokenBucket | None = None) -> None:
        self.bucket = bucket or TokenBucket(rate, burst)
        self.max_queue = max_queue
        self._queue: collections.deque[Entry] = collections.deque()
        self._live = 0  # entries still QUEUED (the deque also holds withdrawn ones)
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing waits to be written
        self._idle.set()
        self._write: Callable[[bytes], None] | None = None
        self.sent = 0
        self.peak = 0
        self.refused = 0
        self.discarded = 0
        self.withdrawn = 0

    def __repr__(self) -> str:
        return (f"<PacedSender queued={self._live} peak={self.peak} sent={self.sent} "
                f"withdrawn={self.withdrawn}>")

    def statistics(self) -> PacingStatistics:
        return PacingStatistics(current=self._live, peak=self.peak, sent=self.sent,
                                refused=self.refused, discarded=self.discarded,
                                withdrawn=self.withdrawn)

    @property
    def queued(self) -> int:
        """Messages waiting to be written (withdrawn ones do not count)."""
        return self._live

    @property
    def held(self) -> int:
        """Entries the queue holds, withdrawn ones not yet skipped included (the memory bound)."""
        return len(self._queue)

    def attach(self, write: Callable[[bytes], None] | None) -> None:
        """Point the sender at a new connection's writer (None while disconnected). Messages
        queued for a previous connection are discarded: their request ids died with it."""
        self._write = write
        self.discarded += self._live
        for entry in self._queue:
            if entry.state is EntryState.QUEUED:
                entry.state = EntryState.DISCARDED
                entry.message = b""
        self._queue.clear()
        self._live = 0
        self._idle.set()
        self._wakeup.set()

    def send(self, message: bytes, *, first: bool = False) -> Entry:
        """Queue a framed message; raises BudgetExhausted when ``max_queue`` messages are
        already waiting. ``first`` puts it at the front, past the bound: the session's probe,
        one at a time."""
        if self._live >= self.max_queue and not first:
            self.refused += 1
            raise BudgetExhausted(
                f"outbound TWS queue is full ({self.max_queue} messages waiting for pacing)"
            )
        entry = Entry(message)
        if first:
            self._queue.appendleft(entry)
        else:
            self._queue.append(entry)
        self._live += 1
        self._idle.clear()
        if self._live > self.peak:
            self.peak = self._live
        if len(self._queue) > 2 * self.max_queue:
            self._compact()
        self._wakeup.set()
        return entry

    def withdraw(self, ticket: Ticket) -> bool:
        """Take back a request's messages if none has been written: True then (TWS never saw
        the request), False if one was (the rest stay queued, so TWS gets the whole request)."""
        entries = ticket.entries
        if any(e.state is EntryState.WRITTEN for e in entries):
            return False
        for entry in entries:
            if entry.state is EntryState.QUEUED:
                entry.state = EntryState.WITHDRAWN
                entry.message = b""
                self._live -= 1
                self.withdrawn += 1
        if not self._live:
            self._idle.set()
        return True

    def pump(self) -> float:
        """Write queued messages while tokens last. Returns the seconds until the next token
        when messages wait for one, else 0 (queue empty, or no connection to write to)."""
        queue, write = self._queue, self._write
        if write is None:
            return 0.0
        while queue:
            if queue[0].state is not EntryState.QUEUED:
                queue.popleft()  # withdrawn: skipped without a token
                continue
            wait = self.bucket.take()
            if wait > 0:
                return wait
            entry = queue.popleft()
            entry.state = EntryState.WRITTEN
            self._live -= 1
            write(entry.message)
            entry.message = b""
            self.sent += 1
        self._idle.set()
        return 0.0

    async def drained(self) -> None:
        """Return once every queued message is written (or discarded with its connection)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Drain the queue forever (the owner cancels this task)."""
        while True:
            wait = self.pump()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                self._wakeup.clear()
                await self._wakeup.wait()

    def _compact(self) -> None:
        # Only reached when more than max_queue withdrawn entries wait behind the head, so the
        # O(n) rebuild is paid at most once per max_queue withdrawals.
        self._queue = collections.deque(e for e in self._queue if e.state is EntryState.QUEUED)
