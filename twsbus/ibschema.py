"""msgspec types of what IB's callbacks hand the daemon, read off the installed ibapi.

A query's reply is what its EWrapper callbacks received, made plain (``tws.objects.to_plain``):
IB's objects become objects under IB's attribute names, Decimals numbers, enums their
description, sets sorted arrays, and IB's unset sentinels are left out (a callback's own argument,
unset, is null). So the types follow from what this module reads: the callbacks' annotated
signatures in ``ibapi.wrapper.EWrapper`` and the attributes of a fresh instance of each IB class.
Where those say too little (an annotation of only ``list``, an attribute that starts as None or
``[]``), ``_LIST_ITEMS`` and ``_ATTR_TYPES`` name the type.

``ib_struct(cls)`` is IB's class as the frozen struct ``Ib<Class>``: every field optional (UNSET
when left out), a field it does not know refused. ``data_params(callback)`` are the arguments the
daemon keeps of a callback, ``param_type(callback, name)`` the type of one. ``twsbus.replies``
builds each query op's reply type from them.
"""

from __future__ import annotations

import decimal
import enum
import functools
import importlib
import inspect
import types
from typing import Any, Literal, cast

import msgspec
from ibapi.wrapper import EWrapper

from twsbus.tws.objects import ID_PARAMS, enum_text

_TAG_VALUE = "ibapi.tag_value.TagValue"
#: Lists and sets whose element type nothing in ibapi says: (callback or IB class, parameter or
#: attribute) -> element type (an ibapi class by its dotted name, or a type).
_LIST_ITEMS: dict[tuple[str, str], Any] = {
    ("familyCodes", "familyCodes"): "ibapi.common.FamilyCode",
    ("newsProviders", "newsProviders"): "ibapi.common.NewsProvider",
    ("mktDepthExchanges", "depthMktDataDescriptions"): "ibapi.common.DepthMktDataDescription",
    ("softDollarTiers", "tiers"): "ibapi.softdollartier.SoftDollarTier",
    ("symbolSamples", "contractDescriptions"): "ibapi.contract.ContractDescription",
    ("marketRule", "priceIncrements"): "ibapi.common.PriceIncrement",
    ("historicalTicks", "ticks"): "ibapi.common.HistoricalTick",
    ("historicalTicksBidAsk", "ticks"): "ibapi.common.HistoricalTickBidAsk",
    ("historicalTicksLast", "ticks"): "ibapi.common.HistoricalTickLast",
    ("histogramData", "items"): "ibapi.common.HistogramData",
    # the daemon publishes the map as rows, whichever wire it came on (tws.callbacks)
    ("smartComponents", "smartComponentMap"): "ibapi.common.SmartComponent",
    ("securityDefinitionOptionParameter", "expirations"): str,
    ("securityDefinitionOptionParameter", "strikes"): float,
    ("ContractDescription", "derivativeSecTypes"): str,
    ("Contract", "comboLegs"): "ibapi.contract.ComboLeg",
    ("ContractDetails", "secIdList"): _TAG_VALUE,
    ("ContractDetails", "ineligibilityReasonList"):
        "ibapi.ineligibility_reason.IneligibilityReason",
    ("Order", "algoParams"): _TAG_VALUE,
    ("Order", "smartComboRoutingParams"): _TAG_VALUE,
    ("Order", "orderMiscOptions"): _TAG_VALUE,
    ("Order", "orderComboLegs"): "ibapi.order.OrderComboLeg",
    ("Order", "conditions"): dict[str, Any],  # OrderCondition's subclasses, each its own fields
    ("OrderState", "orderAllocations"): "ibapi.order_state.OrderAllocation",
}
#: IB attributes whose default does not say their type: (IB class, attribute) -> type.
_ATTR_TYPES: dict[tuple[str, str], Any] = {
    ("Contract", "deltaNeutralContract"): "ibapi.contract.DeltaNeutralContract",
    # a bool from the text wire, 0 or 1 from the protobuf one (server version 201+)
    ("Order", "routeMarketableToBbo"): bool | int,
    ("Order", "usePriceMgmtAlgo"): bool | int,
    ("Order", "seekPriceImprovement"): bool | int,
    # ibapi starts these at 0, an int, and decodes a float into them
    ("Order", "totalQuantity"): float,  # (9.81; 10.x: a Decimal)
    ("Order", "discretionaryAmt"): float,
    ("ContractDetails", "evMultiplier"): float,
    ("ContractDetails", "coupon"): float,
}
#: Callbacks whose first id-like parameter is data, not a request key (as in tws.callbacks).
_NOT_KEYED = frozenset({"nextValidId", "orderBound"})
#: ibapi 10.x names -> the names twsbus publishes (as in tws.callbacks and tws.objects).
_CALLBACK_NAMES = {"commissionReport": ("commissionAndFeesReport", "commissionReport")}
PARAM_RENAMES = {"commissionAndFeesReport": "commissionReport"}
_FIELD_RENAMES = {"BarData": {"average": "wap"}, "HistogramData": {"count": "size"},
                  "CommissionAndFeesReport": {"commissionAndFees": "commission"}}
#: How every reply struct is made: frozen, refusing fields it does not know, and shown as a
#: member of ``twsbus.replies`` (the public face of the reply types).
STRUCT_CONFIG: dict[str, Any] = {"kw_only": True, "frozen": True,
                                 "forbid_unknown_fields": True, "module": "twsbus.replies"}


@functools.cache
def ib_struct(cls: type) -> Any:
    """IB's class as the struct ``Ib<Class>``, under the names the daemon publishes."""
    renames = _FIELD_RENAMES.get(cls.__name__, {})
    fields = [(renames.get(attr, attr), _attr_type(cls.__name__, attr, default) | msgspec.UnsetType,
               msgspec.UNSET)
              for attr, default in vars(cls()).items() if not attr.startswith("_")]
    doc = f"IB's {cls.__name__}, under IB's attribute names; unset values are left out"
    return msgspec.defstruct(f"Ib{cls.__name__}", fields, namespace={"__doc__": doc},
                             **STRUCT_CONFIG)


def data_params(callback: str) -> list[str]:
    """The callback's parameters the daemon keeps as data (the request id is the key)."""
    params = [p for p in inspect.signature(_callback(callback)).parameters if p != "self"]
    if params and params[0] in ID_PARAMS and callback not in _NOT_KEYED \
            and params[0] != "orderId":
        params = params[1:]
    return params


def param_type(callback: str, name: str) -> Any:
    """The type of a callback's argument as published."""
    item = _LIST_ITEMS.get((callback, name))
    if item is not None:
        return list_of(_resolve(item))
    return of_type(inspect.signature(_callback(callback)).parameters[name].annotation)


def list_item_class(callback: str, name: str) -> type:
    """The IB class ``_LIST_ITEMS`` names as the elements of a callback's list argument."""
    return _load(_LIST_ITEMS[(callback, name)])


def list_of(item: Any) -> Any:
    """``list[item]`` of a type known only at run time."""
    return types.GenericAlias(list, (item,))


def of_type(tp: Any) -> Any:
    """A Python or ibapi type (an annotation, a default's type) as published."""
    if tp in (bool, int, str):
        return tp
    if tp in (float, decimal.Decimal):
        return float
    if tp is inspect.Parameter.empty:
        return str
    if tp in (set, frozenset, list, tuple):
        return list[Any]
    if tp is dict:
        return dict[str, Any]
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):  # as to_plain: the description
        texts = tuple(sorted({enum_text(member) for member in tp} - {"None"}))
        return Literal[texts] if texts else str
    if inspect.isclass(tp) and tp.__module__.startswith("ibapi"):
        return ib_struct(cast(Any, tp))  # (isclass narrowed it to a type mypy will not hash)
    return Any


def _attr_type(owner: str, attr: str, default: Any) -> Any:
    declared = _ATTR_TYPES.get((owner, attr))
    if declared is not None:
        return _resolve(declared)
    item = _LIST_ITEMS.get((owner, attr))
    if item is not None:
        return list_of(_resolve(item))
    return Any if default is None else of_type(type(default))


def _resolve(tp: Any) -> Any:
    return ib_struct(_load(tp)) if isinstance(tp, str) else tp


def _callback(name: str) -> Any:
    for candidate in _CALLBACK_NAMES.get(name, (name,)):
        fn = getattr(EWrapper, candidate, None)
        if fn is not None:
            return fn
    raise AttributeError(f"this ibapi has no EWrapper.{name}")


def _load(path: str) -> type:
    module, _, name = path.rpartition(".")
    cls: type = getattr(importlib.import_module(module), name)
    return cls
