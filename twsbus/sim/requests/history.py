"""Typed historical data requests: bars, the head timestamp, histograms, historical ticks and
their cancels."""

from __future__ import annotations

from twsbus.sim.msgids import FromClient as F
from twsbus.sim.requests.base import Contract, IdRequest, Request, read_contract, spec
from twsbus.sim.wire import Fields

MIN_SERVER_VER_TRADING_CLASS = 68
MIN_SERVER_VER_SYNT_REALTIME_BARS = 124  # keepUpToDate; the request's version field goes


class ReqHistoricalData(IdRequest, frozen=True):
    contract: Contract = Contract()
    endDateTime: str = ""
    durationStr: str = ""
    barSizeSetting: str = ""
    whatToShow: str = ""
    useRTH: bool = False
    formatDate: int = 1
    keepUpToDate: bool = False


class CancelHistoricalData(IdRequest, frozen=True):
    pass


class ReqHeadTimeStamp(IdRequest, frozen=True):
    contract: Contract = Contract()
    whatToShow: str = ""
    useRTH: bool = False
    formatDate: int = 1


class CancelHeadTimeStamp(IdRequest, frozen=True):
    pass


class ReqHistogramData(Request, frozen=True):
    tickerId: int = 0
    contract: Contract = Contract()
    useRTH: bool = False
    timePeriod: str = ""


class CancelHistogramData(Request, frozen=True):
    tickerId: int = 0


class ReqHistoricalTicks(IdRequest, frozen=True):
    contract: Contract = Contract()
    startDateTime: str = ""
    endDateTime: str = ""
    numberOfTicks: int = 0
    whatToShow: str = ""


def _req_historical_data(f: Fields, v: int) -> ReqHistoricalData:
    if v < MIN_SERVER_VER_SYNT_REALTIME_BARS:
        f.int()  # version
    req_id = f.int()
    contract = read_contract(f, con_id=v >= MIN_SERVER_VER_TRADING_CLASS,
                             trading_class=v >= MIN_SERVER_VER_TRADING_CLASS,
                             include_expired=True)
    end, bar_size, duration = f.str(), f.str(), f.str()
    rth, what, fmt = f.int() != 0, f.str(), f.int(1)
    if contract.secType == "BAG":
        f.skip(4 * f.int())
    keep = f.bool() if v >= MIN_SERVER_VER_SYNT_REALTIME_BARS else False
    return ReqHistoricalData(reqId=req_id, contract=contract, endDateTime=end,
                             durationStr=duration, barSizeSetting=bar_size, whatToShow=what,
                             useRTH=rth, formatDate=fmt, keepUpToDate=keep)


def _req_head_timestamp(f: Fields, v: int) -> ReqHeadTimeStamp:
    req_id = f.int()
    contract = read_contract(f, include_expired=True)
    rth = f.int() != 0
    return ReqHeadTimeStamp(reqId=req_id, contract=contract, useRTH=rth, whatToShow=f.str(),
                            formatDate=f.int(1))


def _req_histogram_data(f: Fields, v: int) -> ReqHistogramData:
    req_id = f.int()
    contract = read_contract(f, include_expired=True)
    return ReqHistogramData(tickerId=req_id, contract=contract, useRTH=f.bool(),
                            timePeriod=f.str())


def _req_historical_ticks(f: Fields, v: int) -> ReqHistoricalTicks:
    req_id = f.int()
    contract = read_contract(f, include_expired=True)
    start, end = f.str(), f.str()
    return ReqHistoricalTicks(reqId=req_id, contract=contract, startDateTime=start,
                              endDateTime=end, numberOfTicks=f.int(), whatToShow=f.str())


SPECS = {
    F.REQ_HISTORICAL_DATA: spec(ReqHistoricalData, "HistoricalDataRequest",
                                _req_historical_data, {"durationStr": "duration"}),
    F.CANCEL_HISTORICAL_DATA: spec(CancelHistoricalData, "CancelHistoricalData",
                                   ("_", "reqId")),
    F.REQ_HEAD_TIMESTAMP: spec(ReqHeadTimeStamp, "HeadTimestampRequest", _req_head_timestamp),
    F.CANCEL_HEAD_TIMESTAMP: spec(CancelHeadTimeStamp, "CancelHeadTimestamp", ("reqId",)),
    F.REQ_HISTOGRAM_DATA: spec(ReqHistogramData, "HistogramDataRequest", _req_histogram_data,
                               {"tickerId": "reqId"}),
    F.CANCEL_HISTOGRAM_DATA: spec(CancelHistogramData, "CancelHistogramData", ("tickerId",),
                                  {"tickerId": "reqId"}),
    F.REQ_HISTORICAL_TICKS: spec(ReqHistoricalTicks, "HistoricalTicksRequest",
                                 _req_historical_ticks),
}
