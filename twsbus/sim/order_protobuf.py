"""The protobuf forms of openOrder (server version 203+) and completedOrder (204+), built from
the order model: ``OpenOrder`` / ``CompletedOrder`` with their ``Contract``, ``Order`` and
``OrderState`` messages.

The text forms (``order_encoding``) are flat rows whose sections depend on the order; here every
attribute the client sent (``SimOrder.p``, keyed by IB's Order field names, which the schema
shares) goes into the field of the same name, unset values stay absent, and booleans are written
only when true, as IB's own client writes them; order conditions go from the text fields the
client sent into ``OrderCondition`` messages.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from twsbus.sim.pb_replies import put
from twsbus.sim.requests.order_text import CONDITION_FIELDS
from twsbus.sim.values import qty, tws_time
from twsbus.sim.wire import UNSET_DOUBLE, UNSET_INTEGER

if TYPE_CHECKING:
    from twsbus.sim.order_model import SimOrder

_SKIP = frozenset({"transmit", "conditions", "softDollarTier", "orderId", "clientId", "permId",
                   "account", "totalQuantity", "filledQuantity", "parentPermId"})
#: Unset on the text wire reads as 0 in IB's decoder; TWS reports 0 for these.
_ZERO_WHEN_UNSET = ("volatilityType", "referencePriceType")
#: What the text completedOrder does not carry either.
_NOT_COMPLETED = frozenset({"usePriceMgmtAlgo"})
_MARGINS = ("initMarginBefore", "maintMarginBefore", "equityWithLoanBefore", "initMarginChange",
            "maintMarginChange", "equityWithLoanChange", "initMarginAfter", "maintMarginAfter",
            "equityWithLoanAfter")


def _contract(message: Any, o: SimOrder) -> None:
    i = o.inst
    for name, value in (("conId", i.con_id), ("symbol", i.symbol), ("secType", i.sec_type),
                        ("lastTradeDateOrContractMonth", i.expiry), ("strike", i.strike),
                        ("right", i.right), ("multiplier", i.multiplier),
                        ("exchange", o.p.get("exchange") or i.exchange),
                        ("currency", i.currency), ("localSymbol", i.local_symbol),
                        ("tradingClass", i.trading_class)):
        put(message, name, value)


def _order(message: Any, v: int, o: SimOrder, skip: frozenset[str] = _SKIP) -> None:
    fields = message.DESCRIPTOR.fields_by_name
    for name, value in o.p.items():
        fd = fields.get(name)
        if fd is None or name in skip or value is None or value == "":
            continue
        if fd.message_type is not None:
            if fd.message_type.GetOptions().map_entry:
                for tag, tag_value in value:
                    getattr(message, name)[tag] = tag_value
            continue
        if fd.type == fd.TYPE_BOOL:
            if value:
                setattr(message, name, True)
            continue
        if value in (UNSET_DOUBLE, UNSET_INTEGER):
            continue
        put(message, name, format(value.normalize(), "f") if isinstance(value, Decimal)
            else value)
    _conditions(message, o)
    for name in _ZERO_WHEN_UNSET:
        if not message.HasField(name):
            setattr(message, name, 0)
    put(message, "orderId", o.order_id)
    put(message, "clientId", o.client_id)
    put(message, "permId", o.perm_id)
    put(message, "account", o.account)
    put(message, "totalQuantity", qty(v, o.p["totalQuantity"]))


def _conditions(message: Any, o: SimOrder) -> None:
    """The order's conditions, kept as the client wrote them on the text wire (type, connector,
    fields), into ``Order.conditions``."""
    for kind, connector, *fields in o.p.get("conditions") or []:
        condition = message.conditions.add()
        condition.type = int(kind)
        condition.isConjunctionConnection = str(connector).lower() == "a"
        for name, value in zip(CONDITION_FIELDS.get(int(kind), ()), fields, strict=False):
            put(condition, name, value)


def _state(message: Any, o: SimOrder, commission: bool = True) -> None:
    put(message, "status", o.status)
    for key, value in (o.margins or {}).items():
        if key in _MARGINS:
            put(message, key, value)
    if o.margins:
        put(message, "marginCurrency", o.inst.currency)
    if commission and o.commission is not None:
        put(message, "commissionAndFees", o.commission)
        put(message, "commissionAndFeesCurrency", o.inst.currency)


def open_order(v: int, o: SimOrder, message: Any) -> Any:
    put(message, "orderId", o.order_id)
    _contract(message.contract, o)
    _order(message.order, v, o)
    _state(message.orderState, o)
    return message


def completed_order(v: int, o: SimOrder, message: Any, zone: str = "US/Eastern") -> Any:
    _contract(message.contract, o)
    _order(message.order, v, o, _SKIP | _NOT_COMPLETED)
    message.order.ClearField("orderId")  # a completed order is known by its permId
    put(message.order, "filledQuantity", qty(v, o.filled))
    put(message.order, "parentPermId", o.parent_perm_id)
    _state(message.orderState, o, commission=False)
    put(message.orderState, "completedTime", tws_time(v, o.completed_at or time.time(), zone))
    put(message.orderState, "completedStatus", o.completed_status)
    return message
