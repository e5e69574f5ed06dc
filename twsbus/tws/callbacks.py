"""EWrapper callbacks normalised into ``Event``s: the one place ibapi versions are reconciled.

``EventWrapper`` is an ``EWrapper`` whose every callback becomes ``Event(name, key, data)``:
``key`` is the request id the callback carries (reqId, tickerId, requestId, orderId) or None,
``data`` the remaining arguments by IB's parameter names, already plain (see objects.to_plain).
Differences between ibapi 9.81 and 10.x are settled here: ``error`` gained errorTime and
advancedOrderRejectJson, ``commissionReport`` became ``commissionAndFeesReport`` (its
``commission`` field ``commissionAndFees``), sizes became Decimal, smartComponents is a list on
the text wire and a map on the protobuf one, and 10.x's protobuf messages
(server version 201+) raise a ``*ProtoBuf`` callback before the classic one: those are ignored.
Downstream code sees one shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import msgspec
from ibapi.wrapper import EWrapper

from twsbus.tws.objects import ID_PARAMS, to_plain
from twsbus.tws.ticks import field_name


class Event(msgspec.Struct, gc=False):
    name: str
    key: int | None
    data: dict[str, Any]


Sink = Callable[[Event], None]

#: Callbacks whose first parameter is named like an id but is not a request key.
_NOT_KEYED = frozenset({"nextValidId", "orderBound"})
_RENAMES = {"commissionAndFeesReport": "commissionReport"}
_SPECIAL = frozenset({"error", "commissionAndFeesReport", "commissionReport", "logAnswer",
                      "smartComponents", "tickPrice", "tickSize", "tickString", "tickGeneric"})


class EventWrapper(EWrapper):
    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.sink = sink

    def error(self, reqId: Any, *args: Any) -> None:
        # 10.x: (reqId, errorTime, errorCode, errorString, advancedOrderRejectJson='')
        # 9.81: (reqId, errorCode, errorString)
        if len(args) >= 3 and isinstance(args[2], str):
            code, message = args[1], args[2]
            advanced = args[3] if len(args) > 3 else ""
        else:
            code, message, advanced = args[0], args[1], ""
        data = {"code": int(code), "message": str(message)}
        if advanced:
            data["advancedOrderRejectJson"] = advanced
        key = int(reqId)
        self.sink(Event("error", None if key < 0 else key, data))

    def commissionAndFeesReport(self, commissionAndFeesReport: Any) -> None:
        report = to_plain(commissionAndFeesReport)
        if "commissionAndFees" in report:
            report["commission"] = report.pop("commissionAndFees")
        self.sink(Event("commissionReport", None, {"commissionReport": report}))

    def commissionReport(self, commissionReport: Any) -> None:
        self.sink(Event("commissionReport", None, {"commissionReport": to_plain(commissionReport)}))

    # The top-of-book callbacks are the hot path: written out, and tagged with IB's tick name.
    def tickPrice(self, reqId: int, tickType: int, price: float, attrib: Any) -> None:
        # attrib (canAutoExecute, pastLimit, preOpen) is left out: nothing downstream uses it.
        self.sink(Event("tickPrice", reqId if reqId >= 0 else None, {
            "tickType": tickType, "field": field_name(tickType), "price": to_plain(price)}))

    def tickSize(self, reqId: int, tickType: int, size: Any) -> None:
        self.sink(Event("tickSize", reqId if reqId >= 0 else None, {
            "tickType": tickType, "field": field_name(tickType), "size": to_plain(size)}))

    def tickString(self, reqId: int, tickType: int, value: str) -> None:
        self.sink(Event("tickString", reqId if reqId >= 0 else None, {
            "tickType": tickType, "field": field_name(tickType), "value": value}))

    def tickGeneric(self, reqId: int, tickType: int, value: float) -> None:
        self.sink(Event("tickGeneric", reqId if reqId >= 0 else None, {
            "tickType": tickType, "field": field_name(tickType), "value": to_plain(value)}))

    def smartComponents(self, reqId: int, smartComponentMap: Any) -> None:
        # The text decoder hands a list of SmartComponent objects; the protobuf one (server
        # version 212+) a {bitNumber: (exchange, exchangeLetter)} map. One shape: the list.
        if isinstance(smartComponentMap, dict):
            rows = [{"bitNumber": bit, "exchange": exchange, "exchangeLetter": letter}
                    for bit, (exchange, letter) in sorted(smartComponentMap.items())]
        else:
            rows = to_plain(smartComponentMap)
        self.sink(Event("smartComponents", reqId if reqId >= 0 else None,
                        {"smartComponentMap": rows}))

    def logAnswer(self, fnName: Any, fnParams: Any) -> None:
        return None  # ibapi's debug logging hook: nothing to forward


def _make_callback(name: str, params: list[str]) -> Callable[..., None]:
    keyed = bool(params) and params[0] in ID_PARAMS and name not in _NOT_KEYED
    # An order id is data as well as a key: replies about orders must name their order.
    skip = 1 if keyed and params[0] != "orderId" else 0
    names = params[skip:]
    public = _RENAMES.get(name, name)

    if keyed:
        def callback(self: EventWrapper, *args: Any) -> None:
            key = args[0]
            self.sink(Event(public, key if key is None or key >= 0 else None,
                            {n: to_plain(v) for n, v in zip(names, args[skip:], strict=False)}))
    else:
        def callback(self: EventWrapper, *args: Any) -> None:
            self.sink(Event(public, None,
                            {n: to_plain(v) for n, v in zip(names, args, strict=False)}))

    callback.__name__ = name
    return callback


def _ignore(self: EventWrapper, *args: Any) -> None:
    return None


for _name, _fn in inspect.getmembers(EWrapper, inspect.isfunction):
    if _name.startswith("_") or _name in _SPECIAL:
        continue
    if _name.endswith("ProtoBuf"):
        # ibapi 10.x hands each protobuf message to ``xxxProtoBuf(proto)`` and then to the
        # classic callback with decoded values: the classic one is the event, this a no-op.
        setattr(EventWrapper, _name, _ignore)
        continue
    _params = [p for p in inspect.signature(_fn).parameters if p != "self"]
    setattr(EventWrapper, _name, _make_callback(_name, _params))
