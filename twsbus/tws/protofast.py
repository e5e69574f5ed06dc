"""A faster decode of the hottest protobuf messages (server version 201+): the four top-of-book
tick messages and tick-by-tick.

From version 206 TWS sends tickPrice, tickSize, tickString and tickGeneric as protobuf (message
ids 201, 202, 246, 245), from 208 tick-by-tick data (299). IB's decoder parses them, calls a
``*ProtoBuf`` callback, builds ``Decimal`` sizes and attribute objects, then the classic callback.
Here the generated class parses the body (upb, in C) and the very ``Event``s ``EventWrapper``
would have produced are emitted directly; tests check the two paths field for field. The schemas
are imported on first use: ibapi 9.81 has none, and never negotiates a protobuf version.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ibapi.ticktype import TickTypeEnum

from twsbus.tws.callbacks import Event, Sink
from twsbus.tws.fastpath import emit_price
from twsbus.tws.objects import UNSET_DOUBLE, UNSET_INTEGER, UNSET_LONG, to_plain
from twsbus.tws.ticks import field_name

PROTOBUF_MSG_ID = 200  # ids above this carry protobuf bodies
_NOT_SET = TickTypeEnum.NOT_SET  # IB's decoder drops a tick of this type
_UNSET_DECIMAL_INT = 2**127 - 1
_UNSET_INTS = (UNSET_INTEGER, UNSET_LONG)


def _size(text: str) -> Any:
    try:
        value = int(text)  # whole shares: no Decimal needed
    except ValueError:
        return to_plain(Decimal(text))
    return None if value == _UNSET_DECIMAL_INT else value


def _price(value: float) -> float | None:
    return None if value == UNSET_DOUBLE or value != value else value


# The fields are proto3 ``optional``: an absent one reads as its zero, so ``HasField`` (a call
# per field, the most of this path's cost) is asked only when the value read is that zero.


def _req_id(p: Any) -> int:
    req_id: int = p.reqId
    return req_id if req_id or p.HasField("reqId") else -1


def _key(p: Any) -> int | None:
    """The request id an event is routed by (None: the message carries none)."""
    req_id = _req_id(p)
    return req_id if req_id >= 0 else None


def _tick_type(p: Any) -> int:
    tick_type: int = p.tickType
    return tick_type if tick_type or p.HasField("tickType") else UNSET_INTEGER


def _tick_price(p: Any, sink: Sink) -> None:
    price = p.price
    size = p.size
    emit_price(sink, _req_id(p), _tick_type(p),  # as the text wire's tickPrice does
               _price(price) if price or p.HasField("price") else None,
               _size(size) if size or p.HasField("size") else None)


def _tick_size(p: Any, sink: Sink) -> None:
    tick_type = _tick_type(p)
    if tick_type != _NOT_SET:
        size = p.size
        sink(Event("tickSize", _key(p), {
            "tickType": tick_type, "field": field_name(tick_type),
            "size": _size(size) if size or p.HasField("size") else None}))


def _tick_string(p: Any, sink: Sink) -> None:
    tick_type = _tick_type(p)
    if tick_type != _NOT_SET:
        sink(Event("tickString", _key(p), {
            "tickType": tick_type, "field": field_name(tick_type), "value": p.value}))


def _tick_generic(p: Any, sink: Sink) -> None:
    tick_type = _tick_type(p)
    if tick_type != _NOT_SET:
        value = p.value
        sink(Event("tickGeneric", _key(p), {
            "tickType": tick_type, "field": field_name(tick_type),
            "value": _price(value) if value or p.HasField("value") else None}))


def _time(value: int) -> int | None:
    return None if value in _UNSET_INTS else value


def _tick_by_tick(p: Any, sink: Sink) -> None:
    # The hottest message of a tick-by-tick burst: values are read once and checked inline
    # (what ``to_plain`` would do for an int or a float), no generic conversion per field.
    key = _key(p)
    # An absent scalar reads as its zero (tickType 0: nothing to emit), which is also the
    # default of IB's HistoricalTick* objects; only the sizes default differently (unset, not 0).
    tick_type = p.tickType
    if tick_type == 1 or tick_type == 2:
        if not p.HasField("historicalTickLast"):
            return
        t = p.historicalTickLast
        a = t.tickAttribLast
        sink(Event("tickByTickAllLast", key, {
            "tickType": tick_type, "time": _time(t.time), "price": _price(t.price),
            "size": _size(t.size) if t.HasField("size") else None,
            "tickAttribLast": {"pastLimit": a.pastLimit, "unreported": a.unreported},
            "exchange": t.exchange, "specialConditions": t.specialConditions}))
    elif tick_type == 3:
        if not p.HasField("historicalTickBidAsk"):
            return
        q = p.historicalTickBidAsk
        a = q.tickAttribBidAsk
        sink(Event("tickByTickBidAsk", key, {
            "time": _time(q.time), "bidPrice": _price(q.priceBid),
            "askPrice": _price(q.priceAsk),
            "bidSize": _size(q.sizeBid) if q.HasField("sizeBid") else None,
            "askSize": _size(q.sizeAsk) if q.HasField("sizeAsk") else None,
            "tickAttribBidAsk": {"bidPastLow": a.bidPastLow, "askPastHigh": a.askPastHigh}}))
    elif tick_type == 4:
        if not p.HasField("historicalTickMidPoint"):
            return
        m = p.historicalTickMidPoint
        sink(Event("tickByTickMidPoint", key, {"time": _time(m.time),
                                               "midPoint": _price(m.price)}))


_TABLE: dict[int, tuple[Any, Callable[[Any, Sink], None]]] | None = None


def _table() -> dict[int, tuple[Any, Callable[[Any, Sink], None]]]:
    global _TABLE
    if _TABLE is None:
        _TABLE = _load()
    return _TABLE


def _load() -> dict[int, tuple[Any, Callable[[Any, Sink], None]]]:
    try:
        from ibapi.protobuf.TickByTickData_pb2 import TickByTickData
        from ibapi.protobuf.TickGeneric_pb2 import TickGeneric
        from ibapi.protobuf.TickPrice_pb2 import TickPrice
        from ibapi.protobuf.TickSize_pb2 import TickSize
        from ibapi.protobuf.TickString_pb2 import TickString
    except ImportError:  # ibapi 9.81: no protobuf messages at all
        return {}
    return {201: (TickPrice, _tick_price), 202: (TickSize, _tick_size),
            246: (TickString, _tick_string), 245: (TickGeneric, _tick_generic),
            299: (TickByTickData, _tick_by_tick)}


def decode_proto_fast(msg_id: int, body: bytes, sink: Sink) -> bool:
    """Emit the events of a hot protobuf message and return True; False leaves it to IB."""
    entry = (_TABLE if _TABLE is not None else _table()).get(msg_id)
    if entry is None:
        return False
    cls, emit = entry
    emit(cls.FromString(body), sink)
    return True
