"""The simulator across server versions: IB's 10.x client at 157 (9.81's), 178 (ib_async's), 200
(the last text version), and on the binary-id / protobuf wire at 203, 206, 213, 220 and 225.

Each family is driven through IB's own client at every version; IB's decoders are patched to
refuse leftover text fields (``strict_decoding``), and the client's ``*ProtoBuf`` callbacks show
which wire each reply came on, so a reply that switches to protobuf at the wrong version, or
whose protobuf fields are wrong, fails here. The simulator's request counters prove the requests
(protobuf from their own switch-over versions) were read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from ibapi.execution import ExecutionFilter
from ibrecorder import IBClient
from orderkit import AAPL, ACCOUNT, IBAPI_10, make_order, next_id, status_of, stock

from twsbus.testing import SimulatorThread

pytestmark = pytest.mark.skipif(not IBAPI_10, reason="ibapi 9.81 speaks only up to 157")

VERSIONS = [157, 178, 200, 203, 206, 213, 220, 225]


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
def versioned(request: pytest.FixtureRequest,
              strict_decoding: list[str]) -> Iterator[tuple[int, SimulatorThread, IBClient]]:
    version = request.param
    with SimulatorThread(tick_interval=0.05, max_version=version) as sim:
        client = IBClient().start(sim.port)
        try:
            assert client.serverVersion() == version
            yield version, sim, client
        finally:
            client.stop()


#: ibapi's protobuf callback where its name is not the classic one + "ProtoBuf"
PROTO_CALLBACK = {"marketDataType": "updateMarketDataTypeProtoBuf",
                  "execDetails": "executionDetailsProtoBuf",
                  "commissionAndFeesReport": "commissionAndFeesReportProtoBuf",
                  "realtimeBar": "realTimeBarTickProtoBuf",
                  "tickByTickBidAsk": "tickByTickDataProtoBuf",
                  "tickByTickAllLast": "tickByTickDataProtoBuf",
                  "contractDetailsEnd": "contractDataEndProtoBuf",
                  "execDetailsEnd": "executionDetailsEndProtoBuf",
                  "openOrderEnd": "openOrdersEndProtoBuf",
                  "accountDownloadEnd": "accountDataEndProtoBuf"}


def on_wire(ib: IBClient, callback: str, version: int, switch: int) -> None:
    """``callback`` arrived, as protobuf exactly when ``version`` is at least ``switch``."""
    assert ib.rec.of(callback), callback
    proto = PROTO_CALLBACK.get(callback, callback + "ProtoBuf")
    assert bool(ib.rec.of(proto)) == (version >= switch), (callback, version)


def requests(sim: SimulatorThread) -> dict[str, int]:
    return dict(sim.control.state()["requests"])


def test_session_messages(versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    version, sim, ib = versioned
    assert ib.rec.of("managedAccounts")[0][0] == ACCOUNT
    on_wire(ib, "managedAccounts", version, 207)
    on_wire(ib, "nextValidId", version, 213)
    ib.reqCurrentTime()
    (now,) = ib.rec.wait_for("currentTime")[0]
    assert abs(now - time.time()) < 5
    on_wire(ib, "currentTime", version, 213)
    if version >= 197:  # MIN_SERVER_VER_CURRENT_TIME_IN_MILLIS
        ib.reqCurrentTimeInMillis()
        (millis,) = ib.rec.wait_for("currentTimeInMillis")[0]
        assert abs(millis / 1000 - time.time()) < 5
        on_wire(ib, "currentTimeInMillis", version, 213)
    ib.reqIds(1)
    ib.rec.wait_for("nextValidId", count=2)
    codes = {args[1] for args in ib.rec.wait_for("error", count=3)}
    assert {2104, 2106, 2158} <= codes
    on_wire(ib, "error", version, 201)
    seen = requests(sim)
    assert seen["START_API"] == seen["REQ_CURRENT_TIME"] == seen["REQ_IDS"] == 1


def test_market_data(versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    version, sim, ib = versioned
    ib.reqMarketDataType(1)
    ib.reqMktData(7, stock(), "233", False, False, [])
    ib.rec.wait_for("tickPrice", lambda a: a[0] == 7 and a[1] == 1)
    ib.rec.wait_for("tickSize", lambda a: a[0] == 7 and a[1] == 8)  # volume
    ib.rec.wait_for("tickString", lambda a: a[0] == 7 and a[1] == 48)  # RT volume
    (req_id, min_tick, bbo, permissions), = ib.rec.wait_for("tickReqParams")
    assert (req_id, min_tick, permissions) == (7, 0.01, 3) and bbo == "9c0001"
    ((_, data_type),) = ib.rec.wait_for("marketDataType")
    assert data_type == 1
    for callback in ("tickPrice", "tickSize", "tickString", "tickReqParams", "marketDataType"):
        on_wire(ib, callback, version, 206)
    (_, _, bid, _), = ib.rec.wait_for("tickPrice", lambda a: a[0] == 7 and a[1] == 1)[:1]
    (_, _, ask, _), = ib.rec.wait_for("tickPrice", lambda a: a[0] == 7 and a[1] == 2)[:1]
    assert 0 < bid < ask
    ib.cancelMktData(7)
    ib.reqMktData(8, stock("MSFT"), "", True, False, [])
    ib.rec.wait_for("tickSnapshotEnd", lambda a: a[0] == 8)
    on_wire(ib, "tickSnapshotEnd", version, 206)
    ib.reqMktData(9, stock("NOSUCH"), "", False, False, [])
    (_, code, _), = ib.rec.wait_for("error", lambda a: a[0] == 9)
    assert code == 200
    seen = requests(sim)
    assert seen["REQ_MKT_DATA"] == 3 and seen["CANCEL_MKT_DATA"] == 1


def test_tick_by_tick(versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    version, _, ib = versioned
    ib.reqTickByTickData(11, stock(), "BidAsk", 0, False)
    (_, stamp, bid, ask, bid_size, ask_size, _), = ib.rec.wait_for("tickByTickBidAsk")[:1]
    assert abs(stamp - time.time()) < 60 and 0 < bid < ask and bid_size > 0 and ask_size > 0
    ib.reqTickByTickData(12, stock(), "AllLast", 0, False)
    (_, kind, stamp, price, size, attrib, exchange, _), = ib.rec.wait_for("tickByTickAllLast")[:1]
    assert kind == 2 and price > 0 and size > 0 and exchange and not attrib.pastLimit
    ib.cancelTickByTickData(11)
    ib.cancelTickByTickData(12)
    on_wire(ib, "tickByTickBidAsk", version, 208)
    ib.reqRealTimeBars(13, stock(), 5, "MIDPOINT", True, [])
    (_, bar_time, open_, high, low, close, *_), = ib.rec.wait_for("realtimeBar")[:1]
    assert bar_time % 5 == 0 and low <= open_ <= high and low <= close <= high
    on_wire(ib, "realtimeBar", version, 208)
    ib.cancelRealTimeBars(13)


def test_contract_details(versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    version, _, ib = versioned
    ib.reqContractDetails(21, stock())
    (req_id, details), = ib.rec.wait_for("contractDetails")
    assert req_id == 21 and details.contract.conId == AAPL
    assert details.contract.primaryExchange == "NASDAQ" and details.minTick == 0.01
    ib.rec.wait_for("contractDetailsEnd", lambda a: a[0] == 21)
    on_wire(ib, "contractDetailsEnd", version, 205)


def test_orders(versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    version, sim, ib = versioned
    oid = next_id(ib)
    ib.placeOrder(oid, stock(), make_order("BUY", 10, "MKT"))
    status = status_of(ib, oid, "Filled")
    assert float(status[2]) == 10 and float(status[3]) == 0 and status[4] > 0
    on_wire(ib, "orderStatus", version, 203)
    (_, contract, order, state), = ib.rec.wait_for("openOrder", lambda a: a[0] == oid)[:1]
    assert contract.conId == AAPL and order.action == "BUY" and float(order.totalQuantity) == 10
    assert order.orderType == "MKT" and order.account == ACCOUNT and order.permId > 0
    on_wire(ib, "openOrder", version, 203)
    (_, _, execution), = ib.rec.wait_for("execDetails", lambda a: a[2].orderId == oid)[:1]
    assert float(execution.shares) == 10 and execution.acctNumber == ACCOUNT
    assert execution.orderId == oid and execution.price == status[4]
    on_wire(ib, "execDetails", version, 201)
    (report,), = ib.rec.wait_for("commissionAndFeesReport")[:1]
    assert report.execId == execution.execId and report.commissionAndFees > 0
    on_wire(ib, "commissionAndFeesReport", version, 203)
    resting = next_id(ib)
    ib.placeOrder(resting, stock(), make_order("SELL", 5, "LMT", lmt=9999.0, transmit=True))
    status_of(ib, resting, "Submitted")
    ib.reqOpenOrders()
    ib.rec.wait_for("openOrderEnd")
    on_wire(ib, "openOrderEnd", version, 203)
    ib.reqExecutions(31, ExecutionFilter())
    ib.rec.wait_for("execDetailsEnd", lambda a: a[0] == 31)
    on_wire(ib, "execDetailsEnd", version, 201)
    ib.reqCompletedOrders(False)
    ib.rec.wait_for("completedOrdersEnd")
    (contract, order, state), = [a for a in ib.rec.of("completedOrder")
                                 if a[1].permId == status[5]]
    assert contract.conId == AAPL and float(order.filledQuantity) == 10
    assert state.status == "Filled" and state.completedStatus
    on_wire(ib, "completedOrder", version, 204)
    on_wire(ib, "completedOrdersEnd", version, 204)
    assert requests(sim)["PLACE_ORDER"] == 2


def test_accounts_and_positions(versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    version, _, ib = versioned
    ib.reqPositions()
    ib.rec.wait_for("positionEnd")
    positions = ib.rec.of("position")
    assert positions and all(a[0] == ACCOUNT and a[1].conId and a[1].symbol for a in positions)
    on_wire(ib, "position", version, 207)
    on_wire(ib, "positionEnd", version, 207)
    ib.reqAccountSummary(41, "All", "NetLiquidation,BuyingPower")
    ib.rec.wait_for("accountSummaryEnd", lambda a: a[0] == 41)
    tags = {a[2] for a in ib.rec.of("accountSummary") if a[0] == 41}
    assert tags == {"NetLiquidation", "BuyingPower"}
    on_wire(ib, "accountSummary", version, 207)
    ib.reqAccountUpdates(True, ACCOUNT)
    ib.rec.wait_for("accountDownloadEnd")
    assert any(a[0] == "NetLiquidation" for a in ib.rec.of("updateAccountValue"))
    (contract, position, price, value, *_, account), = ib.rec.of("updatePortfolio")[:1]
    assert contract.conId and contract.primaryExchange and account == ACCOUNT
    assert value == pytest.approx(float(position) * price * float(contract.multiplier or 1),
                                  abs=0.02)
    for callback in ("updateAccountValue", "updatePortfolio", "updateAccountTime",
                     "accountDownloadEnd"):
        on_wire(ib, callback, version, 207)
    ib.reqPnL(42, ACCOUNT, "")
    ib.rec.wait_for("pnl", lambda a: a[0] == 42)
    on_wire(ib, "pnl", version, 210)


def test_historical_data(versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    version, _, ib = versioned
    ib.reqHistoricalData(51, stock(), "", "2 D", "1 hour", "TRADES", 1, 1, False, [])
    ib.rec.wait_for("historicalDataEnd", lambda a: a[0] == 51)
    bars = [a[1] for a in ib.rec.of("historicalData") if a[0] == 51]
    assert bars and all(b.low <= b.open <= b.high and b.low <= b.close <= b.high for b in bars)
    on_wire(ib, "historicalData", version, 208)
    on_wire(ib, "historicalDataEnd", version, 208)
    ib.reqHeadTimeStamp(52, stock(), "TRADES", 1, 1)
    ((_, head),) = ib.rec.wait_for("headTimestamp")
    assert head
    on_wire(ib, "headTimestamp", version, 208)
