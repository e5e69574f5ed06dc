"""Typed order requests: placeOrder (read by ``order_text`` off the text wire, here off the
protobuf one), cancelOrder, the open / completed order lists, auto-binding, executions and the
global cancel.

A protobuf placeOrder carries IB's ``Order`` message; it becomes the same order fields the text
reader builds, as the text request would carry them at version 200: a field absent from the
message is what IB's ``Order`` holds by default, a boolean absent is false, and a field the text
request leaves out for this order (delta-neutral details without a delta-neutral order type,
algo parameters without an algo...) stays at its default. Conditions become the text fields IB's
client writes for them.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import msgspec

from twsbus.sim.msgids import FromClient as F
from twsbus.sim.requests.base import Contract, IdRequest, Request, contract_from_protobuf, spec
from twsbus.sim.requests.order_text import (
    CONDITION_FIELDS,
    OrderFields,
    UnreadableOrder,
    order_defaults,
    parse_place_order,
)
from twsbus.sim.wire import UNSET_DOUBLE, UNSET_INTEGER, Fields

V_CME_TAGGING = 192  # cancelOrder loses its version field
V_PARAMETRIZED_DAYS_OF_EXECUTIONS = 200


class PlaceOrder(Request, frozen=True):
    orderId: int = 0
    contract: Contract = Contract()
    #: IB's Order field names -> values, as ``order_text.order_defaults`` lays them out.
    order: OrderFields = msgspec.field(default_factory=order_defaults)


class UnreadablePlaceOrder(Request, frozen=True):
    """A placeOrder whose fields cannot be read: TWS refuses it with ``code`` for its id."""

    orderId: int = -1
    code: int = 0
    message: str = ""


class CancelOrder(Request, frozen=True):
    orderId: int = 0


class ReqGlobalCancel(Request, frozen=True):
    pass


class ReqOpenOrders(Request, frozen=True):
    pass


class ReqAllOpenOrders(Request, frozen=True):
    pass


class ReqAutoOpenOrders(Request, frozen=True):
    bAutoBind: bool = False


class ReqCompletedOrders(Request, frozen=True):
    apiOnly: bool = False


class ExecutionFilter(msgspec.Struct, frozen=True, kw_only=True):
    clientId: int = 0
    acctCode: str = ""
    time: str = ""
    symbol: str = ""
    secType: str = ""
    exchange: str = ""
    side: str = ""
    lastNDays: int = UNSET_INTEGER
    specificDates: tuple[str, ...] = ()


class ReqExecutions(IdRequest, frozen=True):
    execFilter: ExecutionFilter = ExecutionFilter()


def _place_order(f: Fields, v: int) -> PlaceOrder | UnreadablePlaceOrder:
    try:
        order_id, contract, p = parse_place_order(f, v)
    except UnreadableOrder as exc:
        return UnreadablePlaceOrder(orderId=exc.order_id, code=exc.code, message=str(exc))
    return PlaceOrder(orderId=order_id, contract=contract, order=p)


def _cancel_order(f: Fields, v: int) -> CancelOrder:
    if v < V_CME_TAGGING:
        f.skip()  # version
    # manualOrderCancelTime (169+), RFQ fields (187-189), extOperator + manualOrderIndicator
    # (192+) follow; the simulator has no use for them.
    return CancelOrder(orderId=f.int())


def _executions(f: Fields, v: int) -> ReqExecutions:
    f.skip()  # version
    req_id = f.int()
    values: dict[str, Any] = {"clientId": f.int()}
    for name in ("acctCode", "time", "symbol", "secType", "exchange", "side"):
        values[name] = f.str()
    if v >= V_PARAMETRIZED_DAYS_OF_EXECUTIONS:
        values["lastNDays"] = f.int(UNSET_INTEGER)
        values["specificDates"] = tuple(f.str() for _ in range(max(0, f.int())))
    return ReqExecutions(reqId=req_id, execFilter=ExecutionFilter(**values))


# ---- placeOrder off the protobuf wire --------------------------------------------------------

#: What a field absent from the message reads as, where IB's Order default differs from
#: ``order_defaults`` (the values for fields a text version omits).
_ABSENT: OrderFields = {
    "displaySize": 0, "triggerMethod": 0, "totalQuantity": Decimal(2**127 - 1),
    "overridePercentageConstraints": False, "scaleTable": "", "activeStartTime": "",
    "activeStopTime": "", "algoId": "", "orderMiscOptions": "", "mifid2DecisionMaker": "",
    "mifid2DecisionAlgo": "", "mifid2ExecutionTrader": "", "mifid2ExecutionAlgo": "",
    "advancedErrorOverride": "", "manualOrderTime": "",
}
#: Fields the text request carries only when another says so: (fields, does it carry them?).
_CARRIED_IF = (
    (("deltaNeutralConId", "deltaNeutralSettlingFirm", "deltaNeutralClearingAccount",
      "deltaNeutralClearingIntent", "deltaNeutralOpenClose", "deltaNeutralShortSale",
      "deltaNeutralShortSaleSlot", "deltaNeutralDesignatedLocation"),
     lambda p, c: bool(p["deltaNeutralOrderType"])),
    (("scalePriceAdjustValue", "scalePriceAdjustInterval", "scaleProfitOffset",
      "scaleAutoReset", "scaleInitPosition", "scaleInitFillQty", "scaleRandomPercent"),
     lambda p, c: p["scalePriceIncrement"] != UNSET_DOUBLE and p["scalePriceIncrement"] > 0),
    (("hedgeParam",), lambda p, c: bool(p["hedgeType"])),
    (("algoParams",), lambda p, c: bool(p["algoStrategy"])),
    (("smartComboRoutingParams",), lambda p, c: c.secType.upper() == "BAG"),
    (("referenceContractId", "isPeggedChangeAmountDecrease", "peggedChangeAmount",
      "referenceChangeAmount", "referenceExchangeId"),
     lambda p, c: p["orderType"] in ("PEG BENCH", "PEGBENCH")),
    (("conditionsIgnoreRth", "conditionsCancelOrder"), lambda p, c: bool(p["conditions"])),
    (("minTradeQty",), lambda p, c: c.exchange == "IBKRATS"),
    (("minCompeteSize", "competeAgainstBestOffset"),
     lambda p, c: p["orderType"] in ("PEG BEST", "PEGBEST")),
    (("midOffsetAtWhole", "midOffsetAtHalf"),
     lambda p, c: p["orderType"] in ("PEG MID", "PEGMID") or (
         p["orderType"] in ("PEG BEST", "PEGBEST") and math.isinf(p["competeAgainstBestOffset"])
         and p["competeAgainstBestOffset"] != UNSET_DOUBLE)),
)
def _value(current: Any, value: Any) -> Any:
    """A protobuf value in the type the text reader gives the field."""
    if isinstance(current, bool):
        return bool(value)
    if isinstance(current, Decimal):
        return Decimal(value)
    if isinstance(current, float):
        if math.isnan(value):
            raise UnreadableOrder.unparsable("NaN")
        return float(value)
    return type(current)(value)


def _text(value: Any) -> str:
    return str(int(value)) if isinstance(value, bool) else str(value)


def _conditions(proto: Any) -> list[list[str]]:
    out = []
    for c in proto.conditions:
        kind = c.type if c.HasField("type") else 0
        if kind in CONDITION_FIELDS:
            connector = "o" if c.HasField("isConjunctionConnection") and \
                not c.isConjunctionConnection else "a"
            out.append([str(kind), connector,
                        *(_text(getattr(c, name)) for name in CONDITION_FIELDS[kind])])
    return out


def _order(proto: Any, contract: Contract) -> OrderFields:
    p = order_defaults()
    p.update(_ABSENT)
    p["exchange"] = contract.exchange
    fields = proto.DESCRIPTOR.fields_by_name
    for name, current in list(p.items()):
        fd = fields.get(name)
        if fd is None or name == "conditions":
            continue
        value = getattr(proto, name)
        if fd.message_type is not None:
            if fd.message_type.GetOptions().map_entry and value:
                pairs = list(value.items())
                p[name] = "".join(f"{k}={v};" for k, v in pairs) \
                    if name == "orderMiscOptions" else pairs
        elif fd.type == fd.TYPE_BOOL:
            p[name] = bool(value)  # IB's client writes a bool only when it is true
        elif proto.HasField(name):
            p[name] = _value(current, value)
    p["conditions"] = _conditions(proto)
    defaults = order_defaults()
    for names, carried in _CARRIED_IF:
        if not carried(p, contract):
            p.update({name: defaults[name] for name in names})
    return p


def _place_order_protobuf(message: Any) -> PlaceOrder | UnreadablePlaceOrder:
    contract = contract_from_protobuf(message.contract)
    try:
        p = _order(message.order, contract)
    except UnreadableOrder as exc:
        return UnreadablePlaceOrder(orderId=message.orderId, code=exc.code, message=str(exc))
    if message.contract.HasField("deltaNeutralContract"):
        dn = message.contract.deltaNeutralContract
        p["deltaNeutralContract"] = (dn.conId, dn.delta, dn.price)
    return PlaceOrder(orderId=message.orderId, contract=contract, order=p)


SPECS = {
    F.PLACE_ORDER: spec(PlaceOrder, "PlaceOrderRequest", _place_order,
                        protobuf=_place_order_protobuf),
    F.CANCEL_ORDER: spec(CancelOrder, "CancelOrderRequest", _cancel_order),
    F.REQ_GLOBAL_CANCEL: spec(ReqGlobalCancel, "GlobalCancelRequest"),
    F.REQ_OPEN_ORDERS: spec(ReqOpenOrders, "OpenOrdersRequest"),
    F.REQ_ALL_OPEN_ORDERS: spec(ReqAllOpenOrders, "AllOpenOrdersRequest"),
    F.REQ_AUTO_OPEN_ORDERS: spec(ReqAutoOpenOrders, "AutoOpenOrdersRequest",
                                ("_", "bAutoBind"), {"bAutoBind": "autoBind"}),
    F.REQ_COMPLETED_ORDERS: spec(ReqCompletedOrders, "CompletedOrdersRequest", ("apiOnly",)),
    F.REQ_EXECUTIONS: spec(ReqExecutions, "ExecutionRequest", _executions,
                           {"execFilter": "executionFilter"}),
}
