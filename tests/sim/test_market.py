"""The simulator's market data (streaming, depth, bars, history, blast), seen through IB's client.

Each test drives ibapi's own EClient against the simulator and checks what its callbacks got,
so a layout mistake for the negotiated server version (200 with ibapi 10.x, 157 with 9.81)
shows up as a missing or garbled callback.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from ibapi.contract import Contract
from ibapi.server_versions import MAX_CLIENT_VER
from ibrecorder import IBClient
from orderkit import sync
from waiting import poll

from twsbus.testing import SimulatorThread

AAPL = 265598
ES = 637533641
EURUSD = 12087792


def stock(symbol: str = "AAPL") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def by_id(con_id: int, exchange: str = "SMART") -> Contract:
    c = Contract()
    c.conId, c.exchange = con_id, exchange
    return c


def on_grid(price: float, tick: float = 0.01) -> bool:
    return price > 0 and abs(price / tick - round(price / tick)) < 1e-6


def subs(sim: SimulatorThread, kind: str) -> dict[str, int]:
    return sim.control.state()["subscriptions"].get(kind, {})


def errors(ib: IBClient, req_id: int) -> list[tuple[Any, ...]]:
    return [a for a in ib.rec.of("error") if a[0] == req_id]


def ticks(ib: IBClient, req_id: int, name: str = "tickPrice") -> list[tuple[Any, ...]]:
    return [a for a in ib.rec.of(name) if a[0] == req_id]


def assert_quiet(ib: IBClient, name: str, req_id: int) -> None:
    """After a cancel (of a stream on AAPL): what was written before it lands, then nothing more
    while the tape moves on. A second line on AAPL witnesses three trades; a stream left running
    would have sent in that time, and a round trip behind it brings in all that was written."""
    sync(ib)
    before = len(ticks(ib, req_id, name))
    witness = req_id + 1000
    ib.reqMktData(witness, by_id(AAPL), "", False, False, [])
    ib.rec.wait_for("tickPrice", lambda a: a[0] == witness and a[1] == 4, count=4)  # image + 3
    ib.cancelMktData(witness)
    sync(ib)
    assert len(ticks(ib, req_id, name)) == before


# ---- top of book --------------------------------------------------------------------------------


def test_mkt_data_sends_params_image_and_updates(ib: IBClient) -> None:
    ib.reqMktData(1, stock(), "", False, False, [])
    params = ib.rec.wait_for("tickReqParams")[0]
    assert params == (1, 0.01, "9c0001", 3)
    ib.rec.wait_for("tickPrice", lambda a: a[0] == 1 and a[1] == 1, count=3)  # updates flow
    types = {a[1] for a in ticks(ib, 1)}
    assert {1, 2, 4, 6, 7, 9, 14} <= types
    assert all(on_grid(a[2]) for a in ticks(ib, 1))
    bid = next(a for a in ticks(ib, 1) if a[1] == 1)
    assert bid[3].canAutoExecute
    sizes = {a[1] for a in ticks(ib, 1, "tickSize")}
    assert {0, 3, 5, 8} <= sizes  # bid/ask/last size paired with their prices, and volume
    assert all(a[2] > 0 and int(a[2]) == a[2] for a in ticks(ib, 1, "tickSize"))
    stamp = next(a for a in ticks(ib, 1, "tickString") if a[1] == 45)
    assert abs(int(stamp[2]) - time.time()) < 10
    assert (1, 49, 0.0) in ib.rec.of("tickGeneric")  # not halted
    assert not ib.rec.of("marketDataType")  # only after reqMarketDataType


def test_prices_follow_the_simulated_market(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqMktData(1, by_id(AAPL), "", False, False, [])
    ib.rec.wait_for("tickPrice", lambda a: a[1] == 4, count=5)
    ib.cancelMktData(1)
    poll(lambda: not subs(sim, "mkt_data"))
    sync(ib)  # what was written before the cancel lands
    last = {a[1]: a[2] for a in ticks(ib, 1)}
    q = sim.call(lambda s: (s.market.quote(AAPL).bid, s.market.quote(AAPL).ask,
                            s.market.quote(AAPL).last))
    assert (last[1], last[2], last[4]) == q
    assert_quiet(ib, "tickPrice", 1)


def test_generic_ticks(ib: IBClient) -> None:
    ib.reqMktData(2, stock(), "233,236,165", False, False, [])
    rt = ib.rec.wait_for("tickString", lambda a: a[1] == 48)[0][2]
    price, size, ms, volume, _vwap, single = rt.split(";")
    assert on_grid(float(price)) and int(size) > 0 and int(volume) > 0 and single == "true"
    assert abs(int(ms) / 1000 - time.time()) < 10
    assert (2, 46, 3.0) in ib.rec.of("tickGeneric")
    assert {15, 16, 17, 18, 19, 20} <= {a[1] for a in ticks(ib, 2)}
    assert 21 in {a[1] for a in ticks(ib, 2, "tickSize")}


def test_bad_generic_tick_is_refused_with_321(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqMktData(3, stock(), "233,999", False, False, [])
    err = ib.rec.wait_for("error", lambda a: a[0] == 3)[0]
    assert err[1] == 321 and "999" in err[2]
    assert not ticks(ib, 3) and not subs(sim, "mkt_data")


def test_market_data_type_is_announced_and_delayed_ticks_used(ib: IBClient) -> None:
    ib.reqMarketDataType(3)
    ib.reqMktData(4, stock("MSFT"), "", False, False, [])
    assert ib.rec.wait_for("marketDataType")[0] == (4, 3)
    ib.rec.wait_for("tickPrice", lambda a: a[1] == 76)  # OPEN closes the image
    assert {66, 67, 68, 72, 73, 75, 76} <= {a[1] for a in ticks(ib, 4)}
    assert not {1, 2, 4} & {a[1] for a in ticks(ib, 4)}
    assert {69, 70, 71} <= {a[1] for a in ticks(ib, 4, "tickSize")}


@pytest.mark.parametrize("regulatory", [False, True])
def test_snapshot_ends_and_holds_no_line(
    sim: SimulatorThread, ib: IBClient, regulatory: bool
) -> None:
    ib.reqMktData(5, stock(), "", not regulatory, regulatory, [])
    ib.rec.wait_for("tickSnapshotEnd")
    assert {1, 2, 4} <= {a[1] for a in ticks(ib, 5)}
    assert not subs(sim, "mkt_data")
    assert_quiet(ib, "tickPrice", 5)


def test_unknown_contract_gets_200(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqMktData(6, stock("NOSUCH"), "", False, False, [])
    ib.reqMktDepth(7, by_id(999), 5, False, [])
    ib.reqHistoricalData(8, stock("NOSUCH"), "", "1 D", "1 hour", "TRADES", 1, 1, False, [])
    ib.reqTickByTickData(9, stock("NOSUCH"), "Last", 0, False)
    for req_id in (6, 7, 8, 9):
        err = ib.rec.wait_for("error", lambda a, r=req_id: a[0] == r)[0]
        assert err[1] == 200
        assert "No security definition" in err[2]
    assert not sim.control.state()["subscriptions"]


def test_line_limit_gives_101_and_starts_nothing(sim: SimulatorThread, ib: IBClient) -> None:
    sim.control.post("/config", line_limit=3)
    for req_id, symbol in enumerate(("AAPL", "MSFT", "IBM", "TSLA"), start=11):
        ib.reqMktData(req_id, stock(symbol), "", False, False, [])
    err = ib.rec.wait_for("error", lambda a: a[0] == 14)[0]
    assert err[1:] == (101, "Max number of tickers has been reached")
    ib.rec.wait_for("tickPrice", lambda a: a[0] == 13)
    assert not ticks(ib, 14) and not ticks(ib, 14, "tickReqParams")
    assert sum(subs(sim, "mkt_data").values()) == 3
    ib.cancelMktData(11)  # a freed line can be used again
    poll(lambda: sum(subs(sim, "mkt_data").values()) == 2)
    ib.reqMktData(15, stock("TSLA"), "", False, False, [])
    ib.rec.wait_for("tickPrice", lambda a: a[0] == 15)


def test_cancel_of_unknown_mkt_data_is_silent(ib: IBClient) -> None:
    ib.cancelMktData(424242)
    ib.reqCurrentTime()
    ib.rec.wait_for("currentTime")
    assert not errors(ib, 424242)


# ---- tick-by-tick -------------------------------------------------------------------------------


def test_tick_by_tick_all_types(sim: SimulatorThread, ib: IBClient) -> None:
    for req_id, kind in ((21, "Last"), (22, "AllLast"), (23, "BidAsk"), (24, "MidPoint")):
        ib.reqTickByTickData(req_id, stock(), kind, 0, False)
    last = ib.rec.wait_for("tickByTickAllLast", lambda a: a[0] == 21, count=2)
    assert all(a[1] == 1 and on_grid(a[3]) and a[4] > 0 and a[6] for a in last)
    all_last = ib.rec.wait_for("tickByTickAllLast", lambda a: a[0] == 22, count=3)
    assert all(a[1] == 2 for a in all_last) and len({a[6] for a in all_last}) > 1
    for a in ib.rec.wait_for("tickByTickBidAsk", lambda a: a[0] == 23, count=2):
        assert on_grid(a[2]) and on_grid(a[3]) and a[2] < a[3] and a[4] > 0 and a[5] > 0
        assert abs(a[1] - time.time()) < 10
    for a in ib.rec.wait_for("tickByTickMidPoint", lambda a: a[0] == 24, count=2):
        assert on_grid(a[2], 0.005)
    assert sum(subs(sim, "tbt").values()) == 4
    for req_id in (21, 22, 23, 24):
        ib.cancelTickByTickData(req_id)
    poll(lambda: not subs(sim, "tbt"))
    assert_quiet(ib, "tickByTickBidAsk", 23)


def test_tick_by_tick_replays_history_first(ib: IBClient) -> None:
    ib.reqTickByTickData(25, stock(), "BidAsk", 7, True)
    batch = ib.rec.wait_for("historicalTicksBidAsk")[0]
    assert batch[0] == 25 and len(batch[1]) == 7 and batch[2] is True
    ib.rec.wait_for("tickByTickBidAsk", lambda a: a[0] == 25)


# ---- real-time bars -----------------------------------------------------------------------------


def test_real_time_bars(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqRealTimeBars(31, stock(), 5, "TRADES", True, [])
    bars = ib.rec.wait_for("realtimeBar", count=2, timeout=5)
    (r1, t1, o1, h1, l1, c1, v1, w1, n1), (_, t2, *_) = bars[:2]
    assert r1 == 31 and t2 - t1 == 5 and t1 % 5 == 0
    assert l1 <= min(o1, c1) <= max(o1, c1) <= h1 and all(on_grid(p) for p in (o1, h1, l1, c1))
    assert v1 > 0 and n1 > 0 and l1 <= float(w1) <= h1
    ib.cancelRealTimeBars(31)
    poll(lambda: not subs(sim, "rt_bars"))


def test_real_time_bars_bad_size_is_refused(ib: IBClient) -> None:
    ib.reqRealTimeBars(32, stock(), 10, "TRADES", True, [])
    assert ib.rec.wait_for("error", lambda a: a[0] == 32)[0][1] == 321


# ---- depth --------------------------------------------------------------------------------------


def replay(book: dict[int, list[tuple[float, Any]]], position: int, op: int, price: float,
           size: Any) -> None:
    if op == 0:
        book.setdefault(0, [])
        book[0].insert(position, (price, size))
    elif op == 1:
        book[0][position] = (price, size)
    else:
        del book[0][position]


def check_book(calls: list[tuple[Any, ...]], smart: bool) -> None:
    sides: dict[int, list[tuple[float, Any]]] = {0: [], 1: []}
    for a in calls:
        if smart:
            _, position, _maker, op, side, price, size, _is_smart = a
        else:
            _, position, op, side, price, size = a
        rows = {0: sides[side]}
        replay(rows, position, op, price, size)
        sides[side] = rows[0]
    asks, bids = [p for p, _ in sides[0]], [p for p, _ in sides[1]]
    assert asks == sorted(asks) and bids == sorted(bids, reverse=True)
    assert bids[0] < asks[0]
    assert all(s > 0 for _, s in sides[0] + sides[1])


def test_smart_depth_is_l2_and_consistent(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqMktDepth(41, stock(), 5, True, [])
    first = ib.rec.wait_for("updateMktDepthL2", count=10)
    assert all(a[3] == 0 and a[7] is True and a[2] for a in first[:10])  # inserts, SMART
    assert sorted((a[4], a[1]) for a in first[:10]) == [(s, p) for s in (0, 1) for p in range(5)]
    ib.rec.wait_for("updateMktDepthL2", lambda a: a[3] == 1, count=5)
    ib.cancelMktDepth(41, True)
    poll(lambda: not subs(sim, "depth"))
    sync(ib)  # every row operation written before the cancel has landed
    check_book(ticks(ib, 41, "updateMktDepthL2"), smart=True)
    assert_quiet(ib, "updateMktDepthL2", 41)


def test_exchange_depth_is_l1(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqMktDepth(42, by_id(AAPL, "ISLAND"), 3, False, [])
    ib.rec.wait_for("updateMktDepth", lambda a: a[2] == 1, count=3)
    ib.cancelMktDepth(42, False)
    poll(lambda: not subs(sim, "depth"))
    sync(ib)  # a book is only consistent between ticks: check it at rest, all of it landed
    assert not ib.rec.of("updateMktDepthL2")
    check_book(ticks(ib, 42, "updateMktDepth"), smart=False)


def test_fourth_depth_request_gets_309(sim: SimulatorThread, ib: IBClient) -> None:
    for req_id in (43, 44, 45, 46):
        ib.reqMktDepth(req_id, stock(), 3, True, [])
    err = ib.rec.wait_for("error", lambda a: a[0] == 46)[0]
    assert err[1:] == (309, "Max number (3) of market depth requests has been reached")
    assert sum(subs(sim, "depth").values()) == 3
    assert not ticks(ib, 46, "updateMktDepthL2")


def test_depth_exchanges(ib: IBClient) -> None:
    ib.reqMktDepthExchanges()
    (descs,) = ib.rec.wait_for("mktDepthExchanges")[0]
    by_exchange = {d.exchange: d for d in descs}
    assert by_exchange["ISLAND"].secType == "STK"
    assert by_exchange["ISLAND"].serviceDataType == "Deep2"
    assert by_exchange["ISLAND"].aggGroup == 7


# ---- historical bars ----------------------------------------------------------------------------


def hist(ib: IBClient, req_id: int) -> tuple[list[Any], tuple[Any, ...]]:
    end = ib.rec.wait_for("historicalDataEnd", lambda a: a[0] == req_id)[0]
    return [a[1] for a in ticks(ib, req_id, "historicalData")], end


def test_daily_bars(ib: IBClient) -> None:
    ib.reqHistoricalData(51, stock(), "", "1 M", "1 day", "TRADES", 1, 1, False, [])
    bars, (_, start, _end) = hist(ib, 51)
    assert 18 <= len(bars) <= 24
    dates = [b.date for b in bars]
    assert all(len(d) == 8 and d.isdigit() for d in dates) and dates == sorted(set(dates))
    assert start.endswith("US/Eastern") and start[:8] <= dates[0]
    for b in bars:
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.volume > 0 and b.barCount > 0 and on_grid(b.close)


def test_intraday_bars_formats_and_determinism(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqHistoricalData(52, stock(), "20261118 16:00:00 US/Eastern", "1 D", "30 mins",
                         "MIDPOINT", 1, 1, False, [])
    ib.reqHistoricalData(53, stock(), "20261118 16:00:00 US/Eastern", "1 D", "30 mins",
                         "MIDPOINT", 1, 2, False, [])
    one, _ = hist(ib, 52)
    two, (_, _, end) = hist(ib, 53)
    assert len(one) == 13  # 09:30 .. 15:30 in regular hours
    assert one[0].date == "20261118 09:30:00 US/Eastern"
    assert one[-1].date == "20261118 15:30:00 US/Eastern"
    assert int(two[0].date) == 1795012200  # the same open as epoch seconds
    assert [(b.open, b.close) for b in one] == [(b.open, b.close) for b in two]
    assert all(b.volume == -1 and b.barCount == -1 for b in one)  # quotes carry no volume
    assert end == "20261118 16:00:00 US/Eastern"


@pytest.mark.parametrize(("duration", "bar_size", "word"), [
    ("1 X", "1 hour", "duration"), ("D", "1 hour", "duration"), ("1 D", "7 mins", "bar size"),
])
def test_invalid_duration_or_bar_size_gets_321(
    ib: IBClient, duration: str, bar_size: str, word: str
) -> None:
    ib.reqHistoricalData(54, stock(), "", duration, bar_size, "TRADES", 1, 1, False, [])
    err = ib.rec.wait_for("error", lambda a: a[0] == 54)[0]
    assert err[1] == 321 and word in err[2]
    assert not ib.rec.of("historicalData")


def test_forex_trades_are_refused_with_162(ib: IBClient) -> None:
    ib.reqHistoricalData(55, by_id(EURUSD, "IDEALPRO"), "", "1 D", "1 hour", "TRADES", 0, 1,
                         False, [])
    assert ib.rec.wait_for("error", lambda a: a[0] == 55)[0][1] == 162
    ib.reqHistoricalData(56, by_id(EURUSD, "IDEALPRO"), "", "1 D", "1 hour", "MIDPOINT", 0, 1,
                         False, [])
    bars, _ = hist(ib, 56)
    assert bars and all(on_grid(b.close, 0.00005) for b in bars)


def test_keep_up_to_date_streams_until_cancelled(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqHistoricalData(57, stock(), "", "2 D", "5 mins", "TRADES", 0, 2, True, [])
    bars, _ = hist(ib, 57)
    updates = ib.rec.wait_for("historicalDataUpdate", count=3)
    last = updates[-1][1]
    assert updates[0][0] == 57 and int(last.date) >= int(bars[-1].date)
    assert last.low <= last.close <= last.high and on_grid(last.close)
    assert subs(sim, "hist_bars") == {str(AAPL): 1}
    ib.cancelHistoricalData(57)
    poll(lambda: not subs(sim, "hist_bars"))
    assert_quiet(ib, "historicalDataUpdate", 57)


def test_keep_up_to_date_with_end_date_is_refused(ib: IBClient) -> None:
    ib.reqHistoricalData(58, stock(), "20261118 16:00:00", "1 D", "5 mins", "TRADES", 1, 1,
                         True, [])
    assert ib.rec.wait_for("error", lambda a: a[0] == 58)[0][1] == 321


# ---- head timestamp, histogram, historical ticks ------------------------------------------------


def test_head_timestamp(ib: IBClient) -> None:
    ib.reqHeadTimeStamp(61, stock(), "TRADES", 1, 1)
    ib.reqHeadTimeStamp(62, stock(), "TRADES", 1, 2)
    assert ib.rec.wait_for("headTimestamp", lambda a: a[0] == 61)[0][1] == "19801212-14:30:00"
    assert ib.rec.wait_for("headTimestamp", lambda a: a[0] == 62)[0][1] == "345479400"
    ib.cancelHeadTimeStamp(61)  # nothing pending: silently ignored


def test_histogram(ib: IBClient) -> None:
    ib.reqHistogramData(63, stock(), True, "3 days")
    req_id, points = ib.rec.wait_for("histogramData")[0]
    assert req_id == 63 and len(points) > 5
    for p in points:
        size = p.size if hasattr(p, "size") else p.count  # 9.81 calls it count
        assert on_grid(p.price) and size > 0
    ib.reqHistogramData(64, stock(), True, "3 fortnights")
    assert ib.rec.wait_for("error", lambda a: a[0] == 64)[0][1] == 321


def test_historical_ticks_per_what_to_show(ib: IBClient) -> None:
    ib.reqHistoricalTicks(65, stock(), "", "20261118 15:00:00 US/Eastern", 50, "TRADES", 1,
                          True, [])
    ib.reqHistoricalTicks(66, stock(), "20261118 10:00:00 US/Eastern", "", 20, "BID_ASK", 1,
                          True, [])
    ib.reqHistoricalTicks(67, stock(), "", "", 10, "MIDPOINT", 1, True, [])
    req, trades, done = ib.rec.wait_for("historicalTicksLast")[0]
    assert req == 65 and len(trades) == 50 and done
    times = [t.time for t in trades]
    assert times == sorted(times) and times[-1] == 1795032000  # up to the end time
    assert all(on_grid(t.price) and t.size > 0 and t.exchange for t in trades)
    req, quotes, done = ib.rec.wait_for("historicalTicksBidAsk")[0]
    assert req == 66 and len(quotes) == 20 and done
    assert quotes[0].time == 1795014000  # from the start time
    assert all(q.priceBid < q.priceAsk for q in quotes)
    req, mids, done = ib.rec.wait_for("historicalTicks")[0]
    assert req == 67 and len(mids) == 10 and done and all(m.price > 0 for m in mids)


# ---- blast --------------------------------------------------------------------------------------


def test_blast_delivers_exactly_n_ticks_then_the_end_marker(
    sim: SimulatorThread, ib: IBClient
) -> None:
    sim.control.post("/config", tick_interval=60.0)  # only the image: no regular ticks
    ib.reqMktData(71, by_id(AAPL), "", False, False, [])
    ib.rec.wait_for("tickString", lambda a: a[1] == 45)
    ib.rec.clear()
    n = 25_000
    assert sim.control.post("/blast", conId=AAPL, count=n) == {"sessions": 1, "count": n,
                                                                 "kind": "ticks"}
    ib.rec.wait_for("tickString", lambda a: a[2] == "blast-end", timeout=60)
    prices = ticks(ib, 71)
    assert len(prices) == n
    assert {a[1] for a in prices} == {1, 2} and all(on_grid(a[2]) for a in prices)
    sizes = ticks(ib, 71, "tickSize")
    assert len(sizes) == n and all(isinstance(a[2], Decimal | int) for a in sizes)
    assert sim.control.post("/blast", conId=ES, count=5) == {"sessions": 0, "count": 5,
                                                              "kind": "ticks"}


def test_pace_sends_rate_ticks_each_a_price_and_its_send_time_in_nanoseconds(
    sim: SimulatorThread, ib: IBClient
) -> None:
    sim.control.post("/config", tick_interval=60.0)
    ib.reqMktData(72, by_id(AAPL), "", False, False, [])
    ib.reqMktData(73, by_id(ES), "", False, False, [])
    ib.rec.wait_for("tickString", lambda a: a[0] == 73 and a[1] == 45)
    ib.rec.clear()
    started = time.time_ns()
    state = sim.control.post("/pace", conIds=[AAPL, ES], rate=2000, seconds=0.5)
    assert state["count"] == 1000 and state["conIds"] == 2
    poll(lambda: not sim.control.call("GET", "/pace")["running"], timeout=10)
    poll(lambda: sum(len(ticks(ib, r, "tickString")) for r in (72, 73)) == 1000)
    for req_id in (72, 73):  # round-robin: 500 each, BID alternating between two grid prices
        prices = ticks(ib, req_id)
        stamps = [int(a[2]) for a in ticks(ib, req_id, "tickString") if a[1] == 45]
        assert len(prices) == len(stamps) == 500
        assert {a[1] for a in prices} == {1} and len({a[2] for a in prices}) == 2
        assert all(on_grid(a[2], 0.25 if req_id == 73 else 0.01) for a in prices)
        assert stamps == sorted(stamps) and started < stamps[0] and stamps[-1] < time.time_ns()
    assert sim.control.call("GET", "/pace")["frames"] == 2000


# ---- layouts across server versions -------------------------------------------------------------


@pytest.mark.parametrize("version", [157, 163, 165, 178, 195, 196])
def test_layouts_at_each_server_version(version: int) -> None:
    """Cap the simulator's version so the client negotiates it: every version-gated layout
    (decimal sizes from 163, SCHEDULE from 165, historicalDataEnd from 196) must decode."""
    if version > MAX_CLIENT_VER:
        pytest.skip(f"this ibapi speaks up to server version {MAX_CLIENT_VER}")
    with SimulatorThread(tick_interval=0.05, max_version=version) as sim:
        ib = IBClient().start(sim.port)
        try:
            assert ib.serverVersion() == version
            ib.reqMktData(1, stock(), "233", False, False, [])
            ib.reqMktDepth(2, stock(), 3, True, [])
            ib.reqTickByTickData(3, stock(), "AllLast", 0, False)
            ib.reqHistoricalData(4, stock(), "", "2 D", "1 hour", "TRADES", 1, 1, False, [])
            ib.reqHistoricalTicks(5, stock(), "", "", 5, "BID_ASK", 1, True, [])
            ib.reqHistogramData(6, stock(), True, "1 week")
            ib.reqMktDepthExchanges()
            if version >= 165:
                ib.reqHistoricalData(7, stock(), "20261120 16:00:00 US/Eastern", "1 W",
                                     "1 day", "SCHEDULE", 1, 1, False, [])
                _, start, end, tz, sessions = ib.rec.wait_for("historicalSchedule")[0]
                assert tz == "US/Eastern" and len(sessions) == 5
                assert sessions[0].startDateTime.endswith("-09:30:00")
            ib.rec.wait_for("tickString", lambda a: a[1] == 48)
            ib.rec.wait_for("tickSize", lambda a: a[1] == 8)
            ib.rec.wait_for("updateMktDepthL2", count=6)
            ib.rec.wait_for("tickByTickAllLast")
            bars, _ = hist(ib, 4)
            assert len(bars) == 14 and all(b.volume > 0 for b in bars)
            assert len(ib.rec.wait_for("historicalTicksBidAsk")[0][1]) == 5
            ib.rec.wait_for("histogramData")
            ib.rec.wait_for("mktDepthExchanges")
            assert not [a for a in ib.rec.of("error") if a[1] < 2100]
        finally:
            ib.stop()
