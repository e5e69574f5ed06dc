"""Account requests against the simulator, seen through IB's real client (10.x and 9.81):
positions, account summary, account updates with portfolio, PnL, the model-code variants, and
how fills reach subscribers; plus the bookkeeping of ``Accounts.apply_fill`` itself."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from ibrecorder import IBClient
from orderkit import ib_async_wait

from twsbus.sim.accounts import Accounts
from twsbus.sim.server import SimConfig, Simulator
from twsbus.testing import SimulatorThread

ACCT = "DU1234567"
AAPL, SPY, MSFT = 265598, 756733, 272093


pytestmark = pytest.mark.usefixtures("strict_decoding")


@pytest.fixture(params=[157, 163, 200])
def vib(request: pytest.FixtureRequest) -> Iterator[tuple[SimulatorThread, IBClient]]:
    with SimulatorThread(tick_interval=0.05, max_version=request.param) as s:
        client = IBClient().start(s.port)
        try:
            if client.serverVersion() != request.param:
                pytest.skip(f"client tops out at {client.serverVersion()}")
            yield s, client
        finally:
            client.stop()


def sync(ib: IBClient) -> None:
    """Round-trip a request so everything sent before it has been processed."""
    before = len(ib.rec.of("currentTime"))
    ib.reqCurrentTime()
    ib.rec.wait_for("currentTime", count=before + 1)


def subscriptions(sim: SimulatorThread) -> dict[str, Any]:
    return sim.control.state()["subscriptions"]


def fill(sim: SimulatorThread, con_id: int, side: str, qty: float, price: float,
         commission: float = 1.0) -> None:
    sim.call(lambda s: s.accounts.apply_fill(ACCT, s.universe.get(con_id), side, qty, price,
                                             commission))


# ---- bookkeeping ---------------------------------------------------------------------------


def test_apply_fill_average_cost_realized_and_cash() -> None:
    sim = Simulator(SimConfig(port=0))
    accounts: Accounts = sim.accounts
    acct = accounts.get(ACCT)
    assert acct is not None
    aapl = sim.universe.get(AAPL)
    assert aapl is not None
    cash = acct.cash
    pos = accounts.apply_fill(ACCT, aapl, "BOT", 100, 200.0, 2.0)
    assert pos.qty == 200 and pos.avg_cost == pytest.approx((100 * 180 + 100 * 200 + 2) / 200)
    assert acct.cash == pytest.approx(cash - 20_002)
    avg = pos.avg_cost
    accounts.apply_fill(ACCT, aapl, "SELL", 50, 210.0, 1.0)
    assert pos.qty == 150 and pos.avg_cost == avg
    assert pos.realized == pytest.approx((210 - avg) * 50 - 1)
    accounts.apply_fill(ACCT, aapl, "SLD", 200, 205.0, 1.0)  # through zero: short 50 at 205
    assert pos.qty == -50 and pos.avg_cost == 205.0
    accounts.apply_fill(ACCT, aapl, "BUY", 50, 200.0, 1.0)
    assert pos.qty == 0 and pos.avg_cost == 0.0
    assert acct.cash == pytest.approx(cash + pos.realized + 18_000)  # the seed cost back


def test_option_fill_uses_the_multiplier() -> None:
    sim = Simulator(SimConfig(port=0))
    opt = sim.universe.options_of(AAPL)[0]
    pos = sim.accounts.apply_fill(ACCT, opt, "BUY", 2, 3.5, 1.3)
    assert pos.avg_cost == pytest.approx((2 * 350 + 1.3) / 2)
    assert sim.accounts.market_value(pos) == pytest.approx(
        2 * 100 * sim.market.quote(opt.con_id).last)


def test_unknown_account_fill_raises() -> None:
    sim = Simulator(SimConfig(port=0))
    with pytest.raises(KeyError):
        sim.accounts.apply_fill("U999", sim.universe.instruments[0], "BUY", 1, 1.0)


# ---- positions -----------------------------------------------------------------------------


def test_positions_then_end_then_cancel(vib: tuple[SimulatorThread, IBClient]) -> None:
    sim, ib = vib
    ib.reqPositions()
    ib.rec.wait_for("positionEnd")
    rows = {c.conId: (acct, c, pos, avg) for acct, c, pos, avg in ib.rec.of("position")}
    acct, c, pos, avg = rows[AAPL]
    assert acct == ACCT and (c.symbol, c.secType, c.currency) == ("AAPL", "STK", "USD")
    assert float(pos) == 100 and avg == 180.0
    assert float(rows[SPY][2]) == 50 and rows[SPY][3] == 540.0
    assert "positions" in subscriptions(sim)
    ib.cancelPositions()
    sync(ib)
    assert "positions" not in subscriptions(sim)


def test_a_fill_reaches_position_subscribers(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqPositions()
    ib.rec.wait_for("positionEnd")
    fill(sim, MSFT, "BUY", 10, 400.0)
    _, c, pos, avg = ib.rec.wait_for("position", lambda a: a[1].conId == MSFT)[0]
    assert float(pos) == 10 and avg == pytest.approx(400.1)


def test_positions_multi(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqPositionsMulti(30, ACCT, "")
    ib.rec.wait_for("positionMultiEnd", lambda a: a[0] == 30)
    rows = ib.rec.of("positionMulti")
    assert {(r[0], r[1], r[3].conId, float(r[4]), r[5]) for r in rows} == {
        (30, ACCT, AAPL, 100.0, 180.0), (30, ACCT, SPY, 50.0, 540.0)}
    ib.cancelPositionsMulti(30)
    sync(ib)
    assert "positions_multi" not in subscriptions(sim)


# ---- account summary -----------------------------------------------------------------------


def test_account_summary_returns_exactly_the_tags_asked(sim: SimulatorThread,
                                                        ib: IBClient) -> None:
    tags = ["NetLiquidation", "TotalCashValue", "BuyingPower", "AvailableFunds",
            "GrossPositionValue", "AccountType", "Cushion"]
    ib.reqAccountSummary(40, "All", ",".join(tags))
    ib.rec.wait_for("accountSummaryEnd", lambda a: a[0] == 40)
    rows = {tag: (acct, value, ccy) for r, acct, tag, value, ccy in ib.rec.of("accountSummary")
            if r == 40}
    assert set(rows) == set(tags)
    assert all(acct == ACCT for acct, _, _ in rows.values())
    assert rows["AccountType"][1:] == ("INDIVIDUAL", "")
    assert rows["NetLiquidation"][2] == "USD"
    net_liq, cash = float(rows["NetLiquidation"][1]), float(rows["TotalCashValue"][1])
    gross = float(rows["GrossPositionValue"][1])
    assert net_liq == pytest.approx(cash + gross, abs=0.02) and gross > 0
    assert float(rows["BuyingPower"][1]) == pytest.approx(4 * float(rows["AvailableFunds"][1]),
                                                          abs=0.05)
    assert "account_summary" in subscriptions(sim)
    ib.cancelAccountSummary(40)
    sync(ib)
    assert "account_summary" not in subscriptions(sim)


def test_account_summary_ledger(ib: IBClient) -> None:
    ib.reqAccountSummary(41, "All", "$LEDGER")
    ib.rec.wait_for("accountSummaryEnd", lambda a: a[0] == 41)
    rows = {(tag, ccy): value for _, _, tag, value, ccy in ib.rec.of("accountSummary")}
    assert rows[("Currency", "USD")] == "USD" and ("CashBalance", "USD") in rows
    assert not any(ccy == "BASE" for _, ccy in rows)
    ib.reqAccountSummary(42, "All", "$LEDGER:ALL")
    ib.rec.wait_for("accountSummaryEnd", lambda a: a[0] == 42)
    ccys = {ccy for r, _, _, _, ccy in ib.rec.of("accountSummary") if r == 42}
    assert ccys == {"BASE", "USD"}


def test_account_summary_limit_and_bad_group(ib: IBClient) -> None:
    ib.reqAccountSummary(43, "All", "NetLiquidation")
    ib.reqAccountSummary(44, "All", "NetLiquidation")
    ib.reqAccountSummary(45, "All", "NetLiquidation")
    assert ib.rec.wait_for("error", lambda a: a[0] == 45)[0][1] == 322
    ib.cancelAccountSummary(43)
    ib.reqAccountSummary(46, "NoSuchGroup", "NetLiquidation")
    assert ib.rec.wait_for("error", lambda a: a[0] == 46)[0][1] == 321


def test_account_summary_covers_every_account() -> None:
    with SimulatorThread(tick_interval=0.05, accounts=["DU111", "DU222"]) as sim:
        ib = IBClient().start(sim.port)
        try:
            ib.reqAccountSummary(47, "All", "NetLiquidation")
            ib.rec.wait_for("accountSummaryEnd")
            assert {a[1] for a in ib.rec.of("accountSummary")} == {"DU111", "DU222"}
        finally:
            ib.stop()


def test_account_summary_streams_changes(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqAccountSummary(48, "All", "TotalCashValue")
    ib.rec.wait_for("accountSummaryEnd")
    fill(sim, MSFT, "BUY", 10, 400.0)
    rows = ib.rec.wait_for("accountSummary", count=2)
    assert float(rows[1][3]) == pytest.approx(float(rows[0][3]) - 4001)


# ---- account updates -----------------------------------------------------------------------


def test_account_updates_values_portfolio_time_and_end(
        vib: tuple[SimulatorThread, IBClient]) -> None:
    sim, ib = vib
    ib.reqAccountUpdates(True, ACCT)
    assert ib.rec.wait_for("accountDownloadEnd")[0] == (ACCT,)
    values = {(k, ccy): v for k, v, ccy, acct in ib.rec.of("updateAccountValue")}
    assert values[("AccountCode", "")] == ACCT
    assert float(values[("NetLiquidation", "USD")]) > 1_000_000
    assert ("CashBalance", "BASE") in values and ("CashBalance", "USD") in values
    portfolio = {c.conId: args for c, *args in ib.rec.of("updatePortfolio")}
    pos, price, value, avg, unrealized, realized, acct = portfolio[AAPL]
    assert float(pos) == 100 and avg == 180.0 and acct == ACCT
    assert value == pytest.approx(100 * price) and unrealized == pytest.approx(value - 18_000)
    (stamp,) = ib.rec.wait_for("updateAccountTime")[0]
    assert len(stamp) == 5 and stamp[2] == ":"
    assert "account" in subscriptions(sim)

    fill(sim, MSFT, "BUY", 10, 400.0)
    c, pos, *_ = ib.rec.wait_for("updatePortfolio", lambda a: a[0].conId == MSFT)[0]
    assert float(pos) == 10

    ib.reqAccountUpdates(False, ACCT)
    sync(ib)
    assert "account" not in subscriptions(sim)


def test_account_updates_unknown_account(ib: IBClient) -> None:
    ib.reqAccountUpdates(True, "U0000000")
    assert ib.rec.wait_for("error", lambda a: a[1] == 321)[0][0] == -1
    assert not ib.rec.of("accountDownloadEnd")


def test_account_updates_multi(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqAccountUpdatesMulti(50, ACCT, "", True)
    ib.rec.wait_for("accountUpdateMultiEnd", lambda a: a[0] == 50)
    keys = {r[3] for r in ib.rec.of("accountUpdateMulti") if r[0] == 50}
    assert "NetLiquidation" in keys and "CashBalance" in keys and "BuyingPower" not in keys
    ib.cancelAccountUpdatesMulti(50)
    sync(ib)
    assert "account_multi" not in subscriptions(sim)


# ---- PnL -----------------------------------------------------------------------------------


def test_pnl_streams_until_cancelled(vib: tuple[SimulatorThread, IBClient]) -> None:
    sim, ib = vib
    ib.reqPnL(60, ACCT, "")
    rows = ib.rec.wait_for("pnl", count=3)
    req_id, daily, unrealized, realized = rows[-1]
    assert req_id == 60 and realized == 0.0
    expected = sim.call(lambda s: s.accounts.pnl(s.accounts.get(ACCT)))
    assert (daily, unrealized) == pytest.approx(expected[:2], abs=50)
    ib.cancelPnL(60)
    sync(ib)
    assert "pnl" not in subscriptions(sim)
    seen = len([a for a in ib.rec.of("pnl") if a[0] == 60])
    # A second PnL line witnesses three more intervals, in which a line left running would
    # have sent too; the round trip behind its cancel brings in all that was written.
    ib.reqPnL(66, ACCT, "")
    ib.rec.wait_for("pnl", lambda a: a[0] == 66, count=3)
    ib.cancelPnL(66)
    sync(ib)
    assert len([a for a in ib.rec.of("pnl") if a[0] == 60]) == seen


def test_pnl_single_streams_position_and_value(vib: tuple[SimulatorThread, IBClient]) -> None:
    sim, ib = vib
    ib.reqPnLSingle(61, ACCT, "", AAPL)
    rows = ib.rec.wait_for("pnlSingle", count=2)
    req_id, pos, daily, unrealized, realized, value = rows[-1]
    assert req_id == 61 and float(pos) == 100
    price = sim.call(lambda s: s.market.quote(AAPL).last)
    assert value == pytest.approx(100 * price, rel=0.01)
    assert unrealized == pytest.approx(value - 18_000, abs=1)
    ib.cancelPnLSingle(61)
    sync(ib)
    assert "pnl_single" not in subscriptions(sim)


def test_pnl_single_realized_after_a_closing_fill(sim: SimulatorThread, ib: IBClient) -> None:
    fill(sim, AAPL, "SELL", 40, 200.0, 1.0)
    ib.reqPnLSingle(62, ACCT, "", AAPL)
    _, pos, _, _, realized, _ = ib.rec.wait_for("pnlSingle")[0]
    assert float(pos) == 60 and realized == pytest.approx(40 * 20 - 1)


def test_pnl_errors(ib: IBClient) -> None:
    ib.reqPnL(63, "U0000000", "")
    assert ib.rec.wait_for("error", lambda a: a[0] == 63)[0][1] == 321
    ib.reqPnLSingle(64, ACCT, "", 999999)
    assert ib.rec.wait_for("error", lambda a: a[0] == 64)[0][1] == 200
    ib.reqPnLSingle(65, "U0000000", "", AAPL)
    assert ib.rec.wait_for("error", lambda a: a[0] == 65)[0][1] == 321
    assert not ib.rec.of("pnlSingle")


# ---- ib_async ------------------------------------------------------------------------------


@pytest.mark.ib_async
def test_ib_async_connect_loads_positions_portfolio_and_pnl(sim: SimulatorThread) -> None:
    """ib_async asks for positions, account updates, orders and executions at connect and
    waits for every End: the connection completing proves they all arrive."""
    ib_async = pytest.importorskip("ib_async")
    ib = ib_async.IB()
    ib.connect("127.0.0.1", sim.port, clientId=7, timeout=10)
    try:
        positions = {p.contract.conId: p for p in ib.positions()}
        assert positions[AAPL].position == 100 and positions[AAPL].avgCost == 180.0
        portfolio = {p.contract.conId: p for p in ib.portfolio()}
        assert portfolio[SPY].position == 50 and portfolio[SPY].averageCost == 540.0
        tags = {v.tag for v in ib.accountValues()}
        assert {"NetLiquidation", "CashBalance", "BuyingPower"} <= tags
        pnl = ib.reqPnL(ACCT)
        ib_async_wait(ib, lambda: not math.isnan(pnl.unrealizedPnL), "the first PnL")
        assert pnl.unrealizedPnL == pytest.approx(
            sum(p.unrealizedPNL for p in ib.portfolio()), abs=1)
        ib.cancelPnL(ACCT)
    finally:
        ib.disconnect()
