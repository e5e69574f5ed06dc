"""Orders in the simulator, seen through IB's real client: placing, matching, modifying,
cancelling, executions, commission reports, open/completed order queries.

Two kinds of test. Wire round trips run offline, for every server version the simulator can
negotiate: ibapi's own EClient encodes a placeOrder, the simulator's parser must consume it
exactly, and the simulator's openOrder / completedOrder / orderStatus / execDetails /
commissionReport encoders must be consumed exactly (no field left over) by ibapi's own decoder,
with the values coming back. Session tests drive a connected ibapi client against a running
simulator and check the decoded ``Order`` / ``Contract`` / ``OrderState`` / ``Execution`` objects.
Both run under nautilus-ibapi 10.x (server version up to 200) and ibapi 9.81 (157).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from ibapi import order_condition
from ibapi.client import EClient
from ibapi.contract import ComboLeg, Contract, DeltaNeutralContract
from ibapi.decoder import Decoder
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.tag_value import TagValue
from ibrecorder import IBClient, Recorder
from orderkit import (
    AAPL,
    ACCOUNT,
    COMMISSION_CB,
    IBAPI_10,
    IBM,
    MAX_CLIENT_VERSION,
    MSFT,
    NVDA,
    TSLA,
    cancel,
    commission_of,
    connect,
    global_cancel,
    ib_async_wait,
    make_order,
    move,
    next_id,
    quote,
    status_of,
    stock,
)
from wirecapture import WireCapture

from twsbus.sim import order_encoding as enc
from twsbus.sim.orders import Fill, SimOrder
from twsbus.sim.requests.order_text import parse_place_order
from twsbus.sim.universe import Universe
from twsbus.sim.wire import UNSET_DOUBLE, Fields, encode
from twsbus.testing import SimulatorThread

VERSIONS = [v for v in (157, 158, 160, 162, 163, 166, 169, 170, 177, 178, 183, 184, 185, 187,
                        189, 190, 192, 193, 195, 198, 199, 200) if v <= MAX_CLIENT_VERSION]
EXEC_ID = re.compile(r"^[0-9a-f]{8}\.[0-9a-f]{8}\.01\.01$")


# ---- wire round trips, every version -------------------------------------------------------


def client_fields(v: int, order_id: int, contract: Contract, order: Order) -> list[str] | None:
    """What ibapi's EClient writes for placeOrder at server version v (None if it refuses)."""
    client = EClient(Recorder())
    client.conn = WireCapture()
    client.connState = EClient.CONNECTED
    client.serverVersion_ = v
    client.placeOrder(order_id, contract, order)
    if not client.conn.sent:
        return None
    return client.conn.sent[0][4:].decode().split("\0")[:-1]


def ibapi_decode(v: int, row: list[object]) -> tuple[str, tuple[Any, ...]]:
    """Decode one simulator message with ibapi's decoder; every field must be consumed."""
    fields = encode(row)[4:].split(b"\0")[:-1]
    rec = Recorder()
    decoder = Decoder(rec, v)
    proc = {
        5: decoder.processOpenOrder, 101: decoder.processCompletedOrderMsg,
        3: decoder.processOrderStatusMsg, 11: decoder.processExecutionDataMsg,
        59: getattr(decoder, "processCommissionAndFeesReportMsg", None)
        or decoder.processCommissionReportMsg,
    }[int(fields[0])]
    it = iter(fields if not IBAPI_10 else fields[1:])  # 9.81's procs skip the id themselves
    proc(it)
    left = list(it)
    assert left == [], f"{len(left)} fields left over at v{v}: {left}"
    return rec.calls[-1]


def sim_order(v: int, contract: Contract, order: Order, order_id: int = 7) -> SimOrder:
    sent = client_fields(v, order_id, contract, order)
    assert sent is not None
    f = Fields(sent, 1)
    oid, contract, p = parse_place_order(f, v)
    assert f.remaining == 0, f"parser left {f.remaining} fields at v{v}"
    assert oid == order_id
    inst = Universe().find(contract.spec())[0]
    return SimOrder(oid, 3, 1_000_000_042, inst, p, p["account"] or ACCOUNT, status="Submitted")


def rich_order(v: int) -> Order:
    o = make_order("BUY", 150, "LMT", lmt=101.5, tif="GTC", account=ACCOUNT, orderRef="ref-1",
                   outsideRth=True, goodTillDate="20261231 23:59:59", ocaGroup="g1",
                   algoStrategy="Adaptive", algoParams=[TagValue("adaptivePriority", "Normal")])
    cond = order_condition.Create(order_condition.OrderCondition.Price)
    cond.conId, cond.exchange, cond.isMore, cond.price, cond.triggerMethod = AAPL, "SMART", True, \
        150.0, 0
    o.conditions = [cond]
    if v >= 183:
        o.customerAccount = "cust-9"
    if v >= 184:
        o.professionalCustomer = True
    if v >= 189:
        o.includeOvernight = True
    if v >= 192:
        o.manualOrderIndicator = 1
    if v >= 199:
        o.imbalanceOnly = True
    return o


@pytest.mark.parametrize("v", VERSIONS)
def test_open_order_round_trips_through_ibapi(v: int) -> None:
    o = sim_order(v, stock(), rich_order(v))
    _, (order_id, contract, order, state) = ibapi_decode(v, enc.open_order(v, o))
    assert order_id == 7 and order.orderId == 7
    assert (contract.conId, contract.symbol, contract.secType, contract.exchange,
            contract.currency, contract.localSymbol, contract.tradingClass) == \
        (AAPL, "AAPL", "STK", "SMART", "USD", "AAPL", "NMS")
    assert (order.action, float(order.totalQuantity), order.orderType, order.lmtPrice) == \
        ("BUY", 150.0, "LMT", 101.5)
    assert order.auxPrice == UNSET_DOUBLE
    assert (order.tif, order.account, order.orderRef, order.ocaGroup) == \
        ("GTC", ACCOUNT, "ref-1", "g1")
    assert order.outsideRth is True and order.goodTillDate == "20261231 23:59:59"
    assert (order.clientId, order.permId, order.parentId) == (3, 1_000_000_042, 0)
    assert order.algoStrategy == "Adaptive"
    assert [(t.tag, t.value) for t in order.algoParams] == [("adaptivePriority", "Normal")]
    assert len(order.conditions) == 1 and order.conditions[0].price == 150.0
    assert order.conditions[0].conId == AAPL
    assert state.status == "Submitted"
    if v >= 183:
        assert order.customerAccount == "cust-9"
    if v >= 184:
        assert order.professionalCustomer is True
    if v >= 189:
        assert order.includeOvernight is True
    if v >= 193:
        assert order.manualOrderIndicator == 1
    if v >= 199:
        assert order.imbalanceOnly is True


@pytest.mark.parametrize("v", VERSIONS)
def test_completed_order_status_and_execution_round_trip(v: int) -> None:
    o = sim_order(v, stock(), rich_order(v))
    o.status, o.filled, o.avg_price, o.last_price = "Filled", Decimal(150), 101.25, 101.25
    o.completed_at, o.completed_status, o.commission = 1_790_000_000.0, "Filled", 1.0
    _, (contract, order, state) = ibapi_decode(v, enc.completed_order(v, o))
    assert (contract.conId, order.action, order.orderType, order.lmtPrice) == \
        (AAPL, "BUY", "LMT", 101.5)
    assert (order.permId, order.orderRef, order.account) == (1_000_000_042, "ref-1", ACCOUNT)
    assert float(order.filledQuantity) == 150
    assert (state.status, state.completedStatus) == ("Filled", "Filled")
    assert state.completedTime.startswith("2026")
    if v >= 198:
        assert order.submitter == ""

    name, args = ibapi_decode(v, enc.order_status(v, o))
    assert name == "orderStatus"
    assert args[:9] == (7, "Filled", args[2], args[3], 101.25, 1_000_000_042, 0, 101.25, 3)
    assert float(args[2]) == 150 and float(args[3]) == 0

    fill = Fill("0000abcd.6553e9c1.01.01", o, 1_790_000_000.0, "BOT", Decimal(150), 101.25,
                Decimal(150), 101.25, 1.0)
    _, (req_id, contract, ex) = ibapi_decode(v, enc.exec_details(v, 9, fill))
    assert (req_id, ex.orderId, ex.execId, ex.side, float(ex.shares), ex.price) == \
        (9, 7, "0000abcd.6553e9c1.01.01", "BOT", 150.0, 101.25)
    assert (ex.permId, ex.clientId, ex.acctNumber, float(ex.cumQty), ex.avgPrice) == \
        (1_000_000_042, 3, ACCOUNT, 150.0, 101.25)
    assert (contract.conId, contract.exchange, ex.exchange) == (AAPL, "ISLAND", "ISLAND")
    assert ex.time.startswith("2026")

    name, (report,) = ibapi_decode(v, enc.commission_report(fill))
    assert report.execId == fill.exec_id and commission_of(report) == 1.0
    assert report.currency == "USD" and report.realizedPNL == UNSET_DOUBLE


def _odd_orders(v: int) -> list[tuple[Contract, Order]]:
    """Orders whose placeOrder layout branches: combos, delta neutral, scale, hedge, pegs,
    every condition type, what-if, IBKRATS."""
    bag = Contract()
    bag.symbol, bag.secType, bag.exchange, bag.currency = "SPY", "BAG", "SMART", "USD"
    leg1, leg2 = ComboLeg(), ComboLeg()
    leg1.conId, leg1.ratio, leg1.action, leg1.exchange = 710_000_001, 1, "BUY", "SMART"
    leg2.conId, leg2.ratio, leg2.action, leg2.exchange = 710_000_002, 1, "SELL", "SMART"
    bag.comboLegs = [leg1, leg2]
    combo = make_order("BUY", 1, "LMT", lmt=1.0,
                       smartComboRoutingParams=[TagValue("NonGuaranteed", "1")])
    from ibapi.order import OrderComboLeg

    combo.orderComboLegs = [OrderComboLeg(), OrderComboLeg()]

    dn_contract = stock()
    dn_contract.deltaNeutralContract = DeltaNeutralContract()
    dn = make_order("BUY", 1, "VOL", volatility=0.3, volatilityType=2,
                    deltaNeutralOrderType="MKT", deltaNeutralConId=AAPL)
    scale = make_order("BUY", 100, "LMT", lmt=10.0, scaleInitLevelSize=10,
                       scaleSubsLevelSize=5, scalePriceIncrement=0.1, scaleAutoReset=True)
    hedge = make_order("BUY", 10, "LMT", lmt=10.0, hedgeType="D", hedgeParam="0.5")
    conds = make_order("SELL", 10, "MKT", conditionsIgnoreRth=True)
    conds.conditions = []
    for kind in (1, 3, 4, 5, 6, 7):
        c = order_condition.Create(kind)
        if hasattr(c, "conId"):
            c.conId, c.exchange = AAPL, "SMART"
        if hasattr(c, "isMore"):
            c.isMore = True
        if kind == 1:
            c.price, c.triggerMethod = 100.0, 0
        if kind == 3:
            c.time = "20261120 10:00:00"
        if kind == 4:
            c.percent = 30
        if kind == 5:
            c.secType, c.exchange, c.symbol = "STK", "SMART", "AAPL"
        if kind == 6:
            c.volume = 1000
        if kind == 7:
            c.changePercent = 5.0
        conds.conditions.append(c)
    bench = make_order("BUY", 10, "PEG BENCH", referenceContractId=AAPL,
                       peggedChangeAmount=0.1, referenceChangeAmount=0.2,
                       referenceExchangeId="NASDAQ")
    what_if = make_order("BUY", 10, "MKT", whatIf=True, orderMiscOptions=[TagValue("a", "b")])
    out = [(bag, combo), (dn_contract, dn), (stock(), scale), (stock(), hedge),
           (stock(), conds), (stock(), bench), (stock(), what_if)]
    if v >= 170:
        from ibapi.order import COMPETE_AGAINST_BEST_OFFSET_UP_TO_MID

        ats = stock()
        ats.exchange = "IBKRATS"
        out.append((ats, make_order("BUY", 100, "PEG BEST", minTradeQty=10, minCompeteSize=5,
                                    competeAgainstBestOffset=COMPETE_AGAINST_BEST_OFFSET_UP_TO_MID,
                                    midOffsetAtWhole=0.01, midOffsetAtHalf=0.005)))
        out.append((ats, make_order("SELL", 100, "PEG MID", midOffsetAtWhole=0.01,
                                    midOffsetAtHalf=0.005)))
    return out


@pytest.mark.parametrize("v", VERSIONS)
def test_parser_consumes_every_kind_of_place_order_exactly(v: int) -> None:
    parsed = 0
    for contract, order in _odd_orders(v):
        sent = client_fields(v, 11, contract, order)
        if sent is None:
            continue  # the client itself refuses this order at this version
        f = Fields(sent, 1)
        order_id, read, p = parse_place_order(f, v)
        assert f.remaining == 0, f"{order.orderType} {contract.secType}: {f.remaining} at v{v}"
        assert (order_id, p["orderType"], read.secType) == \
            (11, order.orderType, contract.secType)
        parsed += 1
    assert parsed >= 7


# ---- sessions ------------------------------------------------------------------------------


def test_market_order_fills_at_the_ask(sim: SimulatorThread, ib: IBClient) -> None:
    bid, ask, last = quote(sim, AAPL)
    oid = next_id(ib)
    ib.placeOrder(oid, stock(), make_order("BUY", 100, "MKT"))
    filled = status_of(ib, oid, "Filled")
    assert (float(filled[2]), float(filled[3]), filled[4], filled[7]) == (100, 0, ask, ask)
    assert filled[8] == 0  # clientId
    assert quote(sim, AAPL) == (bid, ask, last)  # nothing else moved the quote

    opened = ib.rec.wait_for("openOrder", lambda a: a[0] == oid, count=2)
    _, contract, order, state = opened[-1]
    assert (contract.conId, contract.symbol, contract.secType, contract.currency) == \
        (AAPL, "AAPL", "STK", "USD")
    assert (order.action, float(order.totalQuantity), order.orderType, order.account) == \
        ("BUY", 100, "MKT", ACCOUNT)
    assert order.permId == filled[5] and order.clientId == 0
    assert [a[3].status for a in opened] == ["Submitted", "Filled"]
    assert state.status == "Filled"

    (req_id, ex_contract, ex), = ib.rec.wait_for("execDetails")
    assert req_id == -1 and ex_contract.conId == AAPL
    assert (ex.orderId, ex.side, float(ex.shares), ex.price, ex.permId) == \
        (oid, "BOT", 100, ask, filled[5])
    assert (ex.acctNumber, float(ex.cumQty), ex.avgPrice) == (ACCOUNT, 100, ask)
    assert EXEC_ID.match(ex.execId)
    (report,), = ib.rec.wait_for(COMMISSION_CB)
    assert report.execId == ex.execId and commission_of(report) == 1.0
    assert report.currency == "USD" and report.realizedPNL == UNSET_DOUBLE


def test_marketable_limit_sell_fills_at_the_bid_and_realizes_pnl(
        sim: SimulatorThread, ib: IBClient) -> None:
    bid, ask, _ = quote(sim, IBM)
    oid = next_id(ib)
    ib.placeOrder(oid, stock("IBM"), make_order("BUY", 10, "LMT", lmt=ask + 1))
    assert status_of(ib, oid, "Filled")[4] == ask  # price improvement: the ask, not the limit
    ib.placeOrder(oid + 1, stock("IBM"), make_order("SELL", 10, "LMT", lmt=bid - 1))
    assert status_of(ib, oid + 1, "Filled")[4] == bid
    sells = ib.rec.wait_for("execDetails", lambda a: a[2].side == "SLD")
    assert sells[0][2].price == bid
    reports = ib.rec.wait_for(COMMISSION_CB, count=2)
    closing = next(r[0] for r in reports if r[0].execId == sells[0][2].execId)
    assert closing.realizedPNL == pytest.approx((bid - ask) * 10 - 2.0)  # both commissions


def test_resting_limit_is_modified_then_fills(sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    _, ask, _ = quote(sim, MSFT)
    low = round(ask * 0.5, 2)
    ib.placeOrder(oid, stock("MSFT"), make_order("BUY", 5, "LMT", lmt=low))
    working = status_of(ib, oid, "Submitted")
    assert float(working[3]) == 5
    assert ib.rec.wait_for("openOrder", lambda a: a[0] == oid)[0][2].lmtPrice == low

    high = round(ask * 1.5, 2)
    ib.placeOrder(oid, stock("MSFT"), make_order("BUY", 5, "LMT", lmt=high))
    filled = status_of(ib, oid, "Filled")
    modified = ib.rec.wait_for("openOrder", lambda a: a[0] == oid and a[2].lmtPrice == high)
    assert modified[0][2].permId == working[5]  # the same order, modified
    (_, _, ex), = ib.rec.wait_for("execDetails")
    assert ex.price == filled[4] <= high and ex.orderId == oid


def test_resting_limit_fills_when_the_market_moves(sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    bid, _, _ = quote(sim, TSLA)
    ib.placeOrder(oid, stock("TSLA"), make_order("BUY", 3, "LMT", lmt=bid - 5))
    status_of(ib, oid, "Submitted")
    new_ask = round(bid - 5.01, 2)
    move(sim, TSLA, round(new_ask - 0.01, 2), new_ask, new_ask)
    filled = status_of(ib, oid, "Filled")
    assert filled[4] == new_ask


def test_stop_becomes_market_when_last_crosses(sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    _, _, last = quote(sim, NVDA)
    ib.placeOrder(oid, stock("NVDA"), make_order("BUY", 2, "STP", aux=last + 10))
    status_of(ib, oid, "Submitted")
    new_last = round(last + 10.01, 2)
    move(sim, NVDA, round(new_last - 0.01, 2), round(new_last + 0.01, 2), new_last)
    assert status_of(ib, oid, "Filled")[4] == round(new_last + 0.01, 2)


def test_cancel_of_resting_order_and_completed_orders(sim: SimulatorThread,
                                                      ib: IBClient) -> None:
    oid = next_id(ib)
    ib.placeOrder(oid, stock("MSFT"), make_order("SELL", 7, "LMT", lmt=9999.0,
                                                 orderRef="to-cancel"))
    status_of(ib, oid, "Submitted")
    cancel(ib, oid)
    cancelled = status_of(ib, oid, "Cancelled")
    assert float(cancelled[2]) == 0 and float(cancelled[3]) == 7
    assert ib.rec.wait_for("error", lambda a: a[0] == oid and a[1] == 202)
    ib.placeOrder(oid + 1, stock(), make_order("BUY", 1, "MKT"))
    status_of(ib, oid + 1, "Filled")

    ib.reqCompletedOrders(False)
    ib.rec.wait_for("completedOrdersEnd")
    done = {a[1].permId: a for a in ib.rec.of("completedOrder")}
    assert len(done) == 2
    by_ref = {a[1].orderRef: a for a in done.values()}
    contract, order, state = by_ref["to-cancel"]
    assert (contract.symbol, order.action, order.lmtPrice, float(order.totalQuantity)) == \
        ("MSFT", "SELL", 9999.0, 7)
    assert state.status == "Cancelled" and order.permId == cancelled[5]
    _, order, state = by_ref[""]
    assert state.status == "Filled" and float(order.filledQuantity) == 1


def test_open_orders_for_this_client_and_for_all(sim: SimulatorThread, ib: IBClient) -> None:
    other = connect(sim, 7)
    try:
        mine, theirs = next_id(ib), next_id(other) + 100
        ib.placeOrder(mine, stock("MSFT"), make_order("BUY", 1, "LMT", lmt=1.0))
        other.placeOrder(theirs, stock("IBM"), make_order("BUY", 2, "LMT", lmt=1.0))
        status_of(ib, mine, "Submitted")
        status_of(other, theirs, "Submitted")
        assert not [a for a in ib.rec.of("orderStatus") if a[0] == theirs]  # not bound to us
        ib.rec.clear()

        ib.reqOpenOrders()
        ib.rec.wait_for("openOrderEnd")
        assert [(a[0], a[2].clientId) for a in ib.rec.of("openOrder")] == [(mine, 0)]
        assert [a[1] for a in ib.rec.of("orderStatus")] == ["Submitted"]
        ib.rec.clear()

        ib.reqAllOpenOrders()
        ib.rec.wait_for("openOrderEnd")
        got = {a[0]: a for a in ib.rec.of("openOrder")}
        assert set(got) == {mine, theirs}
        _, contract, order, state = got[theirs]
        assert (contract.symbol, order.clientId, float(order.totalQuantity), state.status) == \
            ("IBM", 7, 2, "Submitted")
    finally:
        other.stop()


def test_auto_open_orders_binds_other_clients_orders(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqAutoOpenOrders(True)
    other = connect(sim, 5)
    try:
        oid = next_id(other)
        other.placeOrder(oid, stock(), make_order("BUY", 1, "MKT"))
        status_of(other, oid, "Filled")
        seen = status_of(ib, oid, "Filled")
        assert seen[8] == 5  # the order's own clientId
        assert ib.rec.wait_for("execDetails", lambda a: a[2].orderId == oid)
    finally:
        other.stop()


def test_executions_with_filters(sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    ib.placeOrder(oid, stock(), make_order("BUY", 4, "MKT"))
    ib.placeOrder(oid + 1, stock("IBM"), make_order("SELL", 6, "MKT"))
    status_of(ib, oid + 1, "Filled")
    fills = {a[2].execId: a for a in ib.rec.wait_for("execDetails", count=2)}

    ib.reqExecutions(21, ExecutionFilter())
    end = ib.rec.wait_for("execDetailsEnd", lambda a: a[0] == 21)
    assert end
    again = [a for a in ib.rec.of("execDetails") if a[0] == 21]
    assert {a[2].execId for a in again} == set(fills)
    for _, contract, ex in again:
        first = fills[ex.execId][2]
        assert (ex.orderId, ex.side, float(ex.shares), ex.price, ex.permId, contract.conId) == \
            (first.orderId, first.side, float(first.shares), first.price, first.permId,
             fills[ex.execId][1].conId)
    assert len([r for r in ib.rec.of(COMMISSION_CB)]) == 4

    flt = ExecutionFilter()
    flt.side = "SELL"
    ib.reqExecutions(22, flt)
    ib.rec.wait_for("execDetailsEnd", lambda a: a[0] == 22)
    assert [(a[1].symbol, a[2].side) for a in ib.rec.of("execDetails") if a[0] == 22] == \
        [("IBM", "SLD")]

    flt = ExecutionFilter()
    flt.symbol = "MSFT"
    ib.reqExecutions(23, flt)
    ib.rec.wait_for("execDetailsEnd", lambda a: a[0] == 23)
    assert not [a for a in ib.rec.of("execDetails") if a[0] == 23]


def test_every_query_ends_even_with_nothing_to_report(ib: IBClient) -> None:
    ib.reqOpenOrders()
    ib.reqAllOpenOrders()
    ib.reqAutoOpenOrders(True)
    ib.reqCompletedOrders(True)
    ib.reqExecutions(3, ExecutionFilter())
    for name in ("openOrderEnd", "completedOrdersEnd", "execDetailsEnd"):
        ib.rec.wait_for(name, timeout=2.0, count=2 if name == "openOrderEnd" else 1)
    assert not ib.rec.of("openOrder") and not ib.rec.of("completedOrder")
    assert ib.rec.of("execDetailsEnd") == [(3,)]


def test_invalid_orders_are_rejected_with_tws_codes(ib: IBClient) -> None:
    oid = next_id(ib)
    ib.placeOrder(oid, stock(), make_order("BUY", 0, "MKT"))
    ib.placeOrder(oid + 1, stock(), make_order("BUY", 10, "LMT"))
    ib.placeOrder(oid + 2, stock(), make_order("BUY", 10, "FOO"))
    ib.placeOrder(oid + 3, stock("NOPE"), make_order("BUY", 10, "MKT"))
    ib.placeOrder(oid + 4, stock(), make_order("BUY", 10, "MKT", account="U999"))
    ib.placeOrder(oid + 5, stock(), make_order("BUY", 10, "TRAIL", aux=1.0))
    errors = {a[0]: a for a in ib.rec.wait_for("error", lambda a: a[0] >= oid, count=6)}
    assert errors[oid][1:] == (434, "The order size cannot be zero.")
    assert errors[oid + 2][1:] == (
        387, "Unsupported order type for this exchange and security type.")
    assert errors[oid + 3][1] == 200
    for bad in (oid + 1, oid + 4, oid + 5):  # IB knows TRAIL; the simulator does not model it
        assert errors[bad][1] == 201 and errors[bad][2].startswith("Order rejected - reason:")
    ib.reqOpenOrders()
    ib.rec.wait_for("openOrderEnd")
    assert not ib.rec.of("openOrder") and not ib.rec.of("orderStatus")


def test_cancel_errors_and_duplicate_ids(sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    cancel(ib, 4242)
    err = ib.rec.wait_for("error", lambda a: a[0] == 4242)[0]
    assert err[1:] == (10147, "OrderId 4242 that needs to be cancelled is not found.")

    ib.placeOrder(oid, stock(), make_order("BUY", 1, "MKT"))
    status_of(ib, oid, "Filled")
    cancel(ib, oid)
    assert ib.rec.wait_for("error", lambda a: a[0] == oid)[0][1] == 161

    ib.placeOrder(oid + 1, stock(), make_order("BUY", 1, "LMT", lmt=1.0))
    status_of(ib, oid + 1, "Submitted")
    ib.placeOrder(oid + 1, stock("IBM"), make_order("BUY", 1, "LMT", lmt=1.0))
    err = ib.rec.wait_for("error", lambda a: a[0] == oid + 1)[0]
    assert err[1:] == (105, "Order being modified does not match original order")


def test_global_cancel_cancels_every_live_order(sim: SimulatorThread, ib: IBClient) -> None:
    other = connect(sim, 9)
    try:
        oid = next_id(ib)
        ib.placeOrder(oid, stock("MSFT"), make_order("BUY", 1, "LMT", lmt=1.0))
        ib.placeOrder(oid + 1, stock("IBM"), make_order("SELL", 1, "LMT", lmt=99999.0))
        other.placeOrder(500, stock(), make_order("BUY", 1, "LMT", lmt=1.0))
        status_of(ib, oid + 1, "Submitted")
        status_of(other, 500, "Submitted")
        global_cancel(ib)
        status_of(ib, oid, "Cancelled")
        status_of(ib, oid + 1, "Cancelled")
        status_of(other, 500, "Cancelled")
        ib.rec.clear()
        ib.reqAllOpenOrders()
        ib.rec.wait_for("openOrderEnd")
        assert not ib.rec.of("openOrder")
    finally:
        other.stop()


def test_bracket_waits_for_transmit_and_for_its_parent(sim: SimulatorThread,
                                                       ib: IBClient) -> None:
    oid = next_id(ib)
    _, ask, _ = quote(sim, AAPL)
    ib.placeOrder(oid, stock(), make_order("BUY", 10, "LMT", lmt=round(ask * 0.5, 2),
                                           transmit=False))
    status_of(ib, oid, "Inactive")  # held in TWS until something transmits it
    ib.placeOrder(oid + 1, stock(), make_order("SELL", 10, "LMT", lmt=round(ask * 2, 2),
                                               parentId=oid, transmit=True))
    status_of(ib, oid, "Submitted")
    child = status_of(ib, oid + 1, "PreSubmitted")
    assert child[6] == oid  # parentId
    ib.placeOrder(oid, stock(), make_order("BUY", 10, "MKT"))  # modify the parent to market
    status_of(ib, oid, "Filled")
    status_of(ib, oid + 1, "Submitted")  # the child works once its parent filled
    opened = ib.rec.wait_for("openOrder", lambda a: a[0] == oid + 1)
    assert opened[-1][2].parentId == oid



def test_fills_reach_the_account_positions(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqPositions()
    ib.rec.wait_for("positionEnd")
    before = sum(float(a[2]) for a in ib.rec.of("position") if a[1].conId == TSLA)
    ib.cancelPositions()
    oid = next_id(ib)
    ib.placeOrder(oid, stock("TSLA"), make_order("BUY", 30, "MKT"))
    status_of(ib, oid, "Filled")
    ib.rec.clear()
    ib.reqPositions()
    ib.rec.wait_for("positionEnd")
    (account, _, size, _), = [a for a in ib.rec.of("position") if a[1].conId == TSLA]
    assert account == ACCOUNT and float(size) == before + 30


@pytest.mark.ib_async
def test_ib_async_trades_against_the_simulator(sim: SimulatorThread) -> None:
    """ib_async (its own decoder, server version 178) connects, trades and cancels."""
    ib_async = pytest.importorskip("ib_async")
    ib = ib_async.IB()
    ib.connect("127.0.0.1", sim.port, clientId=3, timeout=10)
    try:
        assert ib.client.serverVersion() == 178
        _, ask, _ = quote(sim, AAPL)
        trade = ib.placeOrder(ib_async.Stock("AAPL", "SMART", "USD"),
                              ib_async.MarketOrder("BUY", 100))
        ib_async_wait(ib, lambda: trade.isDone() and trade.fills
                      and trade.fills[0].commissionReport.execId, "the fill and its commission")
        assert trade.orderStatus.status == "Filled" and trade.orderStatus.avgFillPrice == ask
        (fill,) = trade.fills
        assert (fill.execution.side, fill.execution.shares, fill.execution.price) == \
            ("BOT", 100, ask)
        assert fill.commissionReport.commission == 1.0

        resting = ib.placeOrder(ib_async.Stock("MSFT", "SMART", "USD"),
                                ib_async.LimitOrder("SELL", 5, 9999.0))
        ib_async_wait(ib, lambda: resting.orderStatus.status == "Submitted" or resting.isDone(),
                      "the resting order to be working")
        ib.reqCurrentTime()  # a round trip: all the order heard before its answer has landed
        assert resting.orderStatus.status == "Submitted"
        ib.cancelOrder(resting.order)
        ib_async_wait(ib, resting.isDone, "the cancel's answer")
        assert resting.orderStatus.status == "Cancelled"
        assert len(ib.reqCompletedOrders(False)) == 2 and len(ib.reqExecutions()) == 1
    finally:
        ib.disconnect()


def test_what_if_previews_margin_without_placing(sim: SimulatorThread, ib: IBClient) -> None:
    oid = next_id(ib)
    _, ask, _ = quote(sim, AAPL)
    ib.placeOrder(oid, stock(), make_order("BUY", 100, "MKT", whatIf=True))
    (_, _, order, state), = ib.rec.wait_for("openOrder", lambda a: a[0] == oid)
    assert order.whatIf is True and float(state.initMarginChange) == pytest.approx(ask * 50)
    assert float(state.maintMarginChange) == pytest.approx(ask * 25)
    ib.reqOpenOrders()
    ib.rec.wait_for("openOrderEnd")
    assert not ib.rec.of("orderStatus") and len(ib.rec.of("openOrder")) == 1
