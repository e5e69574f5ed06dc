"""IB's historical-data limits, as the simulator keeps them (TWS API, "Historical Data
Limitations"): at most ``hist_max_open`` (50) historical requests open at once, and a pacing
violation, error 162, for

- an identical request within ``hist_identical_gap`` (15 s),
- six or more (``hist_burst_max`` + 1) requests for one contract, exchange and tick type within
  ``hist_burst_window`` (2 s),
- more than ``hist_window_max`` (60) requests in any ``hist_window`` (600 s), a ``BID_ASK``
  request counting ``hist_bidask_weight`` (2) times.

The settings carry the daemon's names (``hist_*``), so a test can shrink the ten-minute window to
seconds in both and keep the rules' shape. They are off unless ``hist_pacing`` is set (through
``POST /config`` or ``configure``): suites that ask for the same series again and again would
trip them, as they would at IB. The limits hold for the whole simulator (all client
connections), as IB keeps them for the user's TWS; a refused request does not count. The
historical handlers (``h_history``) call ``gate`` with the request's identity once it is valid;
``hist_latency`` makes the data farm answer late, so that requests stay open (and the open limit
can be reached). ``state`` is what ``GET /state`` shows under ``"historical"``.
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from twsbus.sim.server import Simulator
    from twsbus.sim.session import ClientSession

PACING_MESSAGE = "Historical Market Data Service error message:Historical data request pacing " \
                 "violation"
OPEN_MESSAGE = "Historical Market Data Service error message:Max number of simultaneous " \
               "historical data requests ({max_open}) exceeded"
RULES = ("window", "identical", "burst", "open")


class HistSimRules(msgspec.Struct, kw_only=True):
    """The simulator's settings for IB's historical limits (the daemon's ``hist_*`` names)."""

    hist_pacing: bool = False
    hist_window: float = 600.0
    hist_window_max: int = 60
    hist_identical_gap: float = 15.0
    hist_burst_window: float = 2.0
    hist_burst_max: int = 5
    hist_bidask_weight: int = 2
    hist_max_open: int = 50
    #: Seconds the data farm takes to answer (requests stay open meanwhile).
    hist_latency: float = 0.0


SETTINGS = frozenset(HistSimRules.__struct_fields__)


class HistBook:
    """One simulator's record of historical requests: what went when, what is open."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = HistSimRules()
        self.clock = clock
        self._sent: collections.deque[tuple[float, int]] = collections.deque()
        self._last: dict[Hashable, float] = {}
        self._burst: dict[Hashable, collections.deque[float]] = {}
        self.open = 0
        self.peak_open = 0
        self.accepted = 0
        self.violations: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return (f"<HistBook accepted={self.accepted} open={self.open} "
                f"violations={sum(self.violations.values())}>")

    def reset(self) -> None:
        rules, clock = self.rules, self.clock
        self.__init__(clock)  # type: ignore[misc]
        self.rules = rules

    def check(self, identity: Hashable, burst_key: Hashable, weight: int) -> str | None:
        """The rule a request now would break (and count it as a violation), or None (and
        count it as sent)."""
        r, now = self.rules, self.clock()
        while self._sent and self._sent[0][0] <= now - r.hist_window:
            self._sent.popleft()
        burst = self._burst.setdefault(burst_key, collections.deque())
        while burst and burst[0] <= now - r.hist_burst_window:
            burst.popleft()
        last = self._last.get(identity)
        broken = None
        if self.open >= r.hist_max_open:
            broken = "open"
        elif last is not None and now - last < r.hist_identical_gap:
            broken = "identical"
        elif len(burst) >= r.hist_burst_max:
            broken = "burst"
        elif sum(w for _, w in self._sent) + weight > r.hist_window_max:
            broken = "window"
        if broken is not None:
            self.violations[broken] += 1
            return broken
        self._sent.append((now, weight))
        burst.append(now)
        self._last[identity] = now
        if len(self._last) > 10_000:
            self._last = {k: t for k, t in self._last.items()
                          if now - t < r.hist_identical_gap}
        self.accepted += 1
        return None

    def state(self) -> dict[str, Any]:
        now = self.clock()
        used = sum(w for t, w in self._sent if t > now - self.rules.hist_window)
        return {**msgspec.to_builtins(self.rules), "accepted": self.accepted,
                "open": self.open, "peak_open": self.peak_open, "window_used": used,
                "violations": sum(self.violations.values()),
                "by_rule": {rule: self.violations[rule] for rule in RULES}}


_BOOKS: weakref.WeakKeyDictionary[Simulator, HistBook] = weakref.WeakKeyDictionary()


def book(sim: Simulator) -> HistBook:
    found = _BOOKS.get(sim)
    if found is None:
        found = _BOOKS[sim] = HistBook()
    return found


def configure(sim: Simulator, **settings: Any) -> dict[str, Any]:
    """Change some ``hist_*`` settings (unknown names fail, naming the key)."""
    b = book(sim)
    unknown = set(settings) - SETTINGS
    if unknown:
        raise ValueError(f"unknown historical setting(s): {', '.join(sorted(unknown))}")
    b.rules = msgspec.convert(msgspec.to_builtins(b.rules) | settings, HistSimRules)
    return msgspec.to_builtins(b.rules)


def state(sim: Simulator) -> dict[str, Any]:
    return book(sim).state()


def gate(s: ClientSession, req_id: int, identity: Hashable, burst_key: Hashable, what: str,
         answer: Callable[[], None]) -> None:
    """Answer a valid historical request, unless it breaks a rule (error 162 instead); with
    ``hist_latency``, answer it that much later, the request open meanwhile."""
    b = book(s.sim)
    r = b.rules
    if r.hist_pacing:
        weight = r.hist_bidask_weight if what == "BID_ASK" else 1
        broken = b.check(identity, burst_key, weight)
        if broken is not None:
            message = OPEN_MESSAGE.format(max_open=r.hist_max_open) if broken == "open" \
                else PACING_MESSAGE
            s.error(req_id, 162, message)
            return
    if r.hist_latency <= 0:
        answer()
        return
    b.open += 1
    b.peak_open = max(b.peak_open, b.open)

    async def later() -> None:
        try:
            await asyncio.sleep(r.hist_latency)
            answer()
        finally:
            b.open -= 1

    s.sim.spawn(later())
