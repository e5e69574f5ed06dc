"""Outbound pacing: a token bucket in front of every message the daemon sends to TWS.

TWS allows 50 messages a second per client and answers more with error 100 (and, persisting,
a disconnect). Every encoded request goes into a bounded FIFO; one task takes messages out at
``rate`` per second (with a small ``burst`` so that any one-second window stays under the limit:
burst + rate <= 50) and writes them. Requests queue rather than fail; only a full queue refuses,
and its depth, peak and totals are visible in status.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from twsbus.errors import BudgetExhausted


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def __repr__(self) -> str:
        return f"<TokenBucket {self.rate}/s burst={self.burst} tokens={self._tokens:.1f}>"

    def take(self) -> float:
        """Take a token; returns 0 when one was available, else the seconds to wait for one."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class PacedSender:
    """A bounded queue of framed messages drained through a token bucket."""

    def __init__(self, rate: float = 45.0, burst: int = 5, max_queue: int = 10_000) -> None:
        self.bucket = TokenBucket(rate, burst)
        self.max_queue = max_queue
        self._queue: collections.deque[bytes] = collections.deque()
        self._wakeup = asyncio.Event()
        self._write: Callable[[bytes], None] | None = None
        self.sent = 0
        self.peak = 0
        self.refused = 0
        self.discarded = 0

    def __repr__(self) -> str:
        return f"<PacedSender queued={len(self._queue)} peak={self.peak} sent={self.sent}>"

    @property
    def queued(self) -> int:
        return len(self._queue)

    def attach(self, write: Callable[[bytes], None] | None) -> None:
        """Point the sender at a new connection's writer (None while disconnected). Messages
        queued for a previous connection are discarded: their request ids died with it."""
        self._write = write
        self.discarded += len(self._queue)
        self._queue.clear()
        self._wakeup.set()

    def send(self, message: bytes) -> None:
        if len(self._queue) >= self.max_queue:
            self.refused += 1
            raise BudgetExhausted(
                f"outbound TWS queue is full ({self.max_queue} messages waiting for pacing)"
            )
        self._queue.append(message)
        self.peak = max(self.peak, len(self._queue))
        self._wakeup.set()

    async def run(self) -> None:
        """Drain the queue forever (the owner cancels this task)."""
        while True:
            if not self._queue or self._write is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self.bucket.take()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            message = self._queue.popleft()
            if self._write is not None:
                self._write(message)
                self.sent += 1
