"""How orders fill, seen through IB's real client: partial fills bounded by the size at the
touch, fills forced from the control endpoint, and fills that happen while the placing client
is away, which it learns of on reconnecting (reqOpenOrders, reqCompletedOrders, reqExecutions).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from ibapi.execution import ExecutionFilter
from ibrecorder import IBClient
from orderkit import (
    AAPL,
    ACCOUNT,
    COMMISSION_CB,
    IBM,
    MSFT,
    commission_of,
    connect,
    make_order,
    move,
    next_id,
    perm_of,
    poll,
    quote,
    row_of,
    status_of,
    stock,
    wait_disconnected,
)

from twsbus.testing import SimulatorThread


def executions_of(ib: IBClient, order_id: int, req_id: int = -1) -> list[Any]:
    return [a[2] for a in ib.rec.of("execDetails") if a[2].orderId == order_id and a[0] == req_id]


# ---- partial fills -------------------------------------------------------------------------


def test_order_larger_than_the_touch_fills_in_several_executions(
        sim: SimulatorThread, ib: IBClient) -> None:
    bid, ask, last = quote(sim, AAPL)
    move(sim, AAPL, bid, ask, last, ask_size=100)
    oid = next_id(ib)
    ib.placeOrder(oid, stock(), make_order("BUY", 1000, "MKT"))
    status_of(ib, oid, "Filled", timeout=10)
    execs = executions_of(ib, oid)
    assert len(execs) >= 2
    assert (float(execs[0].shares), execs[0].price) == (100, ask)  # what the touch offered
    assert sum(float(e.shares) for e in execs) == 1000
    assert [float(e.cumQty) for e in execs] == \
        [sum(float(e.shares) for e in execs[:i + 1]) for i in range(len(execs))]
    weighted = sum(float(e.shares) * e.price for e in execs) / 1000

    statuses = [a for a in ib.rec.of("orderStatus") if a[0] == oid]
    fills = [(float(a[2]), float(a[3])) for a in statuses if float(a[2]) > 0]
    cum = [float(e.cumQty) for e in execs]
    assert fills == [(c, 1000 - c) for c in cum]  # filled grows, remaining shrinks
    assert [a[1] for a in statuses if float(a[2]) > 0][:-1] == ["Submitted"] * (len(cum) - 1)
    assert statuses[-1][4] == pytest.approx(weighted)  # avgFillPrice, weighted by size
    assert execs[-1].avgPrice == pytest.approx(weighted)
    reports = {r[0].execId: r[0] for r in ib.rec.wait_for(COMMISSION_CB, count=len(execs))}
    assert set(reports) == {e.execId for e in execs}
    assert all(commission_of(r) == 1.0 for r in reports.values())

    row = row_of(sim, statuses[-1][5])
    assert [x["shares"] for x in row["executions"]] == [float(e.shares) for e in execs]
    assert (row["status"], row["filled"], row["remaining"]) == ("Filled", 1000, 0)


def test_orders_on_one_instrument_share_the_size_at_the_touch(
        sim: SimulatorThread, ib: IBClient) -> None:
    bid, ask, _ = quote(sim, MSFT)
    low = round(bid - 20, 2)
    oid = next_id(ib)
    ib.placeOrder(oid, stock("MSFT"), make_order("BUY", 60, "LMT", lmt=low))
    ib.placeOrder(oid + 1, stock("MSFT"), make_order("BUY", 60, "LMT", lmt=low))
    status_of(ib, oid + 1, "Submitted")
    move(sim, MSFT, round(low - 0.01, 2), low, low, ask_size=100, match=True)
    first = ib.rec.wait_for("execDetails", lambda a: a[2].orderId == oid)[0][2]
    second = ib.rec.wait_for("execDetails", lambda a: a[2].orderId == oid + 1)[0][2]
    assert (float(first.shares), float(second.shares)) == (60, 40)  # 100 at the touch
    assert first.price == second.price == low


def test_partial_fills_can_be_switched_off(sim: SimulatorThread, ib: IBClient) -> None:
    assert sim.control.post("/config", partial_fills=False)["partial_fills"] is False
    bid, ask, last = quote(sim, IBM)
    move(sim, IBM, bid, ask, last, ask_size=100)
    oid = next_id(ib)
    ib.placeOrder(oid, stock("IBM"), make_order("BUY", 1000, "MKT"))
    status_of(ib, oid, "Filled")
    (only,) = executions_of(ib, oid)
    assert (float(only.shares), only.price) == (1000, ask)


# ---- fills forced from the control endpoint ------------------------------------------------


def test_forced_fills_at_a_given_price_then_at_the_limit(
        sim: SimulatorThread, ib: IBClient) -> None:
    bid, _, _ = quote(sim, AAPL)
    low = round(bid - 30, 2)
    oid = next_id(ib)
    ib.placeOrder(oid, stock(), make_order("BUY", 10, "LMT", lmt=low))
    perm = perm_of(ib, oid)
    part = sim.control.post("/orders/fill", permId=perm, price=low - 1, quantity=4)
    assert (part["shares"], part["price"], part["order"]["remaining"]) == (4, low - 1, 6)
    partial = ib.rec.wait_for("orderStatus", lambda a: a[0] == oid and float(a[2]) == 4)[0]
    assert (partial[1], float(partial[3])) == ("Submitted", 6)
    sim.control.post("/orders/fill", orderId=oid, clientId=0)
    done = status_of(ib, oid, "Filled")
    assert done[4] == pytest.approx((4 * (low - 1) + 6 * low) / 10)
    assert [(float(e.shares), e.price) for e in executions_of(ib, oid)] == \
        [(4, low - 1), (6, low)]
    with pytest.raises(RuntimeError, match="Filled"):
        sim.control.post("/orders/fill", permId=perm)
    with pytest.raises(RuntimeError, match="no order"):
        sim.control.post("/orders/fill", permId=1)


# ---- fills while the client is away --------------------------------------------------------


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y%m%d-%H:%M:%S")


def _executions(ib: IBClient, req_id: int, flt: ExecutionFilter) -> list[Any]:
    ib.reqExecutions(req_id, flt)
    ib.rec.wait_for("execDetailsEnd", lambda a: a[0] == req_id)
    return [a[2] for a in ib.rec.of("execDetails") if a[0] == req_id]


def test_orders_keep_working_while_their_client_is_away(sim: SimulatorThread) -> None:
    first = connect(sim, 7)
    bid, ask, _ = quote(sim, AAPL)
    oid = next_id(first)
    buy_low, sell_high = round(bid - 30, 2), round(ask + 30, 2)
    first.placeOrder(oid, stock(), make_order("BUY", 5, "LMT", lmt=buy_low))
    first.placeOrder(oid + 1, stock("IBM"), make_order("SELL", 3, "LMT", lmt=sell_high))
    first.placeOrder(oid + 2, stock("MSFT"), make_order("BUY", 2, "LMT", lmt=1.0))
    perms = [perm_of(first, oid + i) for i in range(3)]
    first.stop()
    wait_disconnected(sim, 7)

    # The market comes down to the buy limit: the matcher fills it with nobody connected.
    move(sim, AAPL, round(buy_low - 0.01, 2), buy_low, buy_low, ask_size=100)
    poll(lambda: row_of(sim, perms[0])["status"], lambda s: s == "Filled", what="the fill")
    sim.control.post("/orders/fill", permId=perms[1], quantity=1)
    sim.control.post("/orders/cancel", permId=perms[2])

    back = connect(sim, 7)
    try:
        back.reqOpenOrders()
        back.rec.wait_for("openOrderEnd")
        (opened,) = back.rec.of("openOrder")
        (status,) = back.rec.of("orderStatus")
        assert (opened[0], opened[2].permId) == (oid + 1, perms[1])
        assert (status[1], float(status[2]), float(status[3])) == ("Submitted", 1, 2)

        back.reqCompletedOrders(False)
        back.rec.wait_for("completedOrdersEnd")
        done = {a[1].permId: a for a in back.rec.of("completedOrder")}
        assert set(done) == {perms[0], perms[2]}
        assert done[perms[0]][2].status == "Filled"
        assert float(done[perms[0]][1].filledQuantity) == 5
        assert done[perms[2]][2].status == "Cancelled"

        everything = _executions(back, 1, ExecutionFilter())
        assert sorted((e.orderId, e.side, float(e.shares)) for e in everything) == \
            [(oid, "BOT", 5), (oid + 1, "SLD", 1)]
        assert all(e.clientId == 7 and e.acctNumber == ACCOUNT for e in everything)
        reports = back.rec.wait_for(COMMISSION_CB, count=2)
        assert {r[0].execId for r in reports} == {e.execId for e in everything}

        by_field: list[tuple[dict[str, Any], list[int]]] = [
            ({"clientId": 7}, [oid, oid + 1]), ({"clientId": 8}, []),
            ({"acctCode": ACCOUNT}, [oid, oid + 1]), ({"acctCode": "U999"}, []),
            ({"symbol": "IBM"}, [oid + 1]), ({"secType": "STK"}, [oid, oid + 1]),
            ({"side": "BUY"}, [oid]), ({"side": "SELL"}, [oid + 1]),
            ({"time": _utc(min(exec_time(e) for e in everything) - 60)}, [oid, oid + 1]),
            ({"time": _utc(max(exec_time(e) for e in everything) + 60)}, []),
        ]
        for req_id, (fields, expected) in enumerate(by_field, start=10):
            flt = ExecutionFilter()
            for name, value in fields.items():
                setattr(flt, name, value)
            got = sorted(e.orderId for e in _executions(back, req_id, flt))
            assert got == expected, fields
    finally:
        back.stop()


def exec_time(execution: Any) -> float:
    """An execution's time as epoch seconds ("yyyymmdd hh:mm:ss[ zone]", Eastern by default)."""
    from zoneinfo import ZoneInfo

    parts = execution.time.split()
    zone = ZoneInfo(parts[2]) if len(parts) > 2 else ZoneInfo("US/Eastern")
    stamp = dt.datetime.strptime(f"{parts[0]} {parts[1]}", "%Y%m%d %H:%M:%S")
    return stamp.replace(tzinfo=zone).timestamp()


def test_partially_filled_order_cancelled_reports_what_filled(
        sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    ib.placeOrder(oid, stock("IBM"), make_order("SELL", 9, "LMT", lmt=99999.0))
    perm = perm_of(ib, oid)
    sim.control.post("/orders/fill", permId=perm, quantity=2)
    ib.rec.wait_for("orderStatus", lambda a: a[0] == oid and float(a[2]) == 2)
    sim.control.post("/orders/cancel", permId=perm)
    cancelled = status_of(ib, oid, "Cancelled")
    assert (float(cancelled[2]), float(cancelled[3])) == (2, 7)
    ib.reqCompletedOrders(True)
    ib.rec.wait_for("completedOrdersEnd")
    (_, order, state), = ib.rec.of("completedOrder")
    assert (state.status, float(order.filledQuantity)) == ("Cancelled", 2)


def test_a_reconnected_client_hears_its_resting_orders_fill(sim: SimulatorThread) -> None:
    first = connect(sim, 0)
    oid = next_id(first)
    first.placeOrder(oid, stock("MSFT"), make_order("BUY", 4, "LMT", lmt=1.0))
    perm = perm_of(first, oid)
    first.stop()
    wait_disconnected(sim, 0)
    back = connect(sim, 0)
    try:
        back.reqAllOpenOrders()
        back.rec.wait_for("openOrderEnd")
        assert [(a[0], a[2].permId) for a in back.rec.of("openOrder")] == [(oid, perm)]
        sim.control.post("/orders/fill", permId=perm, quantity=4, price=1.0)
        filled = status_of(back, oid, "Filled")  # orders belong to the clientId, not the link
        assert (filled[5], float(filled[2])) == (perm, 4)
        (_, _, execution), = back.rec.wait_for("execDetails")
        assert (execution.permId, execution.price) == (perm, 1.0)
    finally:
        back.stop()
