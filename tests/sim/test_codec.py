"""Every reply the simulator sends as protobuf decodes, in IB's own decoder, to exactly the
callbacks and values its text form gives: a protobuf field that is misnamed, mistyped or missing
fails here. The replies are the ones a session at 225 really sent during a scenario covering the
families the daemon uses."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from ibapi import order_condition as oc
from ibapi.contract import Contract
from ibapi.decoder import Decoder
from ibapi.execution import ExecutionFilter
from ibrecorder import IBClient, Recorder
from orderkit import ACCOUNT, IBAPI_10, make_order, next_id, status_of, stock

from twsbus.sim import codec, wire
from twsbus.sim.msgids import ToClient
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
    calls = [(name, _plain(args)) for name, args in rec.calls if not name.endswith("ProtoBuf")]
    # IB's protobuf decoder hands smartComponents a {bit: (exchange, letter)} map, its text
    # decoder a list of SmartComponent objects (the daemon's callbacks make them one shape).
    return [(name, [args[0], [{"bitNumber": bit, "exchange": ex, "exchangeLetter": letter}
                              for bit, (ex, letter) in args[1].items()]])
            if name == "smartComponents" and isinstance(args[1], dict) else (name, args)
            for name, args in calls]


def _record(monkeypatch: pytest.MonkeyPatch, scenario: Any,
            **options: Any) -> dict[int, list[tuple[Any, bytes, bytes]]]:
    """Run ``scenario`` against a simulator at the highest version; every reply in both forms."""
    sent: dict[int, list[tuple[Any, bytes, bytes]]] = {}
    encode = codec.encode

    def recording(version: int, fields: Any) -> bytes:
        # Both forms now: an order's protobuf form is built from its model, which moves on.
        text = wire.frame(int(fields[0]).to_bytes(4, "big") + wire.payload(fields[1:]))[4:]
        sent.setdefault(int(fields[0]), []).append(
            (fields, text, encode(codec.MAX_VERSION, fields)[4:]))
        return encode(version, fields)

    monkeypatch.setattr(codec, "encode", recording)
    with SimulatorThread(tick_interval=0.05, max_version=codec.MAX_VERSION, **options) as sim:
        ib = IBClient().start(sim.port)
        try:
            scenario(ib)
        finally:
            ib.stop()
    return sent


def _check(sent: dict[int, list[tuple[Any, bytes, bytes]]]) -> list[int]:
    proto_ids = [m for m in sent if codec.is_protobuf(codec.MAX_VERSION, m)]
    for msg_id in proto_ids:
        for fields, text, proto in sent[msg_id][:40]:
            assert int.from_bytes(proto[:4], "big") == msg_id + codec.PROTOBUF_MSG_ID
            expected = _decoded(codec.MAX_VERSION, text)
            assert expected, fields
            assert _decoded(codec.MAX_VERSION, proto) == expected, fields
    return proto_ids


def test_protobuf_replies_decode_as_their_text_form(monkeypatch: pytest.MonkeyPatch) -> None:
    proto_ids = _check(_record(monkeypatch, _scenario))
    assert {5, 10, 11, 17, 59, 99, 101} <= set(proto_ids), sorted(proto_ids)
    assert len(proto_ids) >= 40, sorted(proto_ids)


def _reference_scenario(ib: IBClient) -> None:
    ib.reqMktDepthExchanges()
    ib.rec.wait_for("mktDepthExchanges")
    ib.reqMktDepth(1, stock(), 3, True, [])
    ib.reqMktDepth(2, stock("MSFT"), 3, False, [])
    ib.rec.wait_for("updateMktDepthL2", count=8)
    ib.rec.wait_for("updateMktDepth", count=8)
    ib.cancelMktDepth(1, True)
    ib.cancelMktDepth(2, False)
    ib.reqNewsProviders()
    ib.rec.wait_for("newsProviders")
    ib.reqHistoricalNews(3, 265598, "BRFG+DJNL", "", "", 3, [])
    (_, _, provider, article_id, _), = ib.rec.wait_for("historicalNews")[:1]
    ib.rec.wait_for("historicalNewsEnd")
    ib.reqNewsArticle(4, provider, article_id, [])
    ib.rec.wait_for("newsArticle")
    ib.reqMatchingSymbols(5, "AAP")
    ib.rec.wait_for("symbolSamples")
    ib.reqSecDefOptParams(6, "AAPL", "", "STK", 265598)
    ib.rec.wait_for("securityDefinitionOptionParameterEnd")
    for rule in (26, 32):
        ib.reqMarketRule(rule)
    ib.rec.wait_for("marketRule", count=2)
    ib.reqSmartComponents(7, "a60001")
    ib.rec.wait_for("smartComponents")
    ib.reqFamilyCodes()
    ib.rec.wait_for("familyCodes")
    ib.reqSoftDollarTiers(8)
    ib.rec.wait_for("softDollarTiers")
    ib.reqUserInfo(9)
    ib.rec.wait_for("userInfo")
    ib.reqScannerParameters()
    ib.rec.wait_for("scannerParameters")
    ib.reqFundamentalData(10, stock(), "ReportSnapshot", [])
    ib.rec.wait_for("fundamentalData")
    option = Contract()
    option.symbol, option.secType, option.exchange, option.currency = "AAPL", "OPT", "SMART", "USD"
    option.lastTradeDateOrContractMonth, option.strike, option.right = "20270115", 190.0, "C"
    option.multiplier = "100"
    ib.calculateImpliedVolatility(11, option, 12.5, 190.0, [])
    ib.rec.wait_for("tickOptionComputation")
    ib.reqHistogramData(12, stock(), True, "1 week")
    ib.rec.wait_for("histogramData")
    for req_id, what in ((13, "TRADES"), (14, "BID_ASK"), (15, "MIDPOINT")):
        ib.reqHistoricalTicks(req_id, stock(), "", "", 5, what, 1, True, [])
    ib.rec.wait_for("historicalTicksLast")
    ib.rec.wait_for("historicalTicksBidAsk")
    ib.rec.wait_for("historicalTicks")
    ib.reqHistoricalData(16, stock(), "20261120 16:00:00 US/Eastern", "1 W", "1 day",
                         "SCHEDULE", 1, 1, False, [])
    ib.rec.wait_for("historicalSchedule")


def test_reference_replies_decode_as_their_text_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """Depth, news, reference data, option computations and the historical lists: every one the
    scenario makes goes as protobuf at 225 and decodes as its text form does."""
    proto_ids = set(_check(_record(monkeypatch, _reference_scenario)))
    T = ToClient
    wanted = {T.MKT_DEPTH_EXCHANGES, T.MARKET_DEPTH, T.MARKET_DEPTH_L2, T.NEWS_PROVIDERS,
              T.HISTORICAL_NEWS, T.HISTORICAL_NEWS_END, T.NEWS_ARTICLE, T.SYMBOL_SAMPLES,
              T.SECURITY_DEFINITION_OPTION_PARAMETER, T.SECURITY_DEFINITION_OPTION_PARAMETER_END,
              T.MARKET_RULE, T.SMART_COMPONENTS, T.FAMILY_CODES, T.SOFT_DOLLAR_TIERS,
              T.USER_INFO, T.SCANNER_PARAMETERS, T.FUNDAMENTAL_DATA, T.TICK_OPTION_COMPUTATION,
              T.HISTOGRAM_DATA, T.HISTORICAL_TICKS, T.HISTORICAL_TICKS_BID_ASK,
              T.HISTORICAL_TICKS_LAST, T.HISTORICAL_SCHEDULE}
    assert wanted <= proto_ids, sorted(wanted - proto_ids)


def _conditions() -> list[Any]:
    price = oc.Create(oc.OrderCondition.Price)
    price.conId, price.exchange, price.isMore, price.price, price.triggerMethod = \
        265598, "SMART", True, 150.25, 2
    at = oc.Create(oc.OrderCondition.Time)
    at.isMore, at.time, at.isConjunctionConnection = False, "20261231 15:00:00 US/Eastern", False
    margin = oc.Create(oc.OrderCondition.Margin)
    margin.isMore, margin.percent = True, 30
    execution = oc.Create(oc.OrderCondition.Execution)
    execution.secType, execution.exchange, execution.symbol = "STK", "SMART", "MSFT"
    volume = oc.Create(oc.OrderCondition.Volume)
    volume.conId, volume.exchange, volume.isMore, volume.volume = 272093, "SMART", True, 100000
    change = oc.Create(oc.OrderCondition.PercentChange)
    change.conId, change.exchange, change.isMore, change.changePercent = \
        265598, "SMART", False, 2.5
    return [price, at, margin, execution, volume, change]


def _conditions_scenario(ib: IBClient) -> None:
    from ibapi.order_cancel import OrderCancel  # 10.x only

    oid = next_id(ib)
    order = make_order("BUY", 10, "LMT", lmt=1.0, conditions=_conditions(),
                       conditionsIgnoreRth=True)
    ib.placeOrder(oid, stock(), order)
    status_of(ib, oid, "Submitted")
    ib.reqOpenOrders()
    ib.rec.wait_for("openOrderEnd")
    ib.cancelOrder(oid, OrderCancel())
    status_of(ib, oid, "Cancelled")
    ib.reqCompletedOrders(False)
    ib.rec.wait_for("completedOrdersEnd")


def test_order_conditions_travel_in_the_protobuf_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    """All six kinds of order condition, read from a protobuf placeOrder and sent back in the
    protobuf openOrder and completedOrder, decode as their text forms do."""
    sent = _record(monkeypatch, _conditions_scenario)
    _check(sent)
    for msg_id in (ToClient.OPEN_ORDER, ToClient.COMPLETED_ORDER):
        assert sent.get(msg_id), msg_id
        (_, text, _), *_ = sent[msg_id]
        (name, args), = _decoded(codec.MAX_VERSION, text)
        order = args[2] if name == "openOrder" else args[1]
        assert len(order["conditions"]) == 6, order["conditions"]  # all six kinds went in
