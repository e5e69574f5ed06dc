"""Protobuf forms of the list-shaped replies beyond the hot families: market depth and the depth
exchanges, news, reference data (symbol samples, option chains, market rules, SMART components,
family codes, soft dollar tiers), scanner data (210), option computations, and the historical
ticks, histogram and schedule.

As in ``pb_replies``, each encoder reads the version-200 text fields a handler wrote (after the
message id) in order and fills IB's generated message; the version each family switches at is
TWS's (the version at which IB's client switched the family's requests: depth and option
computations with market data at 206, historical at 208, news at 209, reference data at 212, the
depth exchanges at 213). The flat ones of these families are rows of ``codec.REPLIES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twsbus.sim.msgids import ToClient
from twsbus.sim.pb_replies import _Reader, put


def _count(r: _Reader) -> int:
    return int(str(r.next() or 0))


def _market_depth(m: Any, r: _Reader) -> None:
    r.next()  # version
    put(m, "reqId", r.next())
    r.into(m.marketDepthData, "position", "operation", "side", "price", "size")


def _market_depth_l2(m: Any, r: _Reader) -> None:
    r.next()  # version
    put(m, "reqId", r.next())
    r.into(m.marketDepthData, "position", "marketMaker", "operation", "side", "price", "size",
           "isSmartDepth")


def _depth_exchanges(m: Any, r: _Reader) -> None:
    for _ in range(_count(r)):
        r.into(m.depthMarketDataDescriptions.add(), "exchange", "secType", "listingExch",
               "serviceDataType", "aggGroup")


def _news_providers(m: Any, r: _Reader) -> None:
    for _ in range(_count(r)):
        r.into(m.newsProviders.add(), "providerCode", "providerName")


def _symbol_samples(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    for _ in range(_count(r)):
        d = m.contractDescriptions.add()
        r.into(d.contract, "conId", "symbol", "secType", "primaryExch", "currency")
        for _ in range(_count(r)):
            d.derivativeSecTypes.append(str(r.next()))
        r.into(d.contract, "description", "issuerId")


def _sec_def_opt_parameter(m: Any, r: _Reader) -> None:
    r.into(m, "reqId", "exchange", "underlyingConId", "tradingClass", "multiplier")
    m.expirations.extend(str(r.next()) for _ in range(_count(r)))
    m.strikes.extend(float(str(r.next())) for _ in range(_count(r)))


def _market_rule(m: Any, r: _Reader) -> None:
    put(m, "marketRuleId", r.next())
    for _ in range(_count(r)):
        r.into(m.priceIncrements.add(), "lowEdge", "increment")


def _smart_components(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    for _ in range(_count(r)):
        r.into(m.smartComponents.add(), "bitNumber", "exchange", "exchangeLetter")


def _family_codes(m: Any, r: _Reader) -> None:
    for _ in range(_count(r)):
        r.into(m.familyCodes.add(), "accountId", "familyCode")


def _soft_dollar_tiers(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    for _ in range(_count(r)):
        r.into(m.softDollarTiers.add(), "name", "value", "displayName")


def _option_computation(m: Any, r: _Reader) -> None:
    # [21, reqId, tickType, tickAttrib, impliedVol, delta, optPrice, pvDividend, gamma, vega,
    #  theta, undPrice]: TWS's "not computed" markers (-1, -2) travel as they are.
    r.into(m, "reqId", "tickType", "tickAttrib", "impliedVol", "delta", "optPrice",
           "pvDividend", "gamma", "vega", "theta", "undPrice")


def _histogram(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    for _ in range(_count(r)):
        r.into(m.histogramDataEntries.add(), "price", "size")


def _historical_ticks(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    for _ in range(_count(r)):
        r.into(m.historicalTicks.add(), "time", "_", "price", "size")
    put(m, "isDone", r.next())


def _historical_ticks_bid_ask(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    for _ in range(_count(r)):
        tick = m.historicalTicksBidAsk.add()
        put(tick, "time", r.next())
        mask = _count(r)
        tick.tickAttribBidAsk.bidPastLow = bool(mask & 1)
        tick.tickAttribBidAsk.askPastHigh = bool(mask & 2)
        r.into(tick, "priceBid", "priceAsk", "sizeBid", "sizeAsk")
    put(m, "isDone", r.next())


def _historical_ticks_last(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    for _ in range(_count(r)):
        tick = m.historicalTicksLast.add()
        put(tick, "time", r.next())
        mask = _count(r)
        tick.tickAttribLast.pastLimit = bool(mask & 1)
        tick.tickAttribLast.unreported = bool(mask & 2)
        r.into(tick, "price", "size", "exchange", "specialConditions")
    put(m, "isDone", r.next())


def _historical_schedule(m: Any, r: _Reader) -> None:
    r.into(m, "reqId", "startDateTime", "endDateTime", "timeZone")
    for _ in range(_count(r)):
        r.into(m.historicalSessions.add(), "startDateTime", "endDateTime", "refDate")


def _scanner_data(m: Any, r: _Reader) -> None:
    # [20, version, reqId, n, (rank, conId, symbol, secType, lastTradeDateOrContractMonth,
    #  strike, right, exchange, currency, localSymbol, marketName, tradingClass, distance,
    #  benchmark, projection, legsStr) * n]: the legs string is the protobuf's comboKey.
    r.next()  # version
    put(m, "reqId", r.next())
    for _ in range(_count(r)):
        row = m.scannerDataElement.add()
        put(row, "rank", r.next())
        r.into(row.contract, "conId", "symbol", "secType", "lastTradeDateOrContractMonth",
               "strike", "right", "exchange", "currency", "localSymbol")
        put(row, "marketName", r.next())
        put(row.contract, "tradingClass", r.next())
        r.into(row, "distance", "benchmark", "projection", "comboKey")


T = ToClient
#: reply id -> (protobuf message, first version sent as protobuf, encoder)
NESTED: dict[int, tuple[str, int, Callable[[Any, _Reader], None]]] = {
    T.MARKET_DEPTH: ("MarketDepth", 206, _market_depth),
    T.MARKET_DEPTH_L2: ("MarketDepthL2", 206, _market_depth_l2),
    T.TICK_OPTION_COMPUTATION: ("TickOptionComputation", 206, _option_computation),
    T.HISTOGRAM_DATA: ("HistogramData", 208, _histogram),
    T.HISTORICAL_TICKS: ("HistoricalTicks", 208, _historical_ticks),
    T.HISTORICAL_TICKS_BID_ASK: ("HistoricalTicksBidAsk", 208, _historical_ticks_bid_ask),
    T.HISTORICAL_TICKS_LAST: ("HistoricalTicksLast", 208, _historical_ticks_last),
    T.HISTORICAL_SCHEDULE: ("HistoricalSchedule", 208, _historical_schedule),
    T.NEWS_PROVIDERS: ("NewsProviders", 209, _news_providers),
    T.SCANNER_DATA: ("ScannerData", 210, _scanner_data),
    T.SECURITY_DEFINITION_OPTION_PARAMETER: ("SecDefOptParameter", 212,
                                             _sec_def_opt_parameter),
    T.SYMBOL_SAMPLES: ("SymbolSamples", 212, _symbol_samples),
    T.MARKET_RULE: ("MarketRule", 212, _market_rule),
    T.SMART_COMPONENTS: ("SmartComponents", 212, _smart_components),
    T.FAMILY_CODES: ("FamilyCodes", 212, _family_codes),
    T.SOFT_DOLLAR_TIERS: ("SoftDollarTiers", 212, _soft_dollar_tiers),
    T.MKT_DEPTH_EXCHANGES: ("MarketDepthExchanges", 213, _depth_exchanges),
}
