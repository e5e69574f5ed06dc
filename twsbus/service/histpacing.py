"""IB's historical-data limits, kept for the whole desk: a fair, rule-aware queue.

IB refuses historical requests with error 162 (a "pacing violation", and after repeats a ban of
minutes) when, on one connection:

- more than ``window_max`` requests (60) go out in any ``window`` (600 s); ``BID_ASK`` requests
  count ``bidask_weight`` (2) times;
- an identical request is repeated within ``identical_gap`` (15 s);
- more than ``burst_max`` (5) requests for the same contract, exchange and tick type go out
  within ``burst_window`` (2 s);
- more than ``max_open`` (50) are open at once.

Each strategy alone cannot know what the others asked, so the daemon keeps the rules for all of
them. ``HistQueue`` is the pure core (no asyncio, the time passed in): ``submit`` a request under
its requester's name, ask what is ``due`` now (never anything that would break a rule), and when
the next one can be (``next_time``). Requesters are served round robin, so one process asking for
500 series does not starve another asking for one. ``earliest`` tells, before queueing, when a
request could go at the soonest, so a caller whose own timeout cannot be met is refused with 429
and a ``retry_after`` instead of timing out.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import msgspec

from twsbus.errors import BudgetExhausted

#: Who is asking: set per request by the NATS side (the requester's inbox), read here so that
#: requesters take turns.
REQUESTER: ContextVar[str] = ContextVar("twsbus_requester", default="")

#: The queries IB paces as historical data (the hist_bars subscription is paced too).
HISTORICAL_OPS = frozenset({"historical_data", "historical_ticks", "head_timestamp",
                            "histogram_data"})


class HistRules(msgspec.Struct, frozen=True, kw_only=True):
    """IB's documented limits (TWS API, "Historical Data Limitations"); the simulator takes the
    same names, so tests can shrink the ten-minute window and keep the rules' shape."""

    window: float = 600.0
    window_max: int = 60
    identical_gap: float = 15.0
    burst_window: float = 2.0
    burst_max: int = 5
    bidask_weight: int = 2
    max_open: int = 50


@dataclass(eq=False)
class Pending:
    id: int
    requester: str
    identity: Hashable  # the whole request: identical ones share it
    burst_key: Hashable  # contract, exchange, tick type
    weight: int
    submitted: float
    granted: float | None = None


@dataclass
class HistQueue:
    rules: HistRules = field(default_factory=HistRules)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _queues: dict[str, collections.deque[Pending]] = field(default_factory=dict)
    _turn: collections.deque[str] = field(default_factory=collections.deque)
    _sent: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    _last_identical: dict[Hashable, float] = field(default_factory=dict)
    _burst: dict[Hashable, collections.deque[float]] = field(default_factory=dict)
    open: int = 0
    granted: int = 0
    longest_wait: float = 0.0

    def __repr__(self) -> str:
        return (f"<HistQueue queued={self.queued} open={self.open} "
                f"window={self.window_used(None)}/{self.rules.window_max}>")

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def submit(self, requester: str, identity: Hashable, burst_key: Hashable, weight: int,
               now: float) -> Pending:
        item = Pending(next(self._ids), requester, identity, burst_key, weight, now)
        queue = self._queues.get(requester)
        if queue is None:
            queue = self._queues[requester] = collections.deque()
            self._turn.append(requester)
        queue.append(item)
        return item

    def withdraw(self, item: Pending) -> None:
        queue = self._queues.get(item.requester)
        if queue is not None and item in queue:
            queue.remove(item)
            self._drop_empty(item.requester)

    def done(self, item: Pending) -> None:
        """A granted request finished (answered, failed or cancelled): no longer open."""
        if item.granted is not None:
            self.open = max(0, self.open - 1)

    def due(self, now: float) -> list[Pending]:
        """Grant what may go now, fairly: one request per requester per round."""
        granted: list[Pending] = []
        progress = True
        while progress and self._turn:
            progress = False
            for _ in range(len(self._turn)):
                requester = self._turn[0]
                self._turn.rotate(-1)
                queue = self._queues[requester]
                head = queue[0]
                if self._allowed_at(head, now) <= now:
                    queue.popleft()
                    self._grant(head, now)
                    granted.append(head)
                    self._drop_empty(requester)
                    progress = True
                    break  # the next round starts with the following requester
        return granted

    def next_time(self, now: float) -> float | None:
        """When some queued request could go (None: nothing queued, or only the open-count
        limit holds them: a ``done`` frees them)."""
        times = [self._allowed_at(q[0], now) for q in self._queues.values()]
        finite = [t for t in times if t != float("inf")]
        return min(finite) if finite else None

    def earliest(self, identity: Hashable, burst_key: Hashable, weight: int,
                 now: float) -> float:
        """The soonest a new request could go if it were alone in the queue."""
        return self._allowed_at(Pending(0, "", identity, burst_key, weight, now), now)

    def window_used(self, now: float | None) -> int:
        if now is not None:
            self._expire(now)
        return sum(w for _, w in self._sent)

    # ---- the rules ------------------------------------------------------------------------

    def _allowed_at(self, item: Pending, now: float) -> float:
        rules = self.rules
        self._expire(now)
        if self.open >= rules.max_open:
            return float("inf")
        at = now
        last = self._last_identical.get(item.identity)
        if last is not None:
            at = max(at, last + rules.identical_gap)
        burst = self._burst.get(item.burst_key)
        if burst and len(burst) >= rules.burst_max:
            at = max(at, burst[-rules.burst_max] + rules.burst_window)
        used = sum(w for _, w in self._sent)
        if used + item.weight > rules.window_max:
            # The window frees weight as old sends leave it: when will enough have left?
            need = used + item.weight - rules.window_max
            for sent_at, weight in self._sent:
                need -= weight
                if need <= 0:
                    at = max(at, sent_at + rules.window)
                    break
        return at

    def _grant(self, item: Pending, now: float) -> None:
        item.granted = now
        self.open += 1
        self.granted += 1
        self.longest_wait = max(self.longest_wait, now - item.submitted)
        self._sent.append((now, item.weight))
        self._last_identical[item.identity] = now
        self._burst.setdefault(item.burst_key, collections.deque(maxlen=64)).append(now)

    def _expire(self, now: float) -> None:
        horizon = now - self.rules.window
        while self._sent and self._sent[0][0] <= horizon:
            self._sent.popleft()
        stale = now - max(self.rules.identical_gap, self.rules.burst_window)
        if len(self._last_identical) > 10_000:
            self._last_identical = {k: t for k, t in self._last_identical.items() if t > stale}

    def _drop_empty(self, requester: str) -> None:
        if not self._queues.get(requester):
            self._queues.pop(requester, None)
            if requester in self._turn:
                self._turn.remove(requester)


class HistoricalPacer:
    """``HistQueue`` on the event loop: callers ``acquire`` a turn (or get a 429 with a
    ``retry_after`` when their own deadline cannot be met) and ``release`` it when TWS answered.
    ``run`` (owned by the daemon's task group) grants turns as the rules allow."""

    def __init__(self, rules: HistRules | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = HistQueue(rules or HistRules())
        self.clock = clock
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self.refused = 0
        self.waited_total = 0.0

    def __repr__(self) -> str:
        return f"<HistoricalPacer {self.queue!r} refused={self.refused}>"

    def stats(self) -> dict[str, Any]:
        q = self.queue
        return {"queued": q.queued, "open": q.open, "granted": q.granted,
                "window_used": q.window_used(self.clock()), "window_max": q.rules.window_max,
                "refused": self.refused, "longest_wait": round(q.longest_wait, 3)}

    async def acquire(self, requester: str, identity: Hashable, burst_key: Hashable,
                      weight: int, deadline: float) -> Pending:
        now = self.clock()
        earliest = self.queue.earliest(identity, burst_key, weight, now)
        if earliest > deadline:
            self.refused += 1
            raise _refusal(earliest - now)
        item = self.queue.submit(requester, identity, burst_key, weight, now)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[item.id] = waiter
        self._wake.set()
        try:
            await asyncio.wait_for(waiter, max(0.0, deadline - now))
        except TimeoutError:
            self.queue.withdraw(item)
            self.refused += 1
            retry = self.queue.earliest(identity, burst_key, weight, self.clock())
            raise _refusal(max(retry - self.clock(), 1.0)) from None
        finally:
            self._waiters.pop(item.id, None)
        self.waited_total += (item.granted or now) - now
        return item

    def release(self, item: Pending) -> None:
        self.queue.done(item)
        self._wake.set()

    async def run(self) -> None:
        while True:
            now = self.clock()
            for item in self.queue.due(now):
                waiter = self._waiters.get(item.id)
                if waiter is None or waiter.done():  # its caller left meanwhile
                    self.queue.done(item)
                else:
                    waiter.set_result(None)
            nxt = self.queue.next_time(now)
            self._wake.clear()
            timeout = None if nxt is None else max(0.0, nxt - self.clock())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass


def request_keys(op: str, args: dict[str, Any]) -> tuple[Hashable, Hashable, int]:
    """A historical request's identity (identical ones share it), its burst key (contract,
    exchange, tick type) and its weight (BID_ASK counts twice)."""
    contract = args.get("contract")
    fields = msgspec.to_builtins(contract) if contract is not None else {}
    what = str(args.get("whatToShow", "TRADES"))
    identity = (op, msgspec.json.encode(args))
    burst = (fields.get("conId") or fields.get("symbol") or fields.get("localSymbol"),
             fields.get("exchange", ""), what)
    return identity, burst, 2 if what == "BID_ASK" else 1


def _refusal(retry_after: float) -> BudgetExhausted:
    err = BudgetExhausted(f"IB's historical-data limits cannot serve this request in time; "
                          f"retry in {retry_after:.1f}s")
    err.retry_after = round(retry_after, 1)
    return err
