"""Every reply the simulator sends as protobuf decodes, in IB's own decoder, to exactly the
callbacks and values its text form gives: a protobuf field that is misnamed, mistyped or missing
fails here. The replies are the ones a session at 225 really sent during a scenario covering the
families the daemon uses."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from ibapi.contract import Contract
from ibapi.decoder import Decoder
from ibapi.execution import ExecutionFilter
from ibrecorder import IBClient, Recorder
from orderkit import ACCOUNT, IBAPI_10, make_order, next_id, status_of, stock

from twsbus.sim import codec, wire
from twsbus.testing import SimulatorThread

pytestmark = pytest.mark.skipif(not IBAPI_10, reason="ibapi 9.81 has no protobuf")


def _scenario(ib: IBClient) -> None:
    ib.reqMktData(1, stock(), "233", False, False, [])
    ib.rec.wait_for("tickString", lambda a: a[0] == 1)
    ib.reqMktData(2, stock("MSFT"), "", True, False, [])
    ib.rec.wait_for("tickSnapshotEnd")
    for req_id, kind in ((3, "BidAsk"), (4, "AllLast"), (5, "MidPoint")):
        ib.reqTickByTickData(req_id, stock(), kind, 0, False)
    ib.rec.wait_for("tickByTickMidPoint")
    ib.rec.wait_for("tickByTickAllLast")
    ib.reqRealTimeBars(6, stock(), 5, "TRADES", True, [])
    ib.rec.wait_for("realtimeBar")
    ib.reqContractDetails(7, stock())
    future, option = Contract(), Contract()
    future.symbol, future.secType, future.exchange = "ES", "FUT", "CME"
    option.symbol, option.secType, option.exchange, option.right = "AAPL", "OPT", "SMART", "C"
    ib.reqContractDetails(17, future)
    ib.reqContractDetails(18, option)
    for req_id in (7, 17, 18):
        ib.rec.wait_for("contractDetailsEnd", lambda a, r=req_id: a[0] == r)
    oid = next_id(ib)
    ib.placeOrder(oid, stock(), make_order("BUY", 10, "MKT"))
    status_of(ib, oid, "Filled")
    ib.rec.wait_for("commissionAndFeesReport")
    ib.reqExecutions(8, ExecutionFilter())
    ib.rec.wait_for("execDetailsEnd")
    ib.reqOpenOrders()
    ib.rec.wait_for("openOrderEnd")
    ib.reqCompletedOrders(False)
    ib.rec.wait_for("completedOrdersEnd")
    ib.reqPositions()
    ib.rec.wait_for("positionEnd")
    ib.reqAccountSummary(9, "All", "NetLiquidation,TotalCashValue")
    ib.rec.wait_for("accountSummaryEnd")
    ib.reqAccountUpdates(True, ACCOUNT)
    ib.rec.wait_for("accountDownloadEnd")
    ib.reqPnL(10, ACCOUNT, "")
    ib.rec.wait_for("pnl")
    ib.reqHistoricalData(11, stock(), "", "1 D", "1 hour", "TRADES", 1, 1, True, [])
    ib.rec.wait_for("historicalDataEnd")
    ib.reqHeadTimeStamp(12, stock(), "TRADES", 1, 1)
    ib.rec.wait_for("headTimestamp")
    ib.reqCurrentTime()
    ib.rec.wait_for("currentTime")
    ib.reqCurrentTimeInMillis()
    ib.rec.wait_for("currentTimeInMillis")
    ib.reqMktData(13, stock("NOSUCH"), "", False, False, [])
    ib.rec.wait_for("error", lambda a: a[0] == 13)
    ib.reqIds(1)
    ib.rec.wait_for("nextValidId", count=2)
    ib.reqManagedAccts()
    ib.rec.wait_for("managedAccounts", count=2)
    ib.reqPositionsMulti(14, ACCOUNT, "")
    ib.rec.wait_for("positionMultiEnd")
    ib.reqAccountUpdatesMulti(15, ACCOUNT, "", False)
    ib.rec.wait_for("accountUpdateMultiEnd")
    ib.reqPnLSingle(16, ACCOUNT, "", 265598)
    ib.rec.wait_for("pnlSingle")
    deadline = time.monotonic() + 5
    while not ib.rec.of("historicalDataUpdate") and time.monotonic() < deadline:
        ib.rec.wait_for("tickPrice", count=len(ib.rec.of("tickPrice")) + 1)


def _plain(value: Any, depth: int = 0) -> Any:
    if depth > 6 or value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    if hasattr(value, "__dict__"):
        out = {k: _plain(v, depth + 1) for k, v in vars(value).items()}
        # Where IB's two decoders disagree on an empty value, not the simulator: the text one
        # leaves an empty list None (protobuf: []), and an absent bool None (text: False).
        for key in ("secIdList", "smartComboRoutingParams"):
            if key in out and out[key] is None:
                out[key] = []
        if out.get("routeMarketableToBbo") is None and "routeMarketableToBbo" in out:
            out["routeMarketableToBbo"] = False
        return out
    return repr(value)


def _decoded(version: int, frame: bytes) -> list[Any]:
    rec = Recorder()
    decoder = Decoder(rec, version)
    msg_id = int.from_bytes(frame[:4], "big")
    if msg_id > codec.PROTOBUF_MSG_ID:
        decoder.processProtoBuf(frame[4:], msg_id - codec.PROTOBUF_MSG_ID)
    else:
        decoder.interpret(tuple(frame[4:].split(b"\0")[:-1]), msg_id)
    return [(name, _plain(args)) for name, args in rec.calls if not name.endswith("ProtoBuf")]


def test_protobuf_replies_decode_as_their_text_form(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: dict[int, list[tuple[Any, bytes, bytes]]] = {}
    encode = codec.encode

    def recording(version: int, fields: Any) -> bytes:
        # Both forms now: an order's protobuf form is built from its model, which moves on.
        text = wire.frame(int(fields[0]).to_bytes(4, "big") + wire.payload(fields[1:]))[4:]
        sent.setdefault(int(fields[0]), []).append(
            (fields, text, encode(codec.MAX_VERSION, fields)[4:]))
        return encode(version, fields)

    monkeypatch.setattr(codec, "encode", recording)
    with SimulatorThread(tick_interval=0.05, max_version=codec.MAX_VERSION) as sim:
        ib = IBClient().start(sim.port)
        try:
            _scenario(ib)
        finally:
            ib.stop()
    proto_ids = [m for m in sent if codec.is_protobuf(codec.MAX_VERSION, m)]
    assert {5, 10, 11, 17, 59, 99, 101} <= set(proto_ids), sorted(proto_ids)
    assert len(proto_ids) >= 40, sorted(proto_ids)
    for msg_id in proto_ids:
        for fields, text, proto in sent[msg_id][:40]:
            assert int.from_bytes(proto[:4], "big") == msg_id + codec.PROTOBUF_MSG_ID
            expected = _decoded(codec.MAX_VERSION, text)
            assert expected, fields
            assert _decoded(codec.MAX_VERSION, proto) == expected, fields
