"""Matching working orders against the market model: when an order fills, at what price, and
how much of it.

Prices are deterministic against the market model: a market order fills at the ask (buy) or bid
(sell), a limit order at that quote as soon as it is marketable, a stop becomes a market (or
limit) order once the last price crosses its aux price. Size is bounded by the touch: within one
step of an instrument's random walk, buys share the ask size and sells the bid size, and what
one order took is gone for the next. An order larger than what is left fills in several
executions over successive matcher passes (switch ``SimConfig.partial_fills`` off and every
order fills whole at the touch). Orders that rest are re-checked by one matcher task every
``tick_interval``; it steps an instrument's walk itself only when nothing else (a market-data
stream) moved it since the last check. Booking a fill is the book's job (``OrderBook.execute``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twsbus.sim.config import SimConfig
    from twsbus.sim.market import Market, Quote
    from twsbus.sim.order_model import SimOrder
    from twsbus.sim.orders import OrderBook

log = logging.getLogger("twsbus.sim")


class Matcher:
    """Matches ``book``'s working orders against ``market``; ``spawn`` runs its task."""

    def __init__(self, book: OrderBook, market: Market, config: SimConfig,
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[Any]]) -> None:
        self.book, self.market, self.config, self.spawn = book, market, config, spawn
        #: conId -> (quote step, shares bought at the ask, shares sold at the bid) this step.
        self._taken: dict[int, tuple[int, Decimal, Decimal]] = {}
        self._seen_steps: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        running = self._task is not None and not self._task.done()
        return f"<Matcher {'running' if running else 'idle'} instruments={len(self._taken)}>"

    def check(self, con_id: int) -> None:
        """Fill whatever working orders on ``con_id`` the current quote makes marketable."""
        for o in self.book.working_orders(con_id):
            self.try_match(o)

    def try_match(self, o: SimOrder) -> None:
        if not o.working:
            return
        price = self._fill_price(o)
        if price is not None:
            shares = self._take(o)
            if shares > 0:
                self.book.execute(o, price, shares)
        if o.working:
            self._ensure_running()

    def reference_price(self, o: SimOrder) -> float:
        q = self.market.quote(o.inst.con_id)
        return q.ask if o.buy else q.bid

    # ---- price ----------------------------------------------------------------------------

    def _fill_price(self, o: SimOrder) -> float | None:
        q = self.market.quote(o.inst.con_id)
        t = o.order_type
        if t in ("STP", "STP LMT") and not o.triggered:
            aux = o.p["auxPrice"]
            if not (q.last >= aux if o.buy else q.last <= aux):
                return None
            o.triggered = True
        touch = q.ask if o.buy else q.bid
        if t in ("MKT", "STP"):
            return touch
        lmt = o.p["lmtPrice"]
        if (o.buy and lmt >= touch) or (not o.buy and lmt <= touch):
            return touch
        return None

    # ---- size -----------------------------------------------------------------------------

    def _take(self, o: SimOrder) -> Decimal:
        """How much of ``o`` the touch can fill now, taken out of this step's liquidity."""
        if not self.config.partial_fills:
            return o.remaining
        q = self.market.quote(o.inst.con_id)
        step, bought, sold = self._taken.get(q.con_id, (q.steps, Decimal(0), Decimal(0)))
        if step != q.steps:
            bought = sold = Decimal(0)
        left = self._touch_size(q, o.buy) - (bought if o.buy else sold)
        shares = max(Decimal(0), min(o.remaining, left))
        if o.buy:
            bought += shares
        else:
            sold += shares
        self._taken[q.con_id] = (q.steps, bought, sold)
        return shares

    @staticmethod
    def _touch_size(q: Quote, buy: bool) -> Decimal:
        return Decimal(q.ask_size if buy else q.bid_size)

    # ---- the matcher task -----------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = self.spawn(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval)
            working = sorted({o.inst.con_id for o in self.book.working_orders()})
            if not working:
                return
            for con_id in working:
                try:
                    q = self.market.quote(con_id)
                    if self._seen_steps.get(con_id) == q.steps:
                        q = self.market.step(con_id)
                    self._seen_steps[con_id] = q.steps
                    self.check(con_id)
                except Exception:
                    log.exception("order matcher failed on conId %d", con_id)
