"""The simulator's market model: a deterministic random walk per instrument.

Each instrument has its own ``random.Random`` seeded from (seed, conId), so the sequence of quotes
an instrument produces depends only on the seed and on how many steps were taken, never on what
other instruments did. Prices move in whole ticks and stay positive.
"""

from __future__ import annotations

import random
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


class Market:
    def __init__(self, universe: Universe, seed: int) -> None:
        self.universe = universe
        self.seed = seed
        self._quotes: dict[int, Quote] = {}
        self._rngs: dict[int, random.Random] = {}

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

    def _instrument(self, con_id: int) -> Instrument:
        inst = self.universe.get(con_id)
        if inst is None:
            raise KeyError(con_id)
        return inst


def _round(price: float, tick: float) -> float:
    decimals = len(f"{tick:.10f}".rstrip("0").split(".")[1])
    return round(round(price / tick) * tick, decimals)
