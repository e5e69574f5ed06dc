"""The simulator's market model: a deterministic random walk per instrument.

Each instrument has its own ``random.Random`` seeded from (seed, conId), so the sequence of quotes
an instrument produces depends only on the seed and on how many steps were taken, never on what
other instruments did. Prices move in whole ticks and stay positive. The model also generates what
data requests need around that walk: depth books, historical bars (walking back from the live
price, so the newest bar meets the quote), historical ticks and volume histograms, each from a
generator private to the request.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from twsbus.sim.universe import Instrument, Universe


@dataclass
class Quote:
    """The current state of one instrument, in IB's tick vocabulary."""

    con_id: int
    bid: float
    ask: float
    last: float
    bid_size: int
    ask_size: int
    last_size: int
    volume: int
    high: float
    low: float
    close: float  # the previous session's close
    open: float
    steps: int = 0

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


@dataclass
class BookRow:
    price: float
    size: int
    maker: str


@dataclass
class Bar:
    start: int  # epoch seconds of the bar's open
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float
    count: int


@dataclass
class HistTick:
    time: int
    bid: float
    ask: float
    bid_size: int
    ask_size: int
    price: float
    size: int
    exchange: str


STOCK_VENUES = ("NSDQ", "ARCA", "BATS", "EDGX", "IEX", "NYSE", "MEMX", "DRCTEDGE")


def venues(inst: Instrument) -> tuple[str, ...]:
    """Where an instrument trades: its depth makers and its trades' exchanges."""
    if inst.sec_type in ("STK", "OPT"):
        return STOCK_VENUES
    return (inst.exchange,)


def tick_decimals(tick: float) -> int:
    return len(f"{tick:.10f}".rstrip("0").split(".")[1])


def tick_round(price: float, tick: float) -> float:
    """``price`` on the tick grid, with the tick's decimals (no binary-float tails)."""
    return round(round(price / tick) * tick, tick_decimals(tick))


class Market:
    def __init__(self, universe: Universe, seed: int) -> None:
        self.universe = universe
        self.seed = seed
        self._quotes: dict[int, Quote] = {}
        self._rngs: dict[int, random.Random] = {}
        self._stepped_at: dict[int, float] = {}

    def rng(self, con_id: int) -> random.Random:
        rng = self._rngs.get(con_id)
        if rng is None:
            rng = self._rngs[con_id] = random.Random(self.seed * 1_000_003 + con_id)
        return rng

    def quote(self, con_id: int) -> Quote:
        """The instrument's current quote (created at its starting price on first use)."""
        q = self._quotes.get(con_id)
        if q is None:
            inst = self._instrument(con_id)
            tick = inst.min_tick
            price = _round(inst.price, tick)
            q = Quote(
                con_id=con_id, bid=_round(price - tick, tick), ask=_round(price + tick, tick),
                last=price, bid_size=100, ask_size=100, last_size=100, volume=10_000,
                high=_round(price * 1.01, tick), low=_round(price * 0.99, tick),
                close=_round(price * 0.995, tick), open=_round(price * 0.998, tick),
            )
            self._quotes[con_id] = q
        return q

    def step(self, con_id: int) -> Quote:
        """Advance the instrument by one random-walk step and return its quote."""
        q = self.quote(con_id)
        inst = self._instrument(con_id)
        tick = inst.min_tick
        rng = self.rng(con_id)
        move = rng.choice((-2, -1, -1, 0, 0, 1, 1, 2)) * tick
        last = max(tick, _round(q.last + move, tick))
        spread = tick * rng.choice((1, 1, 2))
        q.last = last
        q.bid = max(tick, _round(last - spread, tick))
        q.ask = _round(last + spread, tick)
        q.bid_size = rng.randrange(1, 50) * 100
        q.ask_size = rng.randrange(1, 50) * 100
        q.last_size = rng.randrange(1, 10) * 100
        q.volume += q.last_size
        q.high = max(q.high, last)
        q.low = min(q.low, last)
        q.steps += 1
        return q

    def advance(self, con_id: int, every: float) -> Quote:
        """Step the instrument unless some stream already did within half an interval.

        Every stream of an instrument (market data, tick-by-tick, depth, bars, in any session)
        calls this, so they all see one tape instead of each pushing the walk forward."""
        stepped = self._stepped_at
        now = time.monotonic()
        if now - stepped.get(con_id, -math.inf) >= every * 0.5:
            stepped[con_id] = now
            return self.step(con_id)
        return self.quote(con_id)

    def sub_rng(self, *key: object) -> random.Random:
        """A private generator for one request (a depth book, a bar series), so generated data
        depends on the seed and the request, never on other streams' draws."""
        return random.Random(f"{self.seed}:{':'.join(map(str, key))}")

    def book(
        self, con_id: int, rows: int, rng: random.Random
    ) -> tuple[list[BookRow], list[BookRow]]:
        """Bids and asks ``rows`` deep around the current quote, one tick apart."""
        q = self.quote(con_id)
        inst = self.universe.by_con_id[con_id]
        tick = inst.min_tick
        makers = venues(inst)
        bids, asks = [], []
        for i in range(rows):
            bid = _round(q.bid - i * tick, tick)
            if bid > 0:
                bids.append(BookRow(bid, q.bid_size if i == 0 else rng.randrange(1, 40) * 100,
                                    rng.choice(makers)))
            asks.append(BookRow(_round(q.ask + i * tick, tick),
                                q.ask_size if i == 0 else rng.randrange(1, 40) * 100,
                                rng.choice(makers)))
        return bids, asks

    def bars(self, con_id: int, starts: list[int], seconds: int, what: str) -> list[Bar]:
        """OHLC bars for the given opens, walking back from the current last price so the
        newest bar meets the live quote."""
        inst = self.universe.by_con_id[con_id]
        tick = inst.min_tick
        rng = self.sub_rng("bars", con_id, seconds, what)
        close = self.quote(con_id).last
        sigma = max(tick, close * 0.0006 * math.sqrt(seconds / 60))
        out: list[Bar] = []
        for start in reversed(starts):
            open_ = max(tick, _round(close - rng.gauss(0, sigma), tick))
            high = _round(max(open_, close) + abs(rng.gauss(0, sigma / 2)), tick)
            low = max(tick, _round(min(open_, close) - abs(rng.gauss(0, sigma / 2)), tick))
            count = rng.randrange(5, 50) * max(1, seconds // 60)
            volume = count * rng.randrange(1, 5) * 100
            wap = round((open_ + high + low + close) / 4, tick_decimals(tick) + 2)
            out.append(Bar(start, open_, high, low, close, volume, wap, count))
            close = open_
        out.reverse()
        return [_shade(b, what, tick) for b in out]

    def hist_ticks(self, con_id: int, anchor: int, count: int, forward: bool) -> list[HistTick]:
        """``count`` recorded quotes/trades after (forward) or up to ``anchor`` epoch seconds."""
        inst = self.universe.by_con_id[con_id]
        tick = inst.min_tick
        rng = self.sub_rng("ticks", con_id, anchor, forward)
        makers = venues(inst)
        last = self.quote(con_id).last
        ticks: list[HistTick] = []
        t = anchor
        for _ in range(count):
            spread = tick * rng.choice((1, 1, 2))
            bid, ask = max(tick, _round(last - spread, tick)), _round(last + spread, tick)
            ticks.append(HistTick(t, bid, ask, rng.randrange(1, 40) * 100,
                                  rng.randrange(1, 40) * 100, last,
                                  rng.randrange(1, 10) * 100, rng.choice(makers)))
            last = max(tick, _round(last + rng.choice((-1, 0, 0, 1)) * tick, tick))
            t += rng.choice((0, 0, 1, 2)) * (1 if forward else -1)
        if not forward:
            ticks.reverse()
        return ticks

    def histogram(self, con_id: int, days: int) -> list[tuple[float, int]]:
        """Traded volume per price level over ``days``: a bell around the current last."""
        inst = self.universe.by_con_id[con_id]
        tick = inst.min_tick
        last = self.quote(con_id).last
        rng = self.sub_rng("histogram", con_id, days)
        width = max(tick, _round(last * 0.002 * math.sqrt(days), tick))
        out = []
        for k in range(-10, 11):
            price = _round(last + k * width, tick)
            if price > 0:
                weight = math.exp(-(k * k) / 30)
                out.append((price, int(weight * rng.randrange(50, 100) * 100 * days)))
        return out

    def _instrument(self, con_id: int) -> Instrument:
        inst = self.universe.get(con_id)
        if inst is None:
            raise KeyError(con_id)
        return inst


def _round(price: float, tick: float) -> float:
    decimals = len(f"{tick:.10f}".rstrip("0").split(".")[1])
    return round(round(price / tick) * tick, decimals)


def _shade(bar: Bar, what: str, tick: float) -> Bar:
    """What TWS sends for each whatToShow: quote-based bars have no volume (-1)."""
    if what in ("TRADES", "ADJUSTED_LAST"):
        return bar
    if what in ("HISTORICAL_VOLATILITY", "OPTION_IMPLIED_VOLATILITY"):
        base = 0.2 + (bar.close * 1000 % 97) / 485
        vals = [round(base + d, 6) for d in (0.0, 0.01, -0.01, 0.004)]
        return Bar(bar.start, vals[0], vals[1], vals[2], vals[3], -1, -1, -1)
    shift = {"BID": -tick, "ASK": tick}.get(what, 0.0)
    o, h, lo, c = (max(tick, _round(p + shift, tick))
                   for p in (bar.open, bar.high, bar.low, bar.close))
    return Bar(bar.start, o, h, lo, c, -1, -1, -1)
