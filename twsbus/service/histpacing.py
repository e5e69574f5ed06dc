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

The rules run from when a request *finished* (TWS answered it), not from when it was granted: a
granted request may still wait in the outbound queue, so only its answer bounds when TWS saw it,
and an open request counts as sent "now". A head held back by the shared limits (the window,
the open count) keeps its turn, so a ``BID_ASK`` request is not starved by weight-1 requests
taking every freed slot. A requester whose query was coalesced with another's queued one
``join``s it: the request goes at the first of their turns. Time is passed in (``clock``), so
tests run the ten-minute window on a fake clock.
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
#: Headers for the reply to the request being served (``Twsbus-Waited-Ms``, ``Twsbus-Cache``):
#: a dict set per request by the NATS side, filled by whoever learns something worth telling.
REPLY_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("twsbus_reply_headers",
                                                              default=None)

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
    #: When TWS answered (or the request failed): the request reached TWS at the latest then.
    finished: float | None = None
    #: Other requesters whose identical queries were coalesced with it (``HistQueue.join``).
    joined: list[str] = field(default_factory=list)

    @property
    def waited(self) -> float:
        """Seconds from submit to grant (so far, while still queued)."""
        return (self.granted if self.granted is not None else self.submitted) - self.submitted


_INF = float("inf")


@dataclass
class HistQueue:
    """The rules are kept against the time a request *finished*, not the time it was granted:
    a granted request may wait in the outbound queue before TWS sees it, so only its answer
    bounds when it arrived. A request still open counts as sent "now" for as long as it is open,
    which keeps every rule at TWS's end whatever the delays between here and there."""

    rules: HistRules = field(default_factory=HistRules)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _queues: dict[str, collections.deque[Pending]] = field(default_factory=dict)
    _turn: collections.deque[str] = field(default_factory=collections.deque)
    #: Granted requests still open, or finished within the longest rule's reach.
    _live: collections.deque[Pending] = field(default_factory=collections.deque)
    open: int = 0
    granted: int = 0
    longest_wait: float = 0.0

    def __repr__(self) -> str:
        return (f"<HistQueue queued={self.queued} open={self.open} "
                f"window={self.window_used(None)}/{self.rules.window_max}>")

    @property
    def queued(self) -> int:
        return len({item.id for q in self._queues.values() for item in q})

    def queued_by(self) -> dict[str, int]:
        return {who: len(q) for who, q in self._queues.items()}

    def oldest_queued(self, now: float) -> float:
        """Seconds the longest-waiting queued request has waited so far."""
        return max((now - q[0].submitted for q in self._queues.values() if q), default=0.0)

    def submit(self, requester: str, identity: Hashable, burst_key: Hashable, weight: int,
               now: float) -> Pending:
        item = Pending(next(self._ids), requester, identity, burst_key, weight, now)
        self._enqueue(requester, item)
        return item

    def join(self, identity: Hashable, requester: str) -> bool:
        """``requester`` asks for a queued request too (its query was coalesced with it): the
        request now also waits in ``requester``'s turns, and goes at the first of them, so a
        small requester is not held behind a big one's queue by sharing its request."""
        for queue in list(self._queues.values()):
            for item in queue:
                if item.identity == identity:
                    if requester != item.requester and requester not in item.joined:
                        item.joined.append(requester)
                        self._enqueue(requester, item)
                    return True
        return False

    def withdraw(self, item: Pending) -> None:
        for requester in (item.requester, *item.joined):
            queue = self._queues.get(requester)
            if queue is not None and item in queue:
                queue.remove(item)
                self._drop_empty(requester)

    def done(self, item: Pending, now: float) -> None:
        """A granted request finished (answered, failed or cancelled): no longer open."""
        if item.granted is not None and item.finished is None:
            item.finished = now
            self.open = max(0, self.open - 1)

    def due(self, now: float) -> list[Pending]:
        """Grant what may go now, fairly: one request per requester per round. A head that
        the shared limits hold back (the window, the open count) keeps its turn, and nobody
        behind it takes from them meanwhile, so a BID_ASK request (weight 2) is not starved by
        a stream of weight-1 requests slipping into every freed slot; a head held back by its
        own rules (the identical gap, its contract's burst) lets the others go."""
        granted: list[Pending] = []
        progress = True
        while progress and self._turn:
            progress = False
            for _ in range(len(self._turn)):
                requester = self._turn[0]
                queue = self._queues[requester]
                head = queue[0]
                own, shared = self._own_at(head, now), self._shared_at(head, now)
                if max(own, shared) <= now:
                    self._turn.rotate(-1)
                    self.withdraw(head)  # from this queue and any it joined
                    self._grant(head, now)
                    granted.append(head)
                    progress = True
                    break  # the next round starts with the following requester
                if shared > now and own <= shared:
                    return granted  # its turn holds until the shared limits let it go
                self._turn.rotate(-1)
        return granted

    def next_time(self, now: float) -> float | None:
        """When some queued request could go (None: nothing queued, or only open requests
        hold them back: a ``done`` frees them)."""
        times = []
        for requester in self._turn:  # in turn order, up to a head holding its turn (``due``)
            head = self._queues[requester][0]
            own, shared = self._own_at(head, now), self._shared_at(head, now)
            times.append(max(own, shared))
            if shared > now and own <= shared:
                break
        finite = [t for t in times if t != _INF]
        return min(finite) if finite else None

    def earliest(self, identity: Hashable, burst_key: Hashable, weight: int,
                 now: float) -> float:
        """The soonest a new request could go if it were alone in the queue and every open
        request finished now (so a caller refused on it could never have been served)."""
        return self._allowed_at(Pending(0, "", identity, burst_key, weight, now), now,
                                open_ends=now)

    def window_used(self, now: float | None) -> int:
        if now is not None:
            self._expire(now)
            horizon = now - self.rules.window
            return sum(i.weight for i in self._live if i.finished is None or i.finished > horizon)
        return sum(i.weight for i in self._live)

    # ---- the rules ------------------------------------------------------------------------

    def _allowed_at(self, item: Pending, now: float, open_ends: float = _INF) -> float:
        """When ``item`` may go: ``now``, a later time, or infinity when it waits for open
        requests (``open_ends``: assume they all finish then)."""
        return max(self._own_at(item, now, open_ends), self._shared_at(item, now, open_ends))

    def _ends(self, open_ends: float) -> list[float]:
        return [i.finished if i.finished is not None else open_ends for i in self._live]

    def _own_at(self, item: Pending, now: float, open_ends: float = _INF) -> float:
        """The rules of the request itself: the identical gap, its contract's burst."""
        rules = self.rules
        self._expire(now)
        ends = self._ends(open_ends)
        at = now
        same = [e for i, e in zip(self._live, ends, strict=True) if i.identity == item.identity]
        if same:
            at = max(at, max(same) + rules.identical_gap)
        burst = sorted(e for i, e in zip(self._live, ends, strict=True)
                       if i.burst_key == item.burst_key and e > now - rules.burst_window)
        if len(burst) >= rules.burst_max:
            at = max(at, burst[len(burst) - rules.burst_max] + rules.burst_window)
        return at

    def _shared_at(self, item: Pending, now: float, open_ends: float = _INF) -> float:
        """The limits every request shares: the open count and the weighted window."""
        rules = self.rules
        self._expire(now)
        if self.open >= rules.max_open and open_ends == _INF:
            return _INF
        at = now
        in_window = sorted((e, i.weight) for i, e in zip(self._live, self._ends(open_ends),
                                                           strict=True)
                           if e > now - rules.window)
        need = sum(w for _, w in in_window) + item.weight - rules.window_max
        for end, weight in in_window:  # the window frees weight as requests leave it
            if need <= 0:
                break
            need -= weight
            at = max(at, end + rules.window)
        return at

    def _grant(self, item: Pending, now: float) -> None:
        item.granted = now
        self.open += 1
        self.granted += 1
        self.longest_wait = max(self.longest_wait, now - item.submitted)
        self._live.append(item)

    def _expire(self, now: float) -> None:
        rules = self.rules
        horizon = now - max(rules.window, rules.identical_gap, rules.burst_window)
        if any(i.finished is not None and i.finished <= horizon for i in self._live):
            self._live = collections.deque(
                i for i in self._live if i.finished is None or i.finished > horizon)

    def _enqueue(self, requester: str, item: Pending) -> None:
        queue = self._queues.get(requester)
        if queue is None:
            queue = self._queues[requester] = collections.deque()
            self._turn.append(requester)
        queue.append(item)

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
        self.waits = 0

    def __repr__(self) -> str:
        return f"<HistoricalPacer {self.queue!r} refused={self.refused}>"

    def stats(self) -> dict[str, Any]:
        q = self.queue
        now = self.clock()
        return {"queued": q.queued, "requesters": len(q.queued_by()), "open": q.open,
                "granted": q.granted, "window_used": q.window_used(now),
                "window_max": q.rules.window_max, "window": q.rules.window,
                "refused": self.refused, "longest_wait": round(q.longest_wait, 3),
                "mean_wait": round(self.waited_total / self.waits, 3) if self.waits else 0.0,
                "oldest_queued": round(q.oldest_queued(now), 3)}

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
        self.waited_total += item.waited
        self.waits += 1
        return item

    async def turn(self, op: str, args: dict[str, Any], timeout: float) -> Pending:
        """A turn for ``op`` with ``args`` (a historical query, a ``hist_bars`` stream) for
        the current requester, waiting at most ``timeout``; its wait goes on the reply."""
        identity, burst, weight = request_keys(op, args, self.queue.rules)
        item = await self.acquire(REQUESTER.get(), identity, burst, weight,
                                  self.clock() + timeout)
        headers = REPLY_HEADERS.get()
        if headers is not None:
            headers["Twsbus-Waited-Ms"] = str(round(item.waited * 1000))
        return item

    def join(self, identity: Hashable) -> None:
        """The current requester's query was coalesced with a queued one (``HistQueue.join``)."""
        if self.queue.join(identity, REQUESTER.get()):
            self._wake.set()

    def wake(self) -> None:
        """Look at the queue again now (a test's fake clock moved on)."""
        self._wake.set()

    def release(self, item: Pending) -> None:
        self.queue.done(item, self.clock())
        self._wake.set()

    async def run(self) -> None:
        while True:
            now = self.clock()
            for item in self.queue.due(now):
                waiter = self._waiters.get(item.id)
                if waiter is None or waiter.done():  # its caller left meanwhile
                    self.queue.done(item, now)
                else:
                    waiter.set_result(None)
            nxt = self.queue.next_time(now)
            self._wake.clear()
            timeout = None if nxt is None else max(0.0, nxt - self.clock())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass


def request_keys(op: str, args: dict[str, Any],
                 rules: HistRules | None = None) -> tuple[Hashable, Hashable, int]:
    """A historical request's identity (identical ones share it), its burst key (contract,
    exchange, tick type) and its weight (BID_ASK counts twice)."""
    contract = args.get("contract")
    fields = msgspec.to_builtins(contract) if contract is not None else {}
    what = str(args.get("whatToShow", "TRADES"))
    identity = (op, msgspec.json.encode(args))
    burst = (fields.get("conId") or fields.get("symbol") or fields.get("localSymbol"),
             fields.get("exchange", ""), what)
    return identity, burst, (rules or HistRules()).bidask_weight if what == "BID_ASK" else 1


def _refusal(retry_after: float) -> BudgetExhausted:
    err = BudgetExhausted(f"IB's historical-data limits cannot serve this request in time; "
                          f"retry in {retry_after:.1f}s")
    err.retry_after = round(retry_after, 1)
    return err
