"""Typed market data requests: top of book and its data type, tick-by-tick, real-time bars,
depth and the depth exchanges."""

from __future__ import annotations

from twsbus.sim.msgids import FromClient as F
from twsbus.sim.requests.base import Contract, IdRequest, Request, read_contract, spec
from twsbus.sim.wire import Fields

MIN_SERVER_VER_DELTA_NEUTRAL = 40
MIN_SERVER_VER_REQ_MKT_DATA_CONID = 47
MIN_SERVER_VER_TRADING_CLASS = 68
MIN_SERVER_VER_REQ_SMART_COMPONENTS = 114  # regulatorySnapshot
MIN_SERVER_VER_TICK_BY_TICK_IGNORE_SIZE = 140
MIN_SERVER_VER_SMART_DEPTH = 146
MIN_SERVER_VER_MKT_DEPTH_PRIM_EXCHANGE = 149


class ReqMarketDataType(Request, frozen=True):
    marketDataType: int = 0


class ReqMktData(IdRequest, frozen=True):
    contract: Contract = Contract()
    genericTickList: str = ""
    snapshot: bool = False
    regulatorySnapshot: bool = False


class CancelMktData(IdRequest, frozen=True):
    pass


class ReqTickByTickData(IdRequest, frozen=True):
    contract: Contract = Contract()
    tickType: str = ""
    numberOfTicks: int = 0
    ignoreSize: bool = False


class CancelTickByTickData(IdRequest, frozen=True):
    pass


class ReqRealTimeBars(IdRequest, frozen=True):
    contract: Contract = Contract()
    barSize: int = 0
    whatToShow: str = ""
    useRTH: bool = False


class CancelRealTimeBars(IdRequest, frozen=True):
    pass


class ReqMktDepthExchanges(Request, frozen=True):
    pass


class ReqMktDepth(IdRequest, frozen=True):
    contract: Contract = Contract()
    numRows: int = 0
    isSmartDepth: bool = False


class CancelMktDepth(IdRequest, frozen=True):
    pass


def _req_mkt_data(f: Fields, v: int) -> ReqMktData:
    f.int()  # version
    req_id = f.int()
    contract = read_contract(f, con_id=v >= MIN_SERVER_VER_REQ_MKT_DATA_CONID,
                             trading_class=v >= MIN_SERVER_VER_TRADING_CLASS)
    if contract.secType == "BAG":
        f.skip(4 * f.int())  # combo legs: conId, ratio, action, exchange
    if v >= MIN_SERVER_VER_DELTA_NEUTRAL and f.bool():
        f.skip(3)  # delta-neutral conId, delta, price
    generic, snapshot = f.str(), f.bool()
    regulatory = f.bool() if v >= MIN_SERVER_VER_REQ_SMART_COMPONENTS else False
    return ReqMktData(reqId=req_id, contract=contract, genericTickList=generic,
                      snapshot=snapshot, regulatorySnapshot=regulatory)


def _req_tick_by_tick(f: Fields, v: int) -> ReqTickByTickData:
    req_id, contract, kind = f.int(), read_contract(f), f.str()
    count, ignore_size = 0, False
    if v >= MIN_SERVER_VER_TICK_BY_TICK_IGNORE_SIZE:
        count, ignore_size = f.int(), f.bool()
    return ReqTickByTickData(reqId=req_id, contract=contract, tickType=kind,
                             numberOfTicks=count, ignoreSize=ignore_size)


def _req_real_time_bars(f: Fields, v: int) -> ReqRealTimeBars:
    f.int()  # version
    req_id = f.int()
    contract = read_contract(f, con_id=v >= MIN_SERVER_VER_TRADING_CLASS,
                             trading_class=v >= MIN_SERVER_VER_TRADING_CLASS)
    return ReqRealTimeBars(reqId=req_id, contract=contract, barSize=f.int(),
                           whatToShow=f.str(), useRTH=f.bool())


def _req_mkt_depth(f: Fields, v: int) -> ReqMktDepth:
    f.int()  # version
    req_id = f.int()
    contract = read_contract(f, con_id=v >= MIN_SERVER_VER_TRADING_CLASS,
                             primary_exchange=v >= MIN_SERVER_VER_MKT_DEPTH_PRIM_EXCHANGE,
                             trading_class=v >= MIN_SERVER_VER_TRADING_CLASS)
    rows = f.int()
    smart = f.bool() if v >= MIN_SERVER_VER_SMART_DEPTH else False
    return ReqMktDepth(reqId=req_id, contract=contract, numRows=rows, isSmartDepth=smart)


SPECS = {
    F.REQ_MARKET_DATA_TYPE: spec(ReqMarketDataType, "MarketDataTypeRequest",
                                 ("_", "marketDataType")),
    F.REQ_MKT_DATA: spec(ReqMktData, "MarketDataRequest", _req_mkt_data),
    F.CANCEL_MKT_DATA: spec(CancelMktData, "CancelMarketData", ("_", "reqId")),
    F.REQ_TICK_BY_TICK_DATA: spec(ReqTickByTickData, "TickByTickRequest", _req_tick_by_tick),
    F.CANCEL_TICK_BY_TICK_DATA: spec(CancelTickByTickData, "CancelTickByTick", ("reqId",)),
    F.REQ_REAL_TIME_BARS: spec(ReqRealTimeBars, "RealTimeBarsRequest", _req_real_time_bars),
    F.CANCEL_REAL_TIME_BARS: spec(CancelRealTimeBars, "CancelRealTimeBars", ("_", "reqId")),
    F.REQ_MKT_DEPTH_EXCHANGES: spec(ReqMktDepthExchanges, "MarketDepthExchangesRequest"),
    F.REQ_MKT_DEPTH: spec(ReqMktDepth, "MarketDepthRequest", _req_mkt_depth),
    F.CANCEL_MKT_DEPTH: spec(CancelMktDepth, "CancelMarketDepth", ("_", "reqId")),
}
