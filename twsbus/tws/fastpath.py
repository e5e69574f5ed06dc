"""A faster decode of the hottest text messages: tickPrice, tickSize, tickString, tickGeneric,
tickByTick.

IB's decoder spends most of a tick's time in generic per-field helpers (a function call, a debug
log call and a type dispatch per field) and builds a TickAttrib object nobody downstream reads.
For these messages this module reads the fields directly and emits the very
``Event``s that ``EventWrapper`` would have produced from IB's decoder; tests check the two paths
field for field over many frames with the installed ibapi. ``decode_fast`` takes a text frame's
fields with its id (server version <= 200), ``decode_fast_binary`` the fields after a binary id
(201+, where the text layouts are those of 200); the protobuf ticks are in ``protofast``. Every
other message goes through IB's decoder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ibapi import server_versions
from ibapi.decoder import Decoder
from ibapi.ticktype import TickTypeEnum
from ibapi.wrapper import EWrapper

from twsbus.tws.callbacks import Event, Sink
from twsbus.tws.objects import UNSET_DECIMAL, UNSET_DOUBLE, UNSET_INTEGER, to_plain
from twsbus.tws.ticks import field_name

# The size tick TWS pairs with a price tick (bid -> bidSize...), as IB's decoder does.
SIZE_TICK_OF = {1: 0, 2: 3, 4: 5, 66: 69, 67: 70, 68: 71}
_ASCII7 = getattr(server_versions, "MIN_SERVER_VER_ENCODE_MSG_ASCII7", 153)
# ibapi 10.x drops a tickSize of type NOT_SET; 9.81 (which decodes tickSize by signature) passes
# it on, and rejects an empty size there.
_SIGNATURE_TICK_SIZE = not hasattr(Decoder, "processTickSizeMsg")
_NOT_SET = None if _SIGNATURE_TICK_SIZE else TickTypeEnum.NOT_SET

# Sizes are Decimal in ibapi 10.x and int in 9.81: decode them as the installed ibapi does.
_SIZE_TYPE: Any = (Decimal if inspect.signature(EWrapper.tickSize).parameters["size"].annotation
                   in (Decimal, "Decimal", "decimal.Decimal") else int)


def _size(text: bytes) -> Any:
    if not text:
        return None if _SIZE_TYPE is Decimal else 0
    try:
        value = int(text)  # the common case, whole shares: no Decimal needed
    except ValueError:
        return to_plain(_SIZE_TYPE(text.decode()))
    return None if value in _UNSET_SIZES else value


_UNSET_SIZES = frozenset({UNSET_INTEGER, int(UNSET_DECIMAL)})


def _price(text: bytes) -> float | None:
    value = float(text) if text else 0.0
    return None if value == UNSET_DOUBLE else value


def _tick_price(f: list[bytes], i: int, sink: Sink, version: int) -> None:
    # [version, reqId, tickType, price, size, attrMask] from index i
    req_id = int(f[i + 1])
    tick_type = int(f[i + 2])
    price = _price(f[i + 3])
    size = _size(f[i + 4])  # read even when unused: a bad one fails as in IB's decoder
    emit_price(sink, req_id, tick_type, price, size)


def emit_price(sink: Sink, req_id: int, tick_type: int, price: float | None, size: Any) -> None:
    key = req_id if req_id >= 0 else None
    sink(Event("tickPrice", key, {"tickType": tick_type, "field": field_name(tick_type),
                                  "price": price}))
    size_type = SIZE_TICK_OF.get(tick_type)
    if size_type is not None:
        sink(Event("tickSize", key, {"tickType": size_type, "field": field_name(size_type),
                                     "size": size}))


def _tick_size(f: list[bytes], i: int, sink: Sink, version: int) -> None:
    # [version, reqId, tickType, size]
    req_id = int(f[i + 1])
    tick_type = int(f[i + 2])
    if tick_type == _NOT_SET:  # IB's decoder drops it
        return
    if not f[i + 3] and _SIGNATURE_TICK_SIZE:
        raise ValueError("empty size")
    sink(Event("tickSize", req_id if req_id >= 0 else None, {
        "tickType": tick_type, "field": field_name(tick_type), "size": _size(f[i + 3])}))


def _tick_string(f: list[bytes], i: int, sink: Sink, version: int) -> None:
    # [version, reqId, tickType, value]
    req_id = int(f[i + 1])
    tick_type = int(f[i + 2])
    value = f[i + 3].decode("unicode-escape" if version >= _ASCII7 else "utf-8")
    sink(Event("tickString", req_id if req_id >= 0 else None, {
        "tickType": tick_type, "field": field_name(tick_type), "value": value}))


def _tick_generic(f: list[bytes], i: int, sink: Sink, version: int) -> None:
    # [version, reqId, tickType, value]
    req_id = int(f[i + 1])
    tick_type = int(f[i + 2])
    sink(Event("tickGeneric", req_id if req_id >= 0 else None, {
        "tickType": tick_type, "field": field_name(tick_type),
        "value": to_plain(float(f[i + 3]))}))


def _tick_by_tick(f: list[bytes], i: int, sink: Sink, version: int) -> None:
    # [reqId, tickType, time, ...] from index i (no version field); the shape was checked
    req_id = int(f[i])
    key = req_id if req_id >= 0 else None
    tick_type = int(f[i + 1])
    time = int(f[i + 2])
    if tick_type in (1, 2):  # Last, AllLast: price, size, mask, exchange, specialConditions
        mask = int(f[i + 5])
        sink(Event("tickByTickAllLast", key, {
            "tickType": tick_type, "time": time, "price": _price(f[i + 3]),
            "size": _size(f[i + 4]),
            "tickAttribLast": {"pastLimit": mask & 1 != 0, "unreported": mask & 2 != 0},
            "exchange": f[i + 6].decode(), "specialConditions": f[i + 7].decode()}))
    elif tick_type == 3:  # BidAsk: bid, ask, bidSize, askSize, mask
        mask = int(f[i + 7])
        sink(Event("tickByTickBidAsk", key, {
            "time": time, "bidPrice": _price(f[i + 3]), "askPrice": _price(f[i + 4]),
            "bidSize": _size(f[i + 5]), "askSize": _size(f[i + 6]),
            "tickAttribBidAsk": {"bidPastLow": mask & 1 != 0, "askPastHigh": mask & 2 != 0}}))
    else:  # MidPoint
        sink(Event("tickByTickMidPoint", key, {"time": time, "midPoint": _price(f[i + 3])}))


#: A tick-by-tick message's number of fields after its id, by its tick type (the shape varies).
_TBT_FIELDS = {b"1": 8, b"2": 8, b"3": 8, b"4": 4}

_Fast = tuple[int, Callable[[list[bytes], int, Sink, int], None]]
#: message id -> (number of fields after the id, decoder)
_BY_ID: dict[int, _Fast] = {1: (6, _tick_price), 2: (4, _tick_size), 46: (4, _tick_string),
                            45: (4, _tick_generic), 99: (0, _tick_by_tick)}
_FAST: dict[bytes, _Fast] = {str(k).encode(): v for k, v in _BY_ID.items()}


def _shape(entry: _Fast, fields: list[bytes], i: int) -> bool:
    """Has the message exactly the fields ``entry`` reads (from index ``i``)?"""
    count = entry[0] or (_TBT_FIELDS.get(fields[i + 1], -1) if len(fields) > i + 1 else -1)
    return len(fields) == count + i


def decode_fast(fields: list[bytes], sink: Sink, version: int) -> bool:
    """Emit the events of a hot message and return True; False leaves it to IB's decoder
    (including any frame whose shape is not exactly the one handled here)."""
    entry = _FAST.get(fields[0])
    if entry is None or not _shape(entry, fields, 1):
        return False
    entry[1](fields, 1, sink, version)
    return True


def decode_fast_binary(msg_id: int, fields: list[bytes], sink: Sink, version: int) -> bool:
    """``decode_fast`` for a text frame of server version 201+: the id came as 4 binary bytes,
    ``fields`` are the ones after it."""
    entry = _BY_ID.get(msg_id)
    if entry is None or not _shape(entry, fields, 0):
        return False
    entry[1](fields, 0, sink, version)
    return True
