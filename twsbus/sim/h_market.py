"""Streaming market data: top of book (reqMktData and snapshots), the market data type,
tick-by-tick, 5-second real-time bars, and depth (L1 and SMART L2) with the exchanges list. Each
stream is a session subscription (kinds "mkt_data", "tbt", "rt_bars", "depth") whose task reads
the shared tape through ``Market.advance`` every ``tick_interval`` and sends what changed, laid
out for the session's server version (``values`` for what a version changes in the values).
Historical requests live in ``h_history``; the benchmark load generator (blast, pace) in
``loadgen``.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from typing import Any

from twsbus.sim import values, wire
from twsbus.sim.contracts import resolve_one
from twsbus.sim.h_history import send_hist_ticks
from twsbus.sim.market import BookRow, Quote, tick_decimals, tick_round, venues
from twsbus.sim.msgids import FromClient, ToClient
from twsbus.sim.requests import market as rq
from twsbus.sim.session import ClientSession, Subscription
from twsbus.sim.universe import Instrument
from twsbus.sim.values import size_field

MIN_SERVER_VER_REQ_SMART_COMPONENTS = 114  # tickReqParams replies
MIN_SERVER_VER_SERVICE_DATA_TYPE = 120
MIN_SERVER_VER_SMART_DEPTH = 146

# tick types
BID_SIZE, BID, ASK, ASK_SIZE, LAST, LAST_SIZE, HIGH, LOW, VOLUME, CLOSE = range(10)
OPEN = 14
LAST_TIMESTAMP, SHORTABLE, RT_VOLUME, HALTED = 45, 46, 48, 49
RT_TRD_VOLUME = 77
#: Delayed data (market data type 3/4) arrives under TWS's delayed tick types.
DELAYED = {BID: 66, ASK: 67, LAST: 68, BID_SIZE: 69, ASK_SIZE: 70, LAST_SIZE: 71, HIGH: 72,
           LOW: 73, VOLUME: 74, CLOSE: 75, OPEN: 76, LAST_TIMESTAMP: 88, HALTED: 90}
#: Generic ticks TWS accepts for stocks (others get error 321, as TWS answers).
GENERIC_TICKS = {100, 101, 104, 105, 106, 107, 125, 165, 166, 225, 232, 221, 233, 236, 258,
                 291, 293, 294, 295, 318, 370, 375, 377, 381, 384, 387, 388, 391, 407, 411,
                 428, 439, 456, 459, 460, 499, 506, 511, 512, 513, 514, 515, 516, 517,
                 521, 545, 576, 577, 578, 584, 585, 587, 588, 595, 614, 619, 620, 625, 292}
TBT_TYPES = {"Last": 1, "AllLast": 2, "BidAsk": 3, "MidPoint": 4}
RT_BAR_TICKS = 10  # a real-time bar every 10 tick intervals (2.5 s by default, 0.5 s in tests)
DEPTH_EXCHANGES = [
    ("ISLAND", "STK", "NASDAQ", "Deep2", 7), ("ARCA", "STK", "NYSE", "Deep2", 7),
    ("BATS", "STK", "", "Deep", 7), ("IEX", "STK", "", "Deep2", 7),
    ("NYSE", "STK", "NYSE", "Deep", 7), ("CME", "FUT", "", "Deep", 2),
    ("IDEALPRO", "CASH", "", "Deep", 4), ("CBOE", "OPT", "", "Deep", 1),
]

#: The market data type each session asked for with reqMarketDataType (absent: real-time).
_DATA_TYPE: weakref.WeakKeyDictionary[ClientSession, int] = weakref.WeakKeyDictionary()


def _size(s: ClientSession, size: float) -> float | int:
    return size_field(s.version, size)


def _duplicate(s: ClientSession, req_id: int) -> bool:
    if req_id in s.subs:
        s.error(req_id, 322, "Error processing request.-'bW' : cause - Duplicate ticker id")
        return True
    return False


def _interval(s: ClientSession) -> float:
    return max(0.001, s.sim.config.tick_interval)


# ---- top of book ------------------------------------------------------------------------------


def req_market_data_type(s: ClientSession, r: rq.ReqMarketDataType) -> None:
    _DATA_TYPE[s] = r.marketDataType or 1


class _Ticker:
    """One top-of-book line: renders ticks for its reqId and remembers what it last sent."""

    def __init__(self, s: ClientSession, req_id: int, inst: Instrument, generic: set[int]) -> None:
        self.s, self.req_id, self.inst, self.generic = s, req_id, inst, generic
        self.delayed = _DATA_TYPE.get(s, 1) in (3, 4)
        self.sent: dict[int, float] = {}
        self.steps = -1

    def _tt(self, tick_type: int) -> int:
        return DELAYED.get(tick_type, tick_type) if self.delayed else tick_type

    def price(self, tick_type: int, price: float, size: float = 0) -> None:
        # TWS pairs bid/ask/last prices with their size; the attribute mask flags
        # canAutoExecute (bit 0) on quotes.
        mask = 1 if tick_type in (BID, ASK) else 0
        self.s.send(ToClient.TICK_PRICE, 6, self.req_id, self._tt(tick_type), price,
                    _size(self.s, size), mask)
        self.sent[tick_type] = price

    def size(self, tick_type: int, size: float) -> None:
        self.sent[tick_type] = size
        if tick_type in values.VOLUME_TICKS:  # lots of 100 for US stocks before 220
            size = values.volume(self.s.version, self.inst.sec_type, self.inst.currency, size)
        self.s.send(ToClient.TICK_SIZE, 6, self.req_id, self._tt(tick_type), _size(self.s, size))

    def string(self, tick_type: int, value: str) -> None:
        self.s.send(ToClient.TICK_STRING, 6, self.req_id, self._tt(tick_type), value)

    def generic_tick(self, tick_type: int, value: float) -> None:
        self.s.send(ToClient.TICK_GENERIC, 6, self.req_id, self._tt(tick_type), value)

    def image(self, q: Quote) -> None:
        s, inst = self.s, self.inst
        if s.version >= MIN_SERVER_VER_REQ_SMART_COMPONENTS:
            bbo = "9c0001" if inst.exchange == "SMART" else ""
            s.send(ToClient.TICK_REQ_PARAMS, self.req_id, inst.min_tick, bbo, 3)
        if s in _DATA_TYPE:
            s.send(ToClient.MARKET_DATA_TYPE, 1, self.req_id, _DATA_TYPE[s])
        self.price(BID, q.bid, q.bid_size)
        self.price(ASK, q.ask, q.ask_size)
        self.price(LAST, q.last, q.last_size)
        self.size(VOLUME, q.volume)
        for tick_type, value in ((HIGH, q.high), (LOW, q.low), (CLOSE, q.close), (OPEN, q.open)):
            self.price(tick_type, value)
        self.string(LAST_TIMESTAMP, str(int(time.time())))
        self.generic_tick(HALTED, 0)
        if 165 in self.generic:
            # 13/26/52-week lows and highs, then average volume
            for k, (lo, hi) in enumerate(((0.93, 1.06), (0.88, 1.1), (0.8, 1.18))):
                self.price(15 + 2 * k, tick_round(q.close * lo, inst.min_tick))
                self.price(16 + 2 * k, tick_round(q.close * hi, inst.min_tick))
            self.size(21, q.volume * 9)
        if 236 in self.generic:
            self.generic_tick(SHORTABLE, 3.0)  # > 2.5: shares available to short
        self.steps = q.steps
        self.odd_lots(q)

    def odd_lots(self, q: Quote) -> None:
        """The odd-lot quote (generic tick 787, from 225): inside the round-lot one by a tick
        when the spread allows, for 1-99 shares, on NASDAQ (Q) and ARCA (P); what changed."""
        if values.ODD_LOT_GENERIC_TICK not in self.generic:
            return
        tick = self.inst.min_tick
        inside = q.ask - q.bid > 2 * tick + 1e-9
        bid = tick_round(q.bid + tick, tick) if inside else q.bid
        ask = tick_round(q.ask - tick, tick) if inside else q.ask
        bid_size, ask_size = 1 + q.steps * 37 % 99, 1 + q.steps * 53 % 99
        first = values.ODD_LOT_BID not in self.sent
        for tick_type, value in ((values.ODD_LOT_BID, bid), (values.ODD_LOT_ASK, ask)):
            if self.sent.get(tick_type) != value:
                self.price(tick_type, value)
        for tick_type, size in ((values.ODD_LOT_BID_SIZE, bid_size),
                                (values.ODD_LOT_ASK_SIZE, ask_size)):
            if self.sent.get(tick_type) != size:
                self.size(tick_type, size)
        if first:
            self.string(values.ODD_LOT_BID_EXCH, "Q")
            self.string(values.ODD_LOT_ASK_EXCH, "P")

    def update(self, q: Quote) -> None:
        for tick_type, size_type, price, size in ((BID, BID_SIZE, q.bid, q.bid_size),
                                                  (ASK, ASK_SIZE, q.ask, q.ask_size)):
            if self.sent.get(tick_type) != price:
                self.price(tick_type, price, size)
                self.sent[size_type] = size
            elif self.sent.get(size_type) != size:
                self.size(size_type, size)
        if q.steps != self.steps:  # a trade printed
            self.steps = q.steps
            self.price(LAST, q.last, q.last_size)
            self.size(VOLUME, q.volume)
            now_ms = int(time.time() * 1000)
            self.string(LAST_TIMESTAMP, str(now_ms // 1000))
            if 233 in self.generic or 375 in self.generic:
                vwap = round((q.high + q.low + q.last) / 3, tick_decimals(self.inst.min_tick) + 2)
                rt = f"{wire.field(q.last)};{q.last_size};{now_ms};{q.volume};{vwap};true"
                self.string(RT_VOLUME if 233 in self.generic else RT_TRD_VOLUME, rt)
        for tick_type, value in ((HIGH, q.high), (LOW, q.low)):
            if self.sent.get(tick_type) != value:
                self.price(tick_type, value)
        self.odd_lots(q)


def _legal_generic(version: int) -> set[int]:
    """The generic ticks TWS accepts at ``version`` (odd-lot quotes, 787, from 225)."""
    if values.odd_lots_supported(version):
        return GENERIC_TICKS | {values.ODD_LOT_GENERIC_TICK}
    return GENERIC_TICKS


def _parse_generic(text: str, legal: set[int]) -> tuple[set[int], list[str]]:
    ticks, bad = set(), []
    for item in text.split(","):
        item = item.strip().split(":", 1)[0]
        if not item or item == "mdoff":
            continue
        if item.isdigit() and int(item) in legal:
            ticks.add(int(item))
        else:
            bad.append(item)
    return ticks, bad


def req_mkt_data(s: ClientSession, r: rq.ReqMktData) -> None:
    req_id = r.reqId
    snapshot = r.snapshot or r.regulatorySnapshot  # a regulatory snapshot is a snapshot too
    if _duplicate(s, req_id):
        return
    inst = resolve_one(s, req_id, r.contract)
    if inst is None:
        return
    generic, bad = _parse_generic(r.genericTickList, _legal_generic(s.version))
    if bad:
        legal = ",".join(str(t) for t in sorted(_legal_generic(s.version)))
        s.error(req_id, 321, "Error validating request.-'bW' : cause - Incorrect generic tick "
                f"list of {','.join(bad)}.  Legal ones for ({inst.sec_type}) are: {legal}")
        return
    if snapshot and generic:
        s.error(req_id, 321, "Error validating request.-'bW' : cause - Snapshot market data "
                "subscription is not applicable to generic ticks")
        return
    if len(s.subs_of("mkt_data")) >= s.sim.config.line_limit:
        s.error(req_id, 101, "Max number of tickers has been reached")
        return
    ticker = _Ticker(s, req_id, inst, generic)
    ticker.image(s.sim.market.quote(inst.con_id))
    if snapshot:
        s.send(ToClient.TICK_SNAPSHOT_END, 1, req_id)
        return

    async def run(sub: Subscription) -> None:
        while True:
            await asyncio.sleep(_interval(s))
            if not sub.params.get("paused"):
                ticker.update(s.sim.market.advance(inst.con_id, _interval(s)))

    s.open_sub("mkt_data", req_id, inst.con_id, run=run, generic=sorted(generic))


def cancel_mkt_data(s: ClientSession, r: rq.CancelMktData) -> None:
    s.close_sub(r.reqId, "mkt_data")  # TWS ignores unknown ids


# ---- tick-by-tick -----------------------------------------------------------------------------


def req_tick_by_tick(s: ClientSession, r: rq.ReqTickByTickData) -> None:
    req_id, kind, count, ignore_size = r.reqId, r.tickType, r.numberOfTicks, r.ignoreSize
    if _duplicate(s, req_id):
        return
    inst = resolve_one(s, req_id, r.contract)
    if inst is None:
        return
    tick_type = TBT_TYPES.get(kind)
    if tick_type is None:
        s.error(req_id, 321, f"Error validating request.-'cW' : cause - Invalid tick type "
                f"'{kind}'. Valid types are: {', '.join(TBT_TYPES)}")
        return
    market = s.sim.market
    if count > 0:
        # TWS replays the most recent ticks before streaming when numberOfTicks is set
        ticks = market.hist_ticks(inst.con_id, int(time.time()), min(count, 1000), False)
        what = {1: "TRADES", 2: "TRADES", 3: "BID_ASK", 4: "MIDPOINT"}[tick_type]
        send_hist_ticks(s, req_id, what, ticks, done=True)
    makers = venues(inst)
    decimals = tick_decimals(inst.min_tick) + 1
    state: dict[str, Any] = {"steps": market.quote(inst.con_id).steps, "n": 0}

    def emit(q: Quote) -> None:
        now = int(time.time())
        if tick_type in (1, 2):
            if q.steps != state["steps"]:
                state["steps"] = q.steps
                state["n"] += 1
                exchange = makers[state["n"] % len(makers)] if tick_type == 2 else makers[0]
                s.send(ToClient.TICK_BY_TICK, req_id, tick_type, now, q.last,
                       _size(s, q.last_size), 0, exchange, "")
        elif tick_type == 3:
            key = (q.bid, q.ask) if ignore_size else (q.bid, q.ask, q.bid_size, q.ask_size)
            if state.get("quote") != key:
                state["quote"] = key
                s.send(ToClient.TICK_BY_TICK, req_id, 3, now, q.bid, q.ask,
                       _size(s, q.bid_size), _size(s, q.ask_size), 0)
        else:
            mid = round(q.mid, decimals)
            if state.get("mid") != mid:
                state["mid"] = mid
                s.send(ToClient.TICK_BY_TICK, req_id, 4, now, mid)

    if tick_type in (3, 4):
        emit(market.quote(inst.con_id))

    async def run(sub: Subscription) -> None:
        while True:
            await asyncio.sleep(_interval(s))
            emit(market.advance(inst.con_id, _interval(s)))

    s.open_sub("tbt", req_id, inst.con_id, run=run, tick_type=kind, ignore_size=ignore_size)


def cancel_tick_by_tick(s: ClientSession, r: rq.CancelTickByTickData) -> None:
    s.close_sub(r.reqId, "tbt")


# ---- real-time bars -----------------------------------------------------------------------------


def req_real_time_bars(s: ClientSession, r: rq.ReqRealTimeBars) -> None:
    # useRTH does not matter: the simulated market trades around the clock
    req_id, bar_size, what = r.reqId, r.barSize, r.whatToShow.upper()
    if _duplicate(s, req_id):
        return
    inst = resolve_one(s, req_id, r.contract)
    if inst is None:
        return
    if bar_size != 5:
        s.error(req_id, 321, "Error validating request.-'bX' : cause - Invalid bar size "
                f"{bar_size}: real-time bars are 5 seconds")
        return
    if what not in ("TRADES", "MIDPOINT", "BID", "ASK"):
        s.error(req_id, 321, f"Error validating request.-'bX' : cause - Invalid whatToShow "
                f"'{what}' for real-time bars")
        return
    market, tick = s.sim.market, inst.min_tick

    def price_of(q: Quote) -> float:
        return {"BID": q.bid, "ASK": q.ask, "MIDPOINT": tick_round(q.mid, tick / 2)}.get(
            what, q.last)

    async def run(sub: Subscription) -> None:
        bar_time = int(time.time()) // 5 * 5
        while True:
            prices, volume, count = [], 0, 0
            steps = market.quote(inst.con_id).steps
            # the bar's cadence: RT_BAR_TICKS tick intervals of the shared tape
            for _ in range(RT_BAR_TICKS):
                await asyncio.sleep(_interval(s))
                q = market.advance(inst.con_id, _interval(s))
                prices.append(price_of(q))
                if q.steps != steps:
                    steps = q.steps
                    volume += q.last_size
                    count += 1
            wap = round(sum(prices) / len(prices), tick_decimals(tick) + 2)
            if what != "TRADES":
                volume, wap, count = -1, -1, -1
            s.send(ToClient.REAL_TIME_BARS, 3, req_id, bar_time, prices[0], max(prices),
                   min(prices), prices[-1], _size(s, volume), wap, count)
            bar_time += 5

    s.open_sub("rt_bars", req_id, inst.con_id, run=run, what=what)


def cancel_real_time_bars(s: ClientSession, r: rq.CancelRealTimeBars) -> None:
    s.close_sub(r.reqId, "rt_bars")


# ---- depth ------------------------------------------------------------------------------------


def req_mkt_depth_exchanges(s: ClientSession, r: rq.ReqMktDepthExchanges) -> None:
    out: list[object] = [ToClient.MKT_DEPTH_EXCHANGES, len(DEPTH_EXCHANGES)]
    for exchange, sec_type, listing, service, agg in DEPTH_EXCHANGES:
        if s.version >= MIN_SERVER_VER_SERVICE_DATA_TYPE:
            out += [exchange, sec_type, listing, service, agg]
        else:
            out += [exchange, sec_type, service == "Deep2"]  # isL2
    s.send(*out)


class _Book:
    """One depth subscription: sends row operations that keep the client's book equal to ours."""

    def __init__(self, s: ClientSession, req_id: int, smart: bool, rng: random.Random) -> None:
        self.s, self.req_id, self.smart, self.rng = s, req_id, smart, rng
        self.rows: dict[int, list[BookRow]] = {0: [], 1: []}  # side 0 asks, 1 bids

    def op(self, position: int, operation: int, side: int, row: BookRow) -> None:
        s = self.s
        if self.smart:
            extra = [True] if s.version >= MIN_SERVER_VER_SMART_DEPTH else []
            s.send(ToClient.MARKET_DEPTH_L2, 1, self.req_id, position, row.maker, operation,
                   side, row.price, _size(s, row.size), *extra)
        else:
            s.send(ToClient.MARKET_DEPTH, 1, self.req_id, position, operation, side,
                   row.price, _size(s, row.size))

    def apply(self, bids: list[BookRow], asks: list[BookRow], churn: bool) -> None:
        for side, new in ((0, asks), (1, bids)):
            old = self.rows[side]
            for pos, row in enumerate(new):
                if pos >= len(old):
                    self.op(pos, 0, side, row)
                elif churn and pos == len(new) - 1:
                    # an order left the book and another took its place
                    self.op(pos, 2, side, old[pos])
                    self.op(pos, 0, side, row)
                elif old[pos].price == row.price and pos > 0 and self.rng.random() < 0.7:
                    new[pos] = old[pos]  # most resting levels keep their size between ticks
                elif (old[pos].price, old[pos].size) != (row.price, row.size):
                    self.op(pos, 1, side, row)
            for pos in range(len(old) - 1, len(new) - 1, -1):
                self.op(pos, 2, side, old[pos])
            self.rows[side] = new


def req_mkt_depth(s: ClientSession, r: rq.ReqMktDepth) -> None:
    req_id, rows, smart = r.reqId, r.numRows, r.isSmartDepth
    if _duplicate(s, req_id):
        return
    inst = resolve_one(s, req_id, r.contract)
    if inst is None:
        return
    limit = s.sim.config.depth_limit
    if len(s.subs_of("depth")) >= limit:
        s.error(req_id, 309, f"Max number ({limit}) of market depth requests has been reached")
        return
    rows = max(1, min(rows, 50))
    market = s.sim.market
    rng = market.sub_rng("depth", inst.con_id, req_id)
    book = _Book(s, req_id, smart, rng)
    book.apply(*market.book(inst.con_id, rows, rng), churn=False)

    async def run(sub: Subscription) -> None:
        while True:
            await asyncio.sleep(_interval(s))
            market.advance(inst.con_id, _interval(s))
            book.apply(*market.book(inst.con_id, rows, rng), churn=rng.random() < 0.2)

    s.open_sub("depth", req_id, inst.con_id, run=run, rows=rows, smart=smart)


def cancel_mkt_depth(s: ClientSession, r: rq.CancelMktDepth) -> None:
    s.close_sub(r.reqId, "depth")


HANDLERS = {
    FromClient.REQ_MARKET_DATA_TYPE: req_market_data_type,
    FromClient.REQ_MKT_DATA: req_mkt_data,
    FromClient.CANCEL_MKT_DATA: cancel_mkt_data,
    FromClient.REQ_TICK_BY_TICK_DATA: req_tick_by_tick,
    FromClient.CANCEL_TICK_BY_TICK_DATA: cancel_tick_by_tick,
    FromClient.REQ_REAL_TIME_BARS: req_real_time_bars,
    FromClient.CANCEL_REAL_TIME_BARS: cancel_real_time_bars,
    FromClient.REQ_MKT_DEPTH_EXCHANGES: req_mkt_depth_exchanges,
    FromClient.REQ_MKT_DEPTH: req_mkt_depth,
    FromClient.CANCEL_MKT_DEPTH: cancel_mkt_depth,
}
