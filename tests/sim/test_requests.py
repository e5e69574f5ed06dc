"""The two readers of every request agree: what IB's own client writes for a call as version-200
text and what it writes for the same call as protobuf (213+) read into the same typed request.

The simulator's text readers are proven field by field elsewhere (every session test drives
IB's client); this pins the protobuf readers to them, so a handler cannot tell the wires apart.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip("ibapi.protobuf")

from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.scanner import ScannerSubscription
from ibapi.tag_value import TagValue
from ibrecorder import Recorder
from orderkit import make_order, stock
from test_orders import _odd_orders, rich_order
from wirecapture import WireCapture

from twsbus.sim import requests
from twsbus.sim.codec import PROTOBUF_MSG_ID
from twsbus.sim.requests.orders import PlaceOrder

PROTOBUF_VERSION = 225


def _sent(v: int, call: str, *args: Any) -> bytes:
    client = EClient(Recorder())
    client.conn = WireCapture()
    client.connState = EClient.CONNECTED
    client.serverVersion_ = v
    getattr(client, call)(*args)
    assert client.conn.sent, f"{call} sent nothing at v{v}"
    return bytes(client.conn.sent[0][4:])


def both(call: str, *args: Any) -> tuple[requests.Request, requests.Request]:
    """(read from the v200 text, read from the protobuf) of one EClient call."""
    fields = _sent(200, call, *args).decode().split("\0")[:-1]
    text = requests.read_text(int(fields[0]), 200, fields[1:])
    payload = _sent(PROTOBUF_VERSION, call, *args)
    msg_id = int.from_bytes(payload[:4], "big")
    assert msg_id > PROTOBUF_MSG_ID, f"{call} is not protobuf at v{PROTOBUF_VERSION}"
    return text, requests.read_protobuf(msg_id - PROTOBUF_MSG_ID, payload[4:])


def _option() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "AAPL", "OPT", "SMART", "USD"
    c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier = "20261218", 200.0, "C", "100"
    return c


def _scan() -> ScannerSubscription:
    scan = ScannerSubscription()
    scan.instrument, scan.locationCode, scan.scanCode = "STK", "STK.US.MAJOR", "TOP_PERC_GAIN"
    scan.numberOfRows, scan.abovePrice, scan.aboveVolume = 20, 5.0, 100000
    return scan


def _filter() -> ExecutionFilter:
    flt = ExecutionFilter()
    flt.clientId, flt.acctCode, flt.symbol, flt.side = 3, "DU1234567", "AAPL", "BUY"
    flt.time = "20261120 09:30:00 US/Eastern"
    return flt


CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("reqMktData", (7, stock(), "165,236", False, False, [])),
    ("reqMktData", (8, _option(), "", True, True, [])),
    ("cancelMktData", (7,)),
    ("reqMarketDataType", (3,)),
    ("reqTickByTickData", (9, stock(), "BidAsk", 10, True)),
    ("reqRealTimeBars", (10, stock(), 5, "MIDPOINT", True, [])),
    ("reqMktDepth", (11, stock(), 5, True, [])),
    ("reqHistoricalData", (12, stock(), "", "2 D", "1 hour", "TRADES", 1, 2, True, [])),
    ("reqHeadTimeStamp", (13, stock(), "TRADES", 1, 2)),
    ("reqHistogramData", (14, stock(), True, "3 days")),
    ("reqHistoricalTicks", (15, stock(), "20261120 09:30:00", "", 100, "BID_ASK", 1, True, [])),
    ("reqContractDetails", (16, _option())),
    ("reqSecDefOptParams", (17, "AAPL", "", "STK", 265598)),
    ("reqMatchingSymbols", (18, "APP")),
    ("reqFundamentalData", (19, _option(), "ReportSnapshot", [])),
    ("calculateImpliedVolatility", (20, _option(), 5.5, 201.0, [])),
    ("calculateOptionPrice", (21, _option(), 0.3, 0.0, [])),
    ("reqHistoricalNews", (22, 265598, "BRFG+DJNL", "", "2026-11-20 00:00:00.0", 10, [])),
    ("reqNewsArticle", (23, "BRFG", "BRFG$40e1e-01", [])),
    ("reqScannerSubscription", (24, _scan(), [], [TagValue("priceAbove", "10")])),
    ("reqAccountSummary", (25, "All", "NetLiquidation,BuyingPower")),
    ("reqAccountUpdates", (True, "DU1234567")),
    ("reqAccountUpdatesMulti", (26, "DU1234567", "", True)),
    ("reqPositionsMulti", (27, "All", "model")),
    ("reqPnLSingle", (28, "DU1234567", "", 265598)),
    ("reqExecutions", (29, _filter())),
    ("reqAutoOpenOrders", (True,)),
    ("reqCompletedOrders", (True,)),
    ("reqIds", (1,)),
]


@pytest.mark.parametrize(("call", "args"), CALLS, ids=[c for c, _ in CALLS])
def test_a_request_reads_the_same_off_both_wires(call: str, args: tuple[Any, ...]) -> None:
    text, protobuf = both(call, *args)
    assert protobuf == text


def test_every_kind_of_order_reads_the_same_off_both_wires() -> None:
    orders = [*_odd_orders(PROTOBUF_VERSION), (stock(), rich_order(PROTOBUF_VERSION)),
              (stock(), make_order("SELL", Decimal("12.5"), "STP", aux=99.0, transmit=False))]
    for contract, order in orders:
        text, protobuf = both("placeOrder", 11, contract, order)
        assert isinstance(text, PlaceOrder) and isinstance(protobuf, PlaceOrder)
        assert protobuf.contract == text.contract, order.orderType
        differ = {k: (text.order.get(k), v) for k, v in protobuf.order.items()
                  if text.order.get(k) != v}
        assert not differ, f"{order.orderType} {contract.secType}: {differ}"
        assert list(protobuf.order) == list(text.order)
