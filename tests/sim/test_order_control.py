"""What happens to orders in TWS itself, seen through IB's real client: cancels and rejections
from TWS's side, orders entered by hand and their binding to clientId 0, TWS's order id rules
(103 / 104 / 105), a gateway that rolls nextValidId back, and the order history and counters
the control endpoint keeps.
"""

from __future__ import annotations

from typing import Any

import pytest
from ibrecorder import IBClient
from orderkit import (
    AAPL,
    IBM,
    MSFT,
    cancel,
    connect,
    make_order,
    next_id,
    order_rows,
    perm_of,
    quote,
    row_of,
    status_of,
    stock,
    sync,
    wait_disconnected,
)

from twsbus.testing import SimulatorThread


def resting(ib: IBClient, order_id: int, symbol: str = "MSFT", qty: int = 3) -> int:
    """Place a buy far below the market; returns its permId once it is working."""
    ib.placeOrder(order_id, stock(symbol), make_order("BUY", qty, "LMT", lmt=1.0))
    status_of(ib, order_id, "Submitted")
    return perm_of(ib, order_id)


def manual(sim: SimulatorThread, **order: Any) -> dict[str, Any]:
    body = {"contract": {"conId": AAPL}, "action": "BUY", "totalQuantity": 10,
            "orderType": "LMT", "lmtPrice": 1.0, **order}
    return dict(sim.control.post("/orders/manual", **body))


def error_of(ib: IBClient, order_id: int, code: int) -> str:
    return str(ib.rec.wait_for("error", lambda a: a[0] == order_id and a[1] == code)[0][2])


# ---- cancelled and rejected in TWS ---------------------------------------------------------


def test_cancel_in_tws_by_perm_id_or_by_order_id(sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    first, second = resting(ib, oid), resting(ib, oid + 1)
    row = sim.control.post("/orders/cancel", permId=first)
    assert (row["status"], row["remaining"]) == ("Cancelled", 3)
    cancelled = status_of(ib, oid, "Cancelled")
    assert (float(cancelled[2]), float(cancelled[3])) == (0, 3)
    assert error_of(ib, oid, 202).startswith("Order Canceled - reason:")
    sim.control.post("/orders/cancel", orderId=oid + 1, clientId=0)
    status_of(ib, oid + 1, "Cancelled")
    assert row_of(sim, second)["status"] == "Cancelled"
    with pytest.raises(RuntimeError, match="Cancelled"):
        sim.control.post("/orders/cancel", permId=first)
    with pytest.raises(RuntimeError, match="no order"):
        sim.control.post("/orders/cancel", orderId=999, clientId=0)
    assert sim.control.state()["orders"]["cancelled"] == 2


def test_reject_in_tws_is_error_201_then_cancelled(sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    perm = resting(ib, oid)
    sim.control.post("/orders/reject", permId=perm, reason="Insufficient margin")
    assert error_of(ib, oid, 201) == "Order rejected - reason:Insufficient margin"
    status_of(ib, oid, "Cancelled")
    ib.reqCompletedOrders(False)
    ib.rec.wait_for("completedOrdersEnd")
    (_, order, state), = ib.rec.of("completedOrder")
    assert (order.permId, state.status) == (perm, "Cancelled")
    assert state.completedStatus == "Rejected - Insufficient margin"
    assert sim.control.state()["orders"]["rejected"] == 1
    cancel(ib, oid)  # too late: the order is done
    assert error_of(ib, oid, 10148)


# ---- orders entered by hand in TWS ---------------------------------------------------------


def test_manual_order_has_order_id_0_until_client_0_binds_it(
        sim: SimulatorThread, ib: IBClient) -> None:
    placed = manual(sim, orderRef="by hand")
    assert placed["orderId"] == 0
    other = connect(sim, 3)
    try:
        other.reqAllOpenOrders()  # shows it, does not bind it
        other.rec.wait_for("openOrderEnd")
        (order_id, contract, order, state), = other.rec.of("openOrder")
        assert (order_id, order.clientId, order.permId) == (0, 0, placed["permId"])
        assert (contract.conId, order.orderRef, state.status) == (AAPL, "by hand", "Submitted")
    finally:
        other.stop()
    sync(ib)
    assert not ib.rec.of("openOrder")  # client 0 is not bound: it hears nothing yet

    ib.reqOpenOrders()  # from clientId 0 this binds the open manual orders
    ib.rec.wait_for("openOrderEnd")
    (bound, _, order, _), = ib.rec.of("openOrder")
    assert bound < 0 and order.permId == placed["permId"]
    assert row_of(sim, placed["permId"])["orderId"] == bound
    cancel(ib, bound)  # a bound order is client 0's to manage
    status_of(ib, bound, "Cancelled")


def test_auto_open_orders_binds_manual_orders_as_they_are_placed(
        sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqAutoOpenOrders(True)
    sync(ib)
    _, ask, _ = quote(sim, AAPL)
    placed = manual(sim, orderType="MKT", lmtPrice=None, totalQuantity=5)
    bound = placed["orderId"]
    assert bound < 0
    filled = status_of(ib, bound, "Filled")
    assert (filled[4], filled[5], filled[8]) == (ask, placed["permId"], 0)
    (_, _, execution), = ib.rec.wait_for("execDetails")
    assert (execution.orderId, execution.clientId, float(execution.shares)) == (bound, 0, 5)
    second = manual(sim)
    assert second["orderId"] == bound - 1

    ib.reqCompletedOrders(True)  # apiOnly leaves out orders entered by hand
    ib.rec.wait_for("completedOrdersEnd")
    assert not ib.rec.of("completedOrder")
    ib.reqCompletedOrders(False)
    ib.rec.wait_for("completedOrdersEnd", count=2)
    assert [a[1].permId for a in ib.rec.of("completedOrder")] == [placed["permId"]]

    other = connect(sim, 5)
    try:
        other.reqAutoOpenOrders(True)
        (_, code, _), = other.rec.wait_for("error", lambda a: a[1] == 327)
        assert code == 327
    finally:
        other.stop()


def test_a_manual_order_tws_would_refuse_is_a_400(sim: SimulatorThread) -> None:
    with pytest.raises(RuntimeError, match="order size cannot be zero"):
        manual(sim, totalQuantity=0)
    with pytest.raises(RuntimeError, match="names 0 instruments"):
        manual(sim, contract={"symbol": "NOPE", "secType": "STK"})
    assert order_rows(sim) == []


# ---- order ids -----------------------------------------------------------------------------


def test_a_new_order_needs_an_id_above_every_id_its_client_used(
        sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    resting(ib, oid + 5)
    ib.placeOrder(oid + 2, stock("IBM"), make_order("BUY", 1, "LMT", lmt=1.0))  # lower: new
    assert error_of(ib, oid + 2, 103) == "Duplicate order id"
    ib.placeOrder(oid + 5, stock("MSFT"), make_order("BUY", 4, "LMT", lmt=2.0))  # same: modify
    modified = ib.rec.wait_for("openOrder", lambda a: a[0] == oid + 5 and a[2].lmtPrice == 2.0)
    assert float(modified[0][2].totalQuantity) == 4
    ib.placeOrder(oid + 5, stock("MSFT"), make_order("SELL", 4, "LMT", lmt=2.0))
    assert error_of(ib, oid + 5, 105)  # the side of a live order cannot change
    cancel(ib, oid + 5)
    status_of(ib, oid + 5, "Cancelled")
    ib.placeOrder(oid + 5, stock("MSFT"), make_order("BUY", 4, "LMT", lmt=2.0))
    assert len(ib.rec.wait_for("error", lambda a: a[:2] == (oid + 5, 103))) == 1
    ib.placeOrder(oid + 6, stock("IBM"), make_order("BUY", 1, "MKT"))
    status_of(ib, oid + 6, "Filled")
    ib.placeOrder(oid + 6, stock("IBM"), make_order("BUY", 1, "MKT"))
    assert error_of(ib, oid + 6, 104) == "Can't modify a filled order"

    other = connect(sim, 4)  # ids belong to their client: 4 may use a lower one
    try:
        other.placeOrder(oid + 1, stock("IBM"), make_order("BUY", 1, "LMT", lmt=1.0))
        status_of(other, oid + 1, "Submitted")
        other.stop()
        wait_disconnected(sim, 4)
        again = connect(sim, 4)  # ...and TWS remembers them across sessions
        try:
            again.placeOrder(oid + 1, stock("AAPL"), make_order("BUY", 1, "LMT", lmt=1.0))
            assert error_of(again, oid + 1, 105)  # still live: an attempt to modify it
            again.placeOrder(oid, stock("AAPL"), make_order("BUY", 1, "LMT", lmt=1.0))
            assert error_of(again, oid, 103)
        finally:
            again.stop()
    finally:
        other.stop()
    assert sim.control.state()["orders"]["duplicate_id_errors"] == 3
    refused = sim.control.call("GET", "/orders")["refused"]
    assert [(r["clientId"], r["code"]) for r in refused if r["code"] == 103] == \
        [(0, 103), (0, 103), (4, 103)]


def test_rolled_back_next_valid_id_leads_to_duplicate_ids(sim: SimulatorThread) -> None:
    first = connect(sim, 0)
    oid = next_id(first)
    first.placeOrder(oid + 10, stock("IBM"), make_order("BUY", 1, "MKT"))
    status_of(first, oid + 10, "Filled")
    first.stop()
    wait_disconnected(sim, 0)
    sim.control.post("/config", rollback_next_valid_id=True)
    back = connect(sim, 0)
    try:
        assert next_id(back) == 1  # the gateway forgot; IB did not
        back.placeOrder(1, stock("IBM"), make_order("BUY", 1, "MKT"))
        assert error_of(back, 1, 103) == "Duplicate order id"
        back.reqIds(-1)
        back.rec.wait_for("nextValidId", count=2)
        assert next_id(back) == 2  # counting on from the id just spent
    finally:
        back.stop()


# ---- the order history ---------------------------------------------------------------------


def test_order_history_counts_places_modifies_and_executions(
        sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    perm = resting(ib, oid, "IBM", qty=6)
    for price in (1.5, 2.0):
        ib.placeOrder(oid, stock("IBM"), make_order("BUY", 6, "LMT", lmt=price))
        ib.rec.wait_for("openOrder", lambda a, p=price: a[0] == oid and a[2].lmtPrice == p)
    ib.placeOrder(oid, stock("MSFT"), make_order("BUY", 6, "LMT", lmt=2.0))
    error_of(ib, oid, 105)
    sim.control.post("/orders/fill", permId=perm, quantity=6, price=2.0)
    status_of(ib, oid, "Filled")
    row = row_of(sim, perm)
    assert row["places"] == 4  # the place, two modifies and the refused one
    assert {k: row[k] for k in ("clientId", "orderId", "conId", "symbol", "action",
                                "totalQuantity", "orderType", "lmtPrice", "status",
                                "filled", "remaining", "avgFillPrice", "manual")} == {
        "clientId": 0, "orderId": oid, "conId": IBM, "symbol": "IBM", "action": "BUY",
        "totalQuantity": 6, "orderType": "LMT", "lmtPrice": 2.0, "status": "Filled",
        "filled": 6, "remaining": 0, "avgFillPrice": 2.0, "manual": False}
    (execution,) = row["executions"]
    ex = ib.rec.wait_for("execDetails")[0][2]
    assert (execution["execId"], execution["shares"], execution["price"]) == \
        (ex.execId, 6, 2.0)
    counts = sim.control.state()["orders"]
    assert {k: counts[k] for k in ("placed", "modified", "rejected", "executions")} == \
        {"placed": 1, "modified": 2, "rejected": 1, "executions": 1}
    assert MSFT not in [r["conId"] for r in order_rows(sim)]
