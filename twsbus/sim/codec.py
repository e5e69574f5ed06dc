"""Messages to and from bytes per negotiated server version: the text wire and the protobuf wire.

Up to version 200 a message is its numeric id and fields as NUL-terminated text (``wire``). From
201 (``MIN_SERVER_VER_PROTOBUF``) every message in both directions starts with its id as 4 binary
bytes; an id above 200 (id + 200) carries a protobuf body instead of text. Which messages are
protobuf depends on the version: requests switch when IB's client switches them (``requests``),
replies when TWS does, family by family (``REPLIES`` below: 201 errors and executions, 203
orders, 205 contract data, 206 market data with depth and option computations, 207 accounts and
positions, 208 historical data, 209 news, 210 scanner, fundamentals and PnL, 212 reference data,
213 the session's own messages and the depth exchanges; the nested ones in ``pb_replies`` and
``pb_reference``). A reply without a protobuf form here (none the simulator sends today) would go
as text with a binary id, which IB's decoder reads at any version.

Handlers keep writing text fields in the version-200 layout; this module turns those into the
protobuf message field by field, with IB's generated schemas (imported on first use). What a
version changes in the values themselves (time stamps, volume units, odd lots) is ``values``.
An incoming frame becomes an ``Incoming``: its message id and either its text fields or its
protobuf body, which the typed requests above this layer (``requests``) read.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any, NamedTuple

from twsbus.sim import pb_reference, pb_replies, wire
from twsbus.sim.msgids import ToClient

PROTOBUF_FROM = 201
PROTOBUF_MSG_ID = 200
#: The highest server version the simulator speaks (what ibapi 10.46 offers).
MAX_VERSION = 225
#: Environment override of the simulator's default highest version (tests, CI matrix).
MAX_VERSION_ENV = "TWSBUS_SIM_MAX_VERSION"

T = ToClient
#: reply id -> (protobuf message, first version sent as protobuf, leading text fields to skip
#: (the id, and the per-message version where there is one), protobuf field per text field)
REPLIES: dict[int, tuple[str, int, int, tuple[str, ...]]] = {
    T.ERR_MSG: ("ErrorMessage", 201, 1,
                ("id", "errorCode", "errorMsg", "advancedOrderRejectJson", "errorTime")),
    T.EXECUTION_DATA_END: ("ExecutionDetailsEnd", 201, 2, ("reqId",)),
    T.ORDER_STATUS: ("OrderStatus", 203, 1,
                     ("orderId", "status", "filled", "remaining", "avgFillPrice", "permId",
                      "parentId", "lastFillPrice", "clientId", "whyHeld", "mktCapPrice")),
    T.OPEN_ORDER_END: ("OpenOrdersEnd", 203, 2, ()),
    T.COMPLETED_ORDERS_END: ("CompletedOrdersEnd", 204, 1, ()),
    T.CONTRACT_DATA_END: ("ContractDataEnd", 205, 2, ("reqId",)),
    T.TICK_PRICE: ("TickPrice", 206, 2, ("reqId", "tickType", "price", "size", "attrMask")),
    T.TICK_SIZE: ("TickSize", 206, 2, ("reqId", "tickType", "size")),
    T.TICK_STRING: ("TickString", 206, 2, ("reqId", "tickType", "value")),
    T.TICK_GENERIC: ("TickGeneric", 206, 2, ("reqId", "tickType", "value")),
    T.TICK_SNAPSHOT_END: ("TickSnapshotEnd", 206, 2, ("reqId",)),
    T.MARKET_DATA_TYPE: ("MarketDataType", 206, 2, ("reqId", "marketDataType")),
    T.TICK_REQ_PARAMS: ("TickReqParams", 206, 1,
                        ("reqId", "minTick", "bboExchange", "snapshotPermissions")),
    T.MANAGED_ACCTS: ("ManagedAccounts", 207, 2, ("accountsList",)),
    T.POSITION_END: ("PositionEnd", 207, 2, ()),
    T.POSITION_MULTI_END: ("PositionMultiEnd", 207, 2, ("reqId",)),
    T.ACCOUNT_SUMMARY: ("AccountSummary", 207, 2,
                        ("reqId", "account", "tag", "value", "currency")),
    T.ACCOUNT_SUMMARY_END: ("AccountSummaryEnd", 207, 2, ("reqId",)),
    T.ACCT_VALUE: ("AccountValue", 207, 2, ("key", "value", "currency", "accountName")),
    T.ACCT_UPDATE_TIME: ("AccountUpdateTime", 207, 2, ("timeStamp",)),
    T.ACCT_DOWNLOAD_END: ("AccountDataEnd", 207, 2, ("accountName",)),
    T.ACCOUNT_UPDATE_MULTI: ("AccountUpdateMulti", 207, 2,
                             ("reqId", "account", "modelCode", "key", "value", "currency")),
    T.ACCOUNT_UPDATE_MULTI_END: ("AccountUpdateMultiEnd", 207, 2, ("reqId",)),
    T.HISTORICAL_DATA_END: ("HistoricalDataEnd", 208, 1, ("reqId", "startDateStr", "endDateStr")),
    T.HEAD_TIMESTAMP: ("HeadTimestamp", 208, 1, ("reqId", "headTimestamp")),
    T.NEWS_ARTICLE: ("NewsArticle", 209, 1, ("reqId", "articleType", "articleText")),
    T.HISTORICAL_NEWS: ("HistoricalNews", 209, 1,
                        ("reqId", "time", "providerCode", "articleId", "headline")),
    T.HISTORICAL_NEWS_END: ("HistoricalNewsEnd", 209, 1, ("reqId", "hasMore")),
    T.SCANNER_PARAMETERS: ("ScannerParameters", 210, 2, ("xml",)),
    T.FUNDAMENTAL_DATA: ("FundamentalsData", 210, 2, ("reqId", "data")),
    T.PNL: ("PnL", 210, 1, ("reqId", "dailyPnL", "unrealizedPnL", "realizedPnL")),
    T.PNL_SINGLE: ("PnLSingle", 210, 1,
                   ("reqId", "position", "dailyPnL", "unrealizedPnL", "realizedPnL", "value")),
    T.SECURITY_DEFINITION_OPTION_PARAMETER_END: ("SecDefOptParameterEnd", 212, 1, ("reqId",)),
    T.USER_INFO: ("UserInfo", 212, 1, ("reqId", "whiteBrandingId")),
    T.NEXT_VALID_ID: ("NextValidId", 213, 2, ("orderId",)),
    T.CURRENT_TIME: ("CurrentTime", 213, 2, ("currentTime",)),
    T.CURRENT_TIME_IN_MILLIS: ("CurrentTimeInMillis", 213, 1, ("currentTimeInMillis",)),
}


#: Replies with nested or repeated fields: reply id -> (protobuf message, first version, encoder).
NESTED = {**pb_replies.NESTED, **pb_reference.NESTED}

#: Replies built from a model rather than from their text fields (``order_encoding.ModelRow``).
MODEL_REPLIES: dict[int, tuple[str, int]] = {
    T.OPEN_ORDER: ("OpenOrder", 203),
    T.COMPLETED_ORDER: ("CompletedOrder", 204),
}


def default_max_version() -> int:
    """200 (the last text version) unless ``TWSBUS_SIM_MAX_VERSION`` says otherwise."""
    text = os.environ.get(MAX_VERSION_ENV, "").strip()
    if not text:
        return 200
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{MAX_VERSION_ENV}={text!r} is not a server version") from None
    if not 100 <= value <= MAX_VERSION:
        raise ValueError(f"{MAX_VERSION_ENV}={value} is outside 100..{MAX_VERSION}")
    return value


class Incoming(NamedTuple):
    """A request frame as it came off the wire: its message id (without the +200 of a protobuf
    one), and its text fields or, for a protobuf request, its body."""

    msg_id: int
    fields: list[str]
    body: bytes | None = None


def warm_up() -> None:
    """Import every reply schema now rather than on a session's first protobuf message: a first
    import costs tens of milliseconds (``requests.warm_up`` does the same for requests)."""
    for name, *_ in (*REPLIES.values(), *NESTED.values(), *MODEL_REPLIES.values()):
        schema(name)


def is_protobuf(version: int, msg_id: int) -> bool:
    """Whether the reply ``msg_id`` goes as protobuf at ``version``."""
    entry = REPLIES.get(msg_id) or NESTED.get(msg_id) or MODEL_REPLIES.get(msg_id)
    return entry is not None and version >= entry[1]


def encode(version: int, fields: tuple[object, ...] | list[object]) -> bytes:
    """One framed reply for a session at ``version``."""
    if version < PROTOBUF_FROM:
        return wire.encode(fields)
    msg_id = int(fields[0])  # type: ignore[call-overload]
    entry = REPLIES.get(msg_id)
    if entry is not None and version >= entry[1]:
        body = _protobuf(entry, fields)
        return wire.frame((msg_id + PROTOBUF_MSG_ID).to_bytes(4, "big") + body)
    model = MODEL_REPLIES.get(msg_id)
    build = getattr(fields, "protobuf", None)
    if model is not None and build is not None and version >= model[1]:
        body = bytes(build(schema(model[0])()).SerializeToString())
        return wire.frame((msg_id + PROTOBUF_MSG_ID).to_bytes(4, "big") + body)
    nested = NESTED.get(msg_id)
    if nested is not None and version >= nested[1]:
        body = pb_replies.encode(schema(nested[0])(), nested[2], fields)
        return wire.frame((msg_id + PROTOBUF_MSG_ID).to_bytes(4, "big") + body)
    return wire.frame(msg_id.to_bytes(4, "big") + wire.payload(fields[1:]))


def decode(version: int, payload: bytes) -> Incoming | None:
    """A request frame, whichever wire it came on (None for an empty text frame)."""
    if version < PROTOBUF_FROM:
        fields = wire.split_fields(payload)
        if not fields:
            return None
        try:
            return Incoming(int(fields[0]), fields[1:])
        except ValueError:
            raise wire.ProtocolError(f"non-numeric message id {fields[0]!r}") from None
    if len(payload) < 4:
        raise wire.ProtocolError(f"frame of {len(payload)} bytes has no message id")
    msg_id = int.from_bytes(payload[:4], "big")
    if msg_id > PROTOBUF_MSG_ID:
        return Incoming(msg_id - PROTOBUF_MSG_ID, [], payload[4:])
    return Incoming(msg_id, wire.split_fields(payload[4:]))


@functools.cache
def schema(name: str) -> Any:
    """IB's generated protobuf class ``name`` (imported on first use: 9.81 has none)."""
    return getattr(importlib.import_module(f"ibapi.protobuf.{name}_pb2"), name)


def _protobuf(entry: tuple[str, int, int, tuple[str, ...]],
              fields: tuple[object, ...] | list[object]) -> bytes:
    message_name, _, skip, names = entry
    message = schema(message_name)()
    for name, value in zip(names, fields[skip:], strict=False):
        pb_replies.put(message, name, value)
    return bytes(message.SerializeToString())
