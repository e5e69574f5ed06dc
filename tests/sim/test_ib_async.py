"""ib_async against the simulator: an independent implementation of the TWS protocol.

ib_async 2.1.0 has its own decoder and negotiates server version 178, so these tests check the
simulator's layouts with a client other than IB's own ibapi: the connect-time synchronisation
(positions, open and completed orders, account updates, executions), contract qualification,
streaming ticks, real-time and historical bars, a market order's fill, positions and account
values, each compared with the simulator's own state. Only the 10.x environment has ib_async.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from waiting import wait_until

from twsbus.sim.accounts import STARTING_BOOK
from twsbus.sim.market import Market
from twsbus.sim.orders import COMMISSION_PER_FILL
from twsbus.testing import SimulatorThread

ib_async = pytest.importorskip("ib_async")

pytestmark = pytest.mark.ib_async

AAPL, MSFT, IBM, SPY = 265598, 272093, 8314, 756733
HIST_END = "20240112 16:00:00 US/Eastern"  # a Friday's close: deterministic sessions


def quote(sim: SimulatorThread, con_id: int) -> Any:
    return sim.call(lambda s: replace(s.market.quote(con_id)))


@pytest.fixture
async def ib(sim: SimulatorThread) -> AsyncIterator[Any]:
    client = ib_async.IB()
    await client.connectAsync("127.0.0.1", sim.port, clientId=11, timeout=10,
                              raiseSyncErrors=True)
    try:
        yield client
    finally:
        client.disconnect()


async def test_connect_negotiates_178_and_completes_every_startup_request(
        sim: SimulatorThread, caplog: pytest.LogCaptureFixture) -> None:
    client = ib_async.IB()
    caplog.set_level(logging.INFO, logger="ib_async")
    # raiseSyncErrors: any startup request that does not complete fails the connect.
    await client.connectAsync("127.0.0.1", sim.port, clientId=12, timeout=10,
                              raiseSyncErrors=True)
    try:
        assert client.isConnected() and client.client.serverVersion() == 178
        # The simulator answered every request the synchronisation waits for: ib_async holds
        # none still pending and logged no timeout or error, and the simulator handled each one.
        assert "Synchronization complete" in caplog.messages
        assert not client.wrapper._futures
        assert [r.getMessage() for r in caplog.records
                if r.name.startswith("ib_async") and r.levelno >= logging.ERROR] == []
        state = sim.control.state()
        assert (state["unhandled"], state["handler_errors"]) == (0, 0)
        accounts = sim.call(lambda s: list(s.config.accounts))
        assert client.managedAccounts() == accounts
        requests = state["requests"]
        for name in ("REQ_POSITIONS", "REQ_OPEN_ORDERS", "REQ_COMPLETED_ORDERS", "REQ_ACCT_DATA",
                     "REQ_ACCOUNT_UPDATES_MULTI", "REQ_EXECUTIONS"):
            assert requests.get(name, 0) >= 1, (name, requests)
        # What the synchronisation loaded is the simulator's starting state.
        positions = {p.contract.conId: p for p in client.positions()}
        assert {c: (p.position, p.avgCost) for c, p in positions.items()} == \
            {c: (q, px) for c, q, px in STARTING_BOOK}
        assert client.openTrades() == [] and client.fills() == []
        assert {v.tag for v in client.accountValues()} >= {"NetLiquidation", "CashBalance"}
    finally:
        client.disconnect()
    assert not client.isConnected()


async def test_qualify_contracts_fills_in_the_conid(ib: Any, sim: SimulatorThread) -> None:
    stock = ib_async.Stock("AAPL", "SMART", "USD")
    (qualified,) = await ib.qualifyContractsAsync(stock)
    inst = sim.call(lambda s: s.universe.get(AAPL))
    assert qualified.conId == AAPL == stock.conId  # qualified in place
    assert (qualified.primaryExchange, qualified.localSymbol, qualified.tradingClass) == \
        (inst.primary_exchange, inst.local_symbol, inst.trading_class)
    (details,) = await ib.reqContractDetailsAsync(ib_async.Stock("AAPL", "SMART", "USD"))
    assert (details.longName, details.minTick, details.validExchanges) == \
        (inst.long_name, inst.min_tick, inst.valid_exchanges)

    option = ib_async.Option("AAPL", "20261218", 190.0, "C", "SMART")
    (opt,) = await ib.qualifyContractsAsync(option)
    expected = sim.call(lambda s: s.universe.find({
        "symbol": "AAPL", "secType": "OPT", "lastTradeDateOrContractMonth": "20261218",
        "strike": 190.0, "right": "C"}))
    assert [opt.conId] == [i.con_id for i in expected]
    assert opt.multiplier == "100"


async def test_streaming_ticks_update_the_ticker(ib: Any, sim: SimulatorThread) -> None:
    contract = ib_async.Stock("MSFT", "SMART", "USD", conId=MSFT)
    ticker = ib.reqMktData(contract)
    seen: set[tuple[float, float, float]] = set()
    ticker.updateEvent += lambda t: seen.add((t.bid, t.ask, t.last))
    await wait_until(lambda: len(seen) >= 5, what="five distinct quotes")
    volume_then = ticker.volume
    await wait_until(lambda: ticker.volume > volume_then, what="volume to grow")
    ib.cancelMktData(contract)
    # A round trip behind the cancel: the ticks written before it have landed (ib_async's ticker
    # still takes them), and nothing steps MSFT any more.
    await ib.reqCurrentTimeAsync()
    q = quote(sim, MSFT)
    assert (ticker.bid, ticker.ask, ticker.last) == (q.bid, q.ask, q.last)
    assert (ticker.bidSize, ticker.askSize) == (q.bid_size, q.ask_size)
    # ib_async negotiates 178: a US stock's volume comes in lots of 100 before version 220
    assert ticker.volume == q.volume / 100 and ticker.high == q.high and ticker.low == q.low
    assert ticker.close == q.close
    assert all(0 < b < a for b, a, _ in seen if not math.isnan(b) and not math.isnan(a))
    assert sim.call(lambda s: [sub for sess in s.sessions
                               for sub in sess.subs_of("mkt_data")]) == []


async def test_realtime_bars_arrive_every_five_seconds_of_tape(
        ib: Any, sim: SimulatorThread) -> None:
    contract = ib_async.Stock("IBM", "SMART", "USD", conId=IBM)
    start = quote(sim, IBM).steps  # only the bars' stream steps IBM: its trades count from here
    bars = ib.reqRealTimeBars(contract, 5, "TRADES", False)
    try:
        await wait_until(lambda: len(bars) >= 3, timeout=10, what="three real-time bars")
    finally:
        ib.cancelRealTimeBars(bars)
    stamps = [int(b.time.timestamp()) for b in bars]
    assert all(t % 5 == 0 for t in stamps) and stamps == sorted(set(stamps))
    for b in bars:
        assert b.low <= min(b.open_, b.close) <= max(b.open_, b.close) <= b.high
        assert b.volume >= 0 and b.count >= 0
    # The newest bar closes at the tape's last as it was when the bar was cut. The walk is
    # deterministic, so replay it for as many trades as the bars counted (the live tape may
    # have stepped again before the cancel landed).
    cut = start + sum(b.count for b in bars)
    assert quote(sim, IBM).steps >= cut
    tape = sim.call(lambda s: Market(s.universe, s.config.seed))
    for _ in range(cut):
        tape.step(IBM)
    assert bars[-1].close == tape.quote(IBM).last


async def test_historical_bars_are_consistent_and_meet_the_live_price(
        ib: Any, sim: SimulatorThread) -> None:
    contract = ib_async.Stock("AAPL", "SMART", "USD", conId=AAPL)
    bars = await ib.reqHistoricalDataAsync(contract, HIST_END, "2 D", "1 hour", "TRADES", True)
    # Thu 11 and Fri 12 Jan 2024, 09:30-16:00: a half-hour bar and six hourly ones each.
    assert len(bars) == 14
    assert [(b.date.day, b.date.hour, b.date.minute) for b in bars[:2]] == [(11, 9, 30),
                                                                          (11, 10, 0)]
    for b in bars:
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.volume > 0
    assert bars[-1].close == quote(sim, AAPL).last
    daily = await ib.reqHistoricalDataAsync(contract, HIST_END, "1 W", "1 day", "MIDPOINT", True)
    assert [str(b.date) for b in daily] == ["2024-01-08", "2024-01-09", "2024-01-10",
                                            "2024-01-11", "2024-01-12"]
    assert all(b.volume == -1 for b in daily)  # quote-based bars carry no volume


async def test_keep_up_to_date_bars_stream_updates(ib: Any, sim: SimulatorThread) -> None:
    contract = ib_async.Stock("AAPL", "SMART", "USD", conId=AAPL)
    bars = await ib.reqHistoricalDataAsync(contract, "", "1 D", "1 min", "TRADES", False,
                                           keepUpToDate=True)
    updates: list[bool] = []
    bars.updateEvent += lambda _bars, has_new_bar: updates.append(has_new_bar)
    try:
        await wait_until(lambda: len(updates) >= 3, what="three bar updates")
    finally:
        # ib.cancelHistoricalData forgets the bars as it sends the cancel, dropping an update
        # already on its way: cancel on the wire first and keep listening until a round trip
        # behind the cancel is answered, so every update written before it has landed.
        ib.client.cancelHistoricalData(bars.reqId)
        await ib.reqCurrentTimeAsync()
        ib.wrapper.endSubscription(bars)
    assert bars[-1].close == quote(sim, AAPL).last  # nothing steps AAPL after the cancel


async def test_market_order_fills_at_the_ask_with_a_commission(
        ib: Any, sim: SimulatorThread) -> None:
    contract = ib_async.Stock("IBM", "SMART", "USD", conId=IBM)
    ask = quote(sim, IBM).ask
    trade = ib.placeOrder(contract, ib_async.MarketOrder("BUY", 25))
    await wait_until(lambda: trade.isDone() and bool(trade.fills)
                and bool(trade.fills[0].commissionReport.execId), what="the fill")
    assert trade.orderStatus.status == "Filled"
    assert (trade.orderStatus.filled, trade.orderStatus.remaining) == (25, 0)
    assert trade.orderStatus.avgFillPrice == ask
    (fill,) = trade.fills
    assert (fill.execution.side, fill.execution.shares, fill.execution.price) == ("BOT", 25, ask)
    assert fill.execution.acctNumber == sim.call(lambda s: s.config.accounts[0])
    assert fill.commissionReport.commission == COMMISSION_PER_FILL
    assert fill.contract.conId == IBM
    # The position and the portfolio hear about the fill at once.
    await wait_until(lambda: any(p.contract.conId == IBM and p.position == 25
                            for p in ib.positions()), what="the IBM position")
    (item,) = [p for p in ib.portfolio() if p.contract.conId == IBM]
    assert item.position == 25 and item.averageCost == pytest.approx(
        (25 * ask + COMMISSION_PER_FILL) / 25)
    (execution,) = await ib.reqExecutionsAsync()
    assert execution.execution.execId == fill.execution.execId


async def test_positions_and_account_values_match_the_simulator(
        ib: Any, sim: SimulatorThread) -> None:
    code = sim.call(lambda s: s.config.accounts[0])
    positions = await ib.reqPositionsAsync()
    book = sim.call(lambda s: {p.con_id: (p.qty, p.avg_cost)
                               for p in s.accounts.get(code).positions.values()})
    assert {p.contract.conId: (p.position, p.avgCost) for p in positions} == book
    assert {p.account for p in positions} == {code}

    numbers = sim.call(lambda s: s.accounts.numbers(s.accounts.get(code)))
    values = {(v.tag, v.currency): v.value for v in ib.accountValues(code)}
    for tag in ("NetLiquidation", "TotalCashValue", "GrossPositionValue", "BuyingPower"):
        assert float(values[(tag, "USD")]) == pytest.approx(numbers[tag], abs=0.01), tag
    assert values[("AccountCode", "")] == code

    portfolio = {p.contract.conId: p for p in ib.portfolio(code)}
    for con_id, qty, price in STARTING_BOOK:
        last = quote(sim, con_id).last
        item = portfolio[con_id]
        assert (item.position, item.averageCost, item.marketPrice) == (qty, price, last)
        assert item.unrealizedPNL == pytest.approx(qty * (last - price), abs=0.01)

    summary = {v.tag: v.value for v in await ib.accountSummaryAsync(code)}
    assert float(summary["NetLiquidation"]) == pytest.approx(numbers["NetLiquidation"], abs=0.01)
    assert float(summary["TotalCashValue"]) == pytest.approx(numbers["TotalCashValue"], abs=0.01)
