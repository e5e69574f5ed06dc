"""Bad requests do not take the simulator down, nor the client's link: seen through IB's client.

TWS answers a placeOrder it cannot read or will not take with an error for that order id and
keeps the connection; so must the simulator. Beyond orders, any request whose handler fails is
answered with error 322 for its request id, counted in ``/state``, and the session reads on.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibrecorder import IBClient, Recorder
from orderkit import (
    IBAPI_10,
    MAX_CLIENT_VERSION,
    cancel,
    make_order,
    next_id,
    order_rows,
    status_of,
    stock,
    sync,
)
from wirecapture import WireCapture

from twsbus.sim.guard import request_id
from twsbus.sim.wire import Fields
from twsbus.testing import SimulatorThread


def text_wire_only(ib: IBClient, switch: int) -> None:
    """Unreadable field values exist only on the text wire: from ``switch`` IB's client encodes
    the request as protobuf and refuses such values itself."""
    if ib.serverVersion() >= switch:
        pytest.skip(f"the request is protobuf from version {switch}")


def errors_for(ib: IBClient, order_id: int) -> tuple[int, str]:
    (_, code, message), = ib.rec.wait_for("error", lambda a: a[0] == order_id)
    return code, message


def test_unreadable_price_is_error_320_and_the_link_stays_up(
        sim: SimulatorThread, ib: IBClient) -> None:
    text_wire_only(ib, 203)
    oid = next_id(ib)
    ib.placeOrder(oid, stock(), make_order("BUY", 10, "LMT", lmt="abc"))
    code, message = errors_for(ib, oid)
    assert code == 320 and message.startswith("Error reading request")
    assert '"abc"' in message
    sync(ib)  # the session still answers
    assert ib.isConnected()
    ib.placeOrder(oid + 1, stock(), make_order("BUY", 1, "MKT"))
    status_of(ib, oid + 1, "Filled")
    assert [r["orderId"] for r in order_rows(sim)] == [oid + 1]
    refused = sim.control.call("GET", "/orders")["refused"]
    assert [(r["orderId"], r["code"]) for r in refused] == [(oid, 320)]
    assert sim.control.state()["connections"] == 1  # never dropped and reconnected


@pytest.mark.skipif(not IBAPI_10, reason="ibapi 9.81 sends int(totalQuantity) and refuses text")
def test_unreadable_or_empty_quantity_is_refused_not_filled(
        sim: SimulatorThread, ib: IBClient) -> None:
    text_wire_only(ib, 203)
    oid = next_id(ib)
    ib.placeOrder(oid, stock(), make_order("BUY", "x", "MKT"))
    ib.placeOrder(oid + 1, stock(), make_order("BUY", "", "MKT"))
    assert errors_for(ib, oid)[0] == 320
    assert errors_for(ib, oid + 1) == (434, "The order size cannot be zero.")
    sync(ib)
    assert order_rows(sim) == [] and not ib.rec.of("orderStatus")


def test_orders_tws_refuses_get_its_error_and_never_fill(
        sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    unset = Order()  # no quantity: 10.x sends UNSET_DECIMAL (2**127-1), 9.81 sends 0
    unset.action, unset.orderType = "BUY", "MKT"
    unset.eTradeOnly = unset.firmQuoteOnly = False
    ib.placeOrder(oid, stock(), unset)
    ib.placeOrder(oid + 1, stock(), make_order("SELL", -5, "MKT"))
    ib.placeOrder(oid + 2, stock(), make_order("", 5, "MKT"))
    ib.placeOrder(oid + 3, stock(), make_order("HOLD", 5, "MKT"))
    ib.placeOrder(oid + 4, stock(), make_order("BUY", 5, "NOT A TYPE"))
    assert errors_for(ib, oid) == (434, "The order size cannot be zero.")
    code, message = errors_for(ib, oid + 1)
    assert code == 201 and message.startswith("Order rejected - reason:")
    for bad in (oid + 2, oid + 3):
        code, message = errors_for(ib, bad)
        assert code == 321 and message.startswith("Error validating request")
    assert errors_for(ib, oid + 4)[0] == 387
    sync(ib)
    assert order_rows(sim) == [] and not ib.rec.of("orderStatus")
    assert not ib.rec.of("execDetails")
    assert sim.control.state()["orders"]["rejected"] == 5


def test_a_failing_handler_answers_322_for_its_request_and_the_session_carries_on(
        sim: SimulatorThread, ib: IBClient) -> None:
    text_wire_only(ib, 205)
    bad = Contract()
    bad.conId = "abc"  # type: ignore[assignment]  # ibapi writes whatever it is given
    bad.symbol, bad.secType = "AAPL", "STK"
    ib.reqContractDetails(41, bad)
    (_, code, message), = ib.rec.wait_for("error", lambda a: a[0] == 41)
    assert code == 322 and "REQ_CONTRACT_DATA" in message
    assert sim.control.state()["handler_errors"] == 1
    good = Contract()
    good.conId = 265598
    ib.reqContractDetails(42, good)
    ib.rec.wait_for("contractDetailsEnd", lambda a: a[0] == 42)
    assert sim.control.state()["connections"] == 1


# ---- where each request carries its id: the guard's table against ibapi's encoders --------

SENTINEL = 777_777


def _argument(name: str, annotation: Any) -> Any:
    lowered = name.lower()
    if lowered in ("reqid", "tickerid", "orderid", "requestid"):
        return SENTINEL
    if lowered == "contract":
        return stock()
    if lowered == "order":
        return make_order("BUY", 1, "MKT")
    if lowered in ("execfilter", "filter"):
        return ExecutionFilter()
    if lowered.endswith("options"):
        return []
    if annotation in (bool, "bool"):
        return False
    if annotation in (int, "int", "TickerId", "OrderId", float, "float"):
        return 1
    return ""


def _encoded(v: int, method: Any) -> list[str] | None:
    """The fields ibapi's EClient writes for ``method`` at server version v, or None."""
    client = EClient(Recorder())
    client.conn = WireCapture()
    client.connState = EClient.CONNECTED
    client.serverVersion_ = v
    params = list(inspect.signature(method).parameters.items())[1:]
    try:
        method(client, *(_argument(n, p.annotation) for n, p in params))
    except Exception:
        return None
    if not client.conn.sent:
        return None
    return client.conn.sent[0][4:].decode().split("\0")[:-1]


@pytest.mark.parametrize("v", sorted({157, MAX_CLIENT_VERSION}))
def test_guard_finds_the_request_id_where_ibapi_writes_it(v: int) -> None:
    checked = 0
    for name, method in inspect.getmembers(EClient, inspect.isfunction):
        if not name.startswith(("req", "cancel", "calculate", "place", "exercise")) \
                or name in ("reqIds",):
            continue
        fields = _encoded(v, method)
        if not fields or not fields[0].isdigit():
            continue
        expected = SENTINEL if str(SENTINEL) in fields else -1
        assert request_id(int(fields[0]), v, Fields(fields, 1)) == expected, name
        checked += 1
    assert checked >= 40


@pytest.mark.parametrize("v", sorted({157, MAX_CLIENT_VERSION}))
def test_guard_reads_the_order_id_of_a_cancel(v: int) -> None:
    client = EClient(Recorder())
    client.conn = WireCapture()
    client.connState = EClient.CONNECTED
    client.serverVersion_ = v
    cancel(client, 4321)  # type: ignore[arg-type]
    fields = client.conn.sent[0][4:].decode().split("\0")[:-1]
    assert request_id(int(fields[0]), v, Fields(fields, 1)) == 4321

