"""JSON Schema of the query replies, read off the installed ibapi.

A query's reply is what its EWrapper callbacks received, made plain (``tws.objects.to_plain``):
IB's objects become objects with IB's attribute names, Decimals numbers, sets sorted arrays, and
IB's unset sentinels are left out. So the reply schema of every op follows from three things
this module reads: the op's pattern and callbacks in ``subjects.yaml``, the callbacks' annotated
signatures in ``ibapi.wrapper.EWrapper``, and the attributes of a fresh instance of each IB class.
Where ibapi annotates only ``list``, ``_LIST_ITEMS`` names the element class.

``ReplySchemas.reply(spec)`` gives an op's reply schema; ``components`` the IB object schemas it
refers to (``#/components/schemas/Ib<Class>``).
"""

from __future__ import annotations

import decimal
import enum
import importlib
import inspect
from typing import Any

from ibapi.wrapper import EWrapper

from twsbus.subjects import Pattern, QuerySpec
from twsbus.tws.objects import ID_PARAMS, enum_text

#: Where ibapi's annotation says only ``list``: (callback, parameter) -> element class.
_LIST_ITEMS = {
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
}
#: Callbacks whose first id-like parameter is data, not a request key (as in tws.callbacks).
_NOT_KEYED = frozenset({"nextValidId", "orderBound"})
#: ibapi 10.x names -> the names twsbus publishes (as in tws.callbacks and tws.objects).
_CALLBACK_NAMES = {"commissionReport": ("commissionAndFeesReport", "commissionReport")}
_PARAM_RENAMES = {"commissionAndFeesReport": "commissionReport"}
_FIELD_RENAMES = {"BarData": {"average": "wap"}, "HistogramData": {"count": "size"},
                  "CommissionAndFeesReport": {"commissionAndFees": "commission"}}
#: smartComponents: the daemon publishes the map as rows, whichever wire it came on.
_SMART_ROWS = {"type": "array", "items": {"type": "object", "properties": {
    "bitNumber": {"type": "integer"}, "exchange": {"type": "string"},
    "exchangeLetter": {"type": "string"}}}}
_TICK_FIELDS = {"type": "object", "description": "IB tick type names (camel-cased) -> value",
                "additionalProperties": {"type": ["number", "string", "null"]}}


class ReplySchemas:
    """Builds reply schemas, collecting the IB classes they refer to in ``components``."""

    def __init__(self, ref_template: str = "#/components/schemas/{name}") -> None:
        self.ref_template = ref_template
        self.components: dict[str, dict[str, Any]] = {}

    def reply(self, spec: QuerySpec) -> dict[str, Any]:
        pattern = spec.pattern
        if pattern is Pattern.FIRE_AND_FORGET:
            return {"type": "object", "properties": {"ok": {"const": True}}}
        if pattern is Pattern.SNAPSHOT:
            return _TICK_FIELDS
        if pattern is Pattern.LIST_DONE:  # historical ticks: the ticks of every callback
            items = [self.param(cb, "ticks")["items"] for cb in spec.callbacks]
            return {"type": "array", "items": {"anyOf": items}}
        if pattern is Pattern.SINGLE:
            merged = self.arguments(spec.callbacks)
            if spec.reply:
                return dict(merged["properties"][spec.reply])
            return merged
        if spec.fold:  # several callbacks merged into one object per order
            return {"type": "array", "items": self.arguments(spec.callbacks)}
        if len(spec.callbacks) > 1:  # tagged with the callback's name
            items = []
            for cb in spec.callbacks:
                obj = self.arguments((cb,))
                obj["properties"] = {"type": {"const": cb}, **obj["properties"]}
                items.append(obj)
            return {"type": "array", "items": {"anyOf": items}}
        obj = self.arguments(spec.callbacks)
        props = obj["properties"]
        return {"type": "array", "items": next(iter(props.values())) if len(props) == 1 else obj}

    def arguments(self, callbacks: tuple[str, ...]) -> dict[str, Any]:
        """The callbacks' data arguments as one object (their union, as the daemon merges)."""
        props: dict[str, Any] = {}
        for cb in callbacks:
            for name in _data_params(cb):
                props[_PARAM_RENAMES.get(name, name)] = self.param(cb, name)
        return {"type": "object", "properties": props}

    def param(self, callback: str, name: str) -> dict[str, Any]:
        if callback == "smartComponents":
            return _SMART_ROWS
        item = _LIST_ITEMS.get((callback, name))
        if item is not None:
            return {"type": "array", "items": self.of_class(_load(item))}
        fn = _callback(callback)
        annotation = inspect.signature(fn).parameters[name].annotation
        return self.of_type(annotation, name)

    def of_type(self, tp: Any, name: str = "") -> dict[str, Any]:
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp in (float, decimal.Decimal):
            return {"type": "number"}
        if tp is str or tp is inspect.Parameter.empty:
            return {"type": "string"}
        if tp in (set, frozenset):
            return {"type": "array", "items": {"type": ["string", "number"]},
                    "description": "sorted"}
        if tp in (list, tuple):
            return {"type": "array"}
        if tp is dict:
            return {"type": "object"}
        if inspect.isclass(tp) and issubclass(tp, enum.Enum):  # as to_plain: the description
            texts = {enum_text(member) for member in tp} - {"None"}
            return {"type": "string", "enum": sorted(texts)}
        if inspect.isclass(tp) and tp.__module__.startswith("ibapi"):
            return self.of_class(tp)
        return {}

    def of_class(self, cls: type) -> dict[str, Any]:
        """A reference to the IB class's schema, built on first use."""
        name = f"Ib{cls.__name__}"
        if name not in self.components:
            self.components[name] = {}  # a placeholder first: classes refer to each other
            renames = _FIELD_RENAMES.get(cls.__name__, {})
            props = {renames.get(k, k): self._of_value(v)
                     for k, v in vars(cls()).items() if not k.startswith("_")}
            self.components[name] = {
                "type": "object", "title": cls.__name__, "properties": props,
                "description": f"IB's {cls.__name__}, under IB's attribute names; "
                               "unset values are left out"}
        return {"$ref": self.ref_template.format(name=name)}

    def _of_value(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if isinstance(value, (list, tuple)):
            return {"type": "array"}
        if isinstance(value, (set, frozenset)):
            return {"type": "array", "description": "sorted"}
        if isinstance(value, dict):
            return {"type": "object"}
        return self.of_type(type(value))


def _callback(name: str) -> Any:
    for candidate in _CALLBACK_NAMES.get(name, (name,)):
        fn = getattr(EWrapper, candidate, None)
        if fn is not None:
            return fn
    raise AttributeError(f"this ibapi has no EWrapper.{name}")


def _data_params(callback: str) -> list[str]:
    """The callback's parameters the daemon keeps as data (the request id is the key)."""
    params = [p for p in inspect.signature(_callback(callback)).parameters if p != "self"]
    if params and params[0] in ID_PARAMS and callback not in _NOT_KEYED \
            and params[0] != "orderId":
        params = params[1:]
    return params


def _load(path: str) -> type:
    module, _, name = path.rpartition(".")
    cls: type = getattr(importlib.import_module(module), name)
    return cls
