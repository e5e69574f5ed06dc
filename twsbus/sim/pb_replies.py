"""Protobuf forms of the replies with nested messages: contract details, executions, commissions,
positions, portfolio rows, bars and tick-by-tick ticks.

Each encoder reads the version-200 text fields a handler wrote (after the message id) in order
and fills IB's generated message, field by field; a field left empty on the text wire (IB's
"unset") stays absent. ``codec`` calls these from the version the reply's family switched to
protobuf. Flat replies are a table in ``codec``, the other list-shaped ones ``pb_reference``;
openOrder and completedOrder are built from the order model (``order_protobuf``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twsbus.sim import wire
from twsbus.sim.msgids import ToClient

_INT_TYPES = frozenset({3, 4, 5, 6, 7, 13, 15, 16, 17, 18})  # the descriptor's integer types


def put(message: Any, name: str, value: object) -> None:
    """Set one field from a text-wire value, converted to the field's type; unset stays absent."""
    text = wire.field(value)
    if text == "":
        return
    kind = message.DESCRIPTOR.fields_by_name[name].type
    if kind in (1, 2):  # double, float
        setattr(message, name, float(text))
    elif kind == 8:  # bool
        setattr(message, name, text not in ("0", "false", "False"))
    elif kind in _INT_TYPES:
        setattr(message, name, int(float(text)) if "." in text else int(text))
    else:
        setattr(message, name, text)


class _Reader:
    """The text fields of one reply, read in order into protobuf messages."""

    __slots__ = ("_fields", "_i")

    def __init__(self, fields: Sequence[object], start: int) -> None:
        self._fields, self._i = fields, start

    def next(self) -> object:
        value = self._fields[self._i] if self._i < len(self._fields) else None
        self._i += 1
        return value

    def into(self, message: Any, *names: str) -> None:
        for name in names:
            value = self.next()
            if name != "_":
                put(message, name, value)


_CONTRACT = ("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right",
             "multiplier")


def _execution(m: Any, r: _Reader) -> None:
    # [11, reqId, orderId, contract..., execution...]
    put(m, "reqId", r.next())
    order_id = r.next()
    r.into(m.contract, *_CONTRACT, "exchange", "currency", "localSymbol", "tradingClass")
    put(m.execution, "orderId", order_id)
    r.into(m.execution, "execId", "time", "acctNumber", "exchange", "side", "shares", "price",
           "permId", "clientId", "isLiquidation", "cumQty", "avgPrice", "orderRef", "evRule",
           "evMultiplier", "modelCode", "lastLiquidity", "isPriceRevisionPending", "submitter")


def _contract_data(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    c, d = m.contract, m.contractDetails
    r.into(c, "symbol", "secType", "lastTradeDateOrContractMonth", "lastTradeDate", "strike",
           "right", "exchange", "currency", "localSymbol")
    put(d, "marketName", r.next())
    r.into(c, "tradingClass", "conId")
    put(d, "minTick", r.next())
    put(c, "multiplier", r.next())
    r.into(d, "orderTypes", "validExchanges", "priceMagnifier", "underConId", "longName")
    put(c, "primaryExch", r.next())
    r.into(d, "contractMonth", "industry", "category", "subcategory", "timeZoneId",
           "tradingHours", "liquidHours", "evRule", "evMultiplier")
    for _ in range(int(str(r.next() or 0))):
        tag = str(r.next())
        d.secIdList[tag] = str(r.next())
    r.into(d, "aggGroup", "underSymbol", "underSecType", "marketRuleIds", "realExpirationDate",
           "stockType", "minSize", "sizeIncrement", "suggestedSizeIncrement")
    if int(str(r.next() or 0)):
        raise ValueError("ineligibility reasons have no protobuf form here yet")


def _commission(m: Any, r: _Reader) -> None:
    r.next()  # version
    r.into(m, "execId", "commissionAndFees", "currency", "realizedPNL", "bondYield",
           "yieldRedemptionDate")


def _position(m: Any, r: _Reader) -> None:
    r.next()  # version
    put(m, "account", r.next())
    r.into(m.contract, *_CONTRACT, "exchange", "currency", "localSymbol", "tradingClass")
    r.into(m, "position", "avgCost")


def _position_multi(m: Any, r: _Reader) -> None:
    r.next()  # version
    r.into(m, "reqId", "account")
    r.into(m.contract, *_CONTRACT, "exchange", "currency", "localSymbol", "tradingClass")
    r.into(m, "position", "avgCost", "modelCode")


def _portfolio(m: Any, r: _Reader) -> None:
    r.next()  # version
    r.into(m.contract, *_CONTRACT, "primaryExch", "currency", "localSymbol", "tradingClass")
    r.into(m, "position", "marketPrice", "marketValue", "averageCost", "unrealizedPNL",
           "realizedPNL", "accountName")


def _historical_data(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    for _ in range(int(str(r.next()))):
        r.into(m.historicalDataBars.add(), "date", "open", "high", "low", "close", "volume",
               "WAP", "barCount")


def _historical_update(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    r.into(m.historicalDataBar, "barCount", "date", "open", "close", "high", "low", "WAP",
           "volume")


def _real_time_bar(m: Any, r: _Reader) -> None:
    r.next()  # version
    r.into(m, "reqId", "time", "open", "high", "low", "close", "volume", "WAP", "count")


def _tick_by_tick(m: Any, r: _Reader) -> None:
    put(m, "reqId", r.next())
    tick_type = int(str(r.next()))
    m.tickType = tick_type
    if tick_type in (1, 2):
        tick = m.historicalTickLast
        r.into(tick, "time", "price", "size")
        mask = int(str(r.next() or 0))
        tick.tickAttribLast.pastLimit = bool(mask & 1)
        tick.tickAttribLast.unreported = bool(mask & 2)
        r.into(tick, "exchange", "specialConditions")
    elif tick_type == 3:
        quote = m.historicalTickBidAsk
        r.into(quote, "time", "priceBid", "priceAsk", "sizeBid", "sizeAsk")
        mask = int(str(r.next() or 0))
        quote.tickAttribBidAsk.bidPastLow = bool(mask & 1)
        quote.tickAttribBidAsk.askPastHigh = bool(mask & 2)
    elif tick_type == 4:
        r.into(m.historicalTickMidPoint, "time", "price")


T = ToClient
#: reply id -> (protobuf message, first version sent as protobuf, encoder)
NESTED: dict[int, tuple[str, int, Callable[[Any, _Reader], None]]] = {
    T.EXECUTION_DATA: ("ExecutionDetails", 201, _execution),
    T.CONTRACT_DATA: ("ContractData", 205, _contract_data),
    T.COMMISSION_AND_FEES_REPORT: ("CommissionAndFeesReport", 203, _commission),
    T.POSITION_DATA: ("Position", 207, _position),
    T.PORTFOLIO_VALUE: ("PortfolioValue", 207, _portfolio),
    T.POSITION_MULTI: ("PositionMulti", 207, _position_multi),
    T.HISTORICAL_DATA: ("HistoricalData", 208, _historical_data),
    T.HISTORICAL_DATA_UPDATE: ("HistoricalDataUpdate", 208, _historical_update),
    T.REAL_TIME_BARS: ("RealTimeBarTick", 208, _real_time_bar),
    T.TICK_BY_TICK: ("TickByTickData", 208, _tick_by_tick),
}


def encode(message: Any, encoder: Callable[[Any, _Reader], None],
           fields: Sequence[object]) -> bytes:
    encoder(message, _Reader(fields, 1))
    return bytes(message.SerializeToString())
