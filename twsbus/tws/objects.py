"""Conversion between our wire types and ibapi's objects, both ways, at the TWS boundary.

Outbound: ``call_args`` turns a query's validated arguments (msgspec structs, dicts, plain values)
into the positional arguments of an ``EClient`` method, building IB's ``Contract``, ``Order``,
``ExecutionFilter``, ``ScannerSubscription``, ``TagValue`` and ``OrderCancel`` objects, and
filling parameters the installed ibapi has but the caller did not give (``orderCancel`` exists
only in 10.x) with IB's defaults. Inbound: ``to_plain`` turns whatever a callback received (IB
objects, Decimals, sets, IB's "unset" sentinels) into JSON-ready builtins under IB's own field
names.
"""

from __future__ import annotations

import enum
import functools
import inspect
import sys
from decimal import Decimal
from typing import Any

import msgspec
from ibapi import get_version_string
from ibapi.client import EClient
from ibapi.contract import Contract as IBContract
from ibapi.execution import ExecutionFilter as IBExecutionFilter
from ibapi.order import Order as IBOrder
from ibapi.scanner import ScannerSubscription as IBScannerSubscription
from ibapi.tag_value import TagValue as IBTagValue

from twsbus import messages
from twsbus.errors import BadRequest
from twsbus.orders.model import Order, as_order, order_fields

try:  # 10.x only
    from ibapi.order_cancel import OrderCancel as IBOrderCancel
except ImportError:  # pragma: no cover - ibapi 9.81
    IBOrderCancel = None

UNSET_DOUBLE = sys.float_info.max
UNSET_INTEGER = 2**31 - 1
UNSET_LONG = 2**63 - 1
UNSET_DECIMAL = Decimal(2**127 - 1)

#: Parameters that carry the request id the daemon allocates.
ID_PARAMS = ("reqId", "tickerId", "orderId", "requestId", "id")


#: ibapi 9.81's names for fields 10.x renamed: replies use the current names whatever is installed.
_RENAMES = {"BarData": {"average": "wap"}, "HistogramData": {"count": "size"}}


# ---- inbound ----------------------------------------------------------------------------------


def to_plain(value: Any) -> Any:
    """IB callback values as JSON-ready builtins; IB's unset sentinels become None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return None if value in (UNSET_INTEGER, UNSET_LONG) else value
    if isinstance(value, float):
        if value == UNSET_DOUBLE or value != value:
            return None
        return value
    if isinstance(value, Decimal):
        if value == UNSET_DECIMAL or value.is_nan():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, enum.Enum):  # 10.x's fund and exercise types: (code, description)
        text = enum_text(value)
        return None if text == "None" else text
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if hasattr(value, "__dict__"):
        renames = _RENAMES.get(type(value).__name__, {})
        out = {}
        for k, v in vars(value).items():
            if k.startswith("_"):
                continue
            plain = to_plain(v)
            if plain is not None:
                out[renames.get(k, k)] = plain
        return out
    return str(value)


def enum_text(member: enum.Enum) -> str:
    """An ibapi enum member as published: its description (IB's values are (code, description)
    tuples, or plain codes)."""
    value = member.value
    while isinstance(value, tuple) and value:
        value = value[-1]
    return str(value)


# ---- outbound ---------------------------------------------------------------------------------


@functools.cache
def _signature(method: str) -> list[inspect.Parameter]:
    fn = getattr(EClient, method, None)
    if fn is None:
        raise AttributeError(f"this ibapi has no EClient.{method}")
    return [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def has_method(method: str) -> bool:
    return hasattr(EClient, method)


def call_args(method: str, key: int | None, args: dict[str, Any]) -> list[Any]:
    """Positional arguments for ``EClient.<method>``: the id first (when the method takes one),
    then each parameter from ``args`` (converted to IB's objects) or its default."""
    out: list[Any] = []
    for i, param in enumerate(_signature(method)):
        if i == 0 and key is not None and param.name in ID_PARAMS and param.name not in args:
            out.append(key)
        elif param.name in args:
            out.append(to_ib(args[param.name], param.annotation))
        elif param.default is not inspect.Parameter.empty:
            out.append(param.default)
        elif IBOrderCancel is not None and param.annotation is IBOrderCancel:
            out.append(IBOrderCancel())
        elif param.annotation is list:
            out.append([])
        else:
            raise BadRequest(f"missing argument {param.name!r} for {method}")
    return out


def to_ib(value: Any, annotation: Any = None) -> Any:
    if isinstance(value, messages.Contract):
        return contract(value)
    if isinstance(value, messages.ExecFilter):
        return _copy_onto(IBExecutionFilter(), msgspec.structs.asdict(value))
    if isinstance(value, messages.ScannerSubscription):  # None fields stay at ibapi's unset
        return _copy_onto(IBScannerSubscription(), {
            k: v for k, v in msgspec.structs.asdict(value).items() if v is not None})
    if isinstance(value, messages.OrderCancel):
        if IBOrderCancel is None:
            return None
        return _copy_onto(IBOrderCancel(), msgspec.to_builtins(value))
    if isinstance(value, list) and value and isinstance(value[0], messages.TagValue):
        return [IBTagValue(tv.tag, tv.value) for tv in value]
    if isinstance(value, Order) or annotation is IBOrder or (
            isinstance(value, dict) and annotation is not dict):
        return order(value)
    return value


def contract(spec: messages.Contract) -> IBContract:
    return _copy_onto(IBContract(), msgspec.structs.asdict(spec))


#: ibapi 9.81's Order still carries the deprecated eTradeOnly/firmQuoteOnly flags.
_LEGACY_ORDER_FLAGS = hasattr(IBOrder(), "eTradeOnly")


def order(spec: Order | dict[str, Any]) -> IBOrder:
    """IB's Order with exactly the fields the caller gave, every other one at ibapi's default.

    ``spec`` (a typed Order or its JSON object) is validated again here, the last stop before
    TWS: wrong types, non-finite numbers and unprintable strings are a 400 naming the field, and
    so is a field the installed ibapi does not have. Quantities become Decimal where this ibapi
    types them so (10.x) and stay int/float where it does not (9.81). ``totalQuantity`` is never
    left at ibapi's placeholder (10.x: UNSET_DECIMAL, 2**127-1, which ibapi would send as a size;
    9.81: 0): an order sized by ``cashQty`` sends 0 as IB's samples do, an order with neither is
    refused."""
    given = order_fields(as_order(spec))
    ib = IBOrder()
    defaults = dict(vars(ib))
    absent = sorted(name for name in given if name not in defaults)
    if absent:
        raise BadRequest(f"order field(s) {', '.join(absent)}: not supported by the installed "
                         f"ibapi {get_version_string()}")
    for name, value in given.items():
        setattr(ib, name, _ib_value(name, value, defaults[name]))
    if "totalQuantity" not in given:
        if "cashQty" not in given:
            raise BadRequest("order.totalQuantity: required, a number > 0 (or cashQty for an "
                             "order sized in cash); an order is never sent without a size")
        ib.totalQuantity = _ib_value("totalQuantity", 0.0, defaults["totalQuantity"])
    if _LEGACY_ORDER_FLAGS:
        # ibapi 9.81 defaults these to True and sends them; TWS has refused them since 2022
        # (error 10268 "The 'EtradeOnly' order attribute is not supported"). 10.x always
        # sends False.
        ib.eTradeOnly = ib.firmQuoteOnly = False
    return ib


def _ib_value(name: str, value: Any, default: Any) -> Any:
    """A validated order value as the installed ibapi types the field (``default``)."""
    if isinstance(value, list):  # algoParams, smartComboRoutingParams
        return [IBTagValue(tv.tag, tv.value) for tv in value]
    if isinstance(default, Decimal):  # 10.x quantities
        return Decimal(int(value)) if float(value).is_integer() else Decimal(repr(float(value)))
    if name == "totalQuantity":  # 9.81: an int by default, a float when fractional
        return int(value) if float(value).is_integer() else float(value)
    return value


def _copy_onto(obj: Any, fields: dict[str, Any]) -> Any:
    for name, value in fields.items():
        setattr(obj, name, value)
    return obj
