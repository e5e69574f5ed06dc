"""What every typed request shares: the ``Request`` base, the ``Contract`` inside requests, and
the two table-driven readers a request spec is built from.

A request's text reader follows the fields the client wrote at the session's server version (a
layout of field names for the plain ones, a function where the layout depends on the version or
on earlier fields). Its protobuf reader maps the message's fields onto the struct's, by IB's
parameter names with the renames a spec lists ("a.b": field b of the message in field a).
Top-level protobuf fields read as the schema's default when unset, as IB's client leaves them;
nested messages (contract, execution filter, scanner subscription) keep the struct's default for
a field that is absent, which is what IB's objects hold before the client copies into them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import UnionType
from typing import Any, NamedTuple, TypeVar, Union, get_args, get_origin

import msgspec

from twsbus.sim.wire import Fields


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """A request read off either wire; fields carry the EClient method's parameter names."""


class IdRequest(Request, frozen=True):
    """A request that carries the id its answers (and its errors) are sent under."""

    reqId: int = 0


class Contract(msgspec.Struct, frozen=True, kw_only=True):
    """The contract a request names (IB's ``Contract`` fields the simulator reads)."""

    conId: int = 0
    symbol: str = ""
    secType: str = ""
    lastTradeDateOrContractMonth: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primaryExchange: str = ""
    currency: str = ""
    localSymbol: str = ""
    tradingClass: str = ""
    includeExpired: bool = False
    secIdType: str = ""
    secId: str = ""

    def spec(self) -> dict[str, Any]:
        """The contract as ``Universe.find`` reads it (IB field names, empty meaning any)."""
        return msgspec.structs.asdict(self)


def read_contract(
    f: Fields,
    *,
    con_id: bool = True,
    primary_exchange: bool = True,
    trading_class: bool = True,
    include_expired: bool = False,
) -> Contract:
    """The run of contract fields most text requests carry; some versions and requests leave
    out conId, primaryExchange or tradingClass, or add includeExpired."""
    return Contract(
        conId=f.int() if con_id else 0,
        symbol=f.str(), secType=f.str(), lastTradeDateOrContractMonth=f.str(),
        strike=f.float(), right=f.str(), multiplier=f.str(), exchange=f.str(),
        primaryExchange=f.str() if primary_exchange else "",
        currency=f.str(), localSymbol=f.str(),
        tradingClass=f.str() if trading_class else "",
        includeExpired=f.bool() if include_expired else False,
    )


def contract_from_protobuf(message: Any) -> Contract:
    """A protobuf ``Contract``: its fields where set; the multiplier (a double there) as the
    text IB's client writes for it."""
    values = _present(message, Contract, {"primaryExchange": "primaryExch"})
    values.pop("multiplier", None)
    if message.HasField("multiplier"):
        multiplier = message.multiplier
        values["multiplier"] = str(int(multiplier)) if multiplier.is_integer() \
            else str(multiplier)
    return Contract(**values)


R = TypeVar("R", bound=Request)
TextReader = Callable[[Fields, int], Request]
ProtobufReader = Callable[[Any], Request]


class Spec(NamedTuple):
    """How one request is read: its struct, text reader, protobuf schema and reader."""

    cls: type[Request]
    text: TextReader
    schema: str
    protobuf: ProtobufReader


def spec(cls: type[R], schema: str, text: tuple[str, ...] | TextReader = (),
         renames: dict[str, str] | None = None,
         protobuf: ProtobufReader | None = None) -> Spec:
    """A request's readers: ``text`` is a layout of field names ("_" skips one, such as the
    per-message version) or a function of the cursor and the server version; the protobuf
    reader maps fields by name unless ``protobuf`` is given."""
    text_reader = text if callable(text) else _layout_reader(cls, text)
    return Spec(cls, text_reader, schema,
                protobuf or functools.partial(from_protobuf, cls, renames=renames or {}))


def _layout_reader(cls: type[Request], layout: tuple[str, ...]) -> TextReader:
    types = {fi.name: fi.type for fi in msgspec.structs.fields(cls)}
    readers: dict[Any, Callable[[Fields], Any]] = {
        int: Fields.int, str: Fields.str, bool: Fields.bool, float: Fields.float}

    def read(f: Fields, version: int) -> Request:
        values: dict[str, Any] = {}
        for name in layout:
            if name == "_":
                f.skip()
            else:
                values[name] = readers[types[name]](f)
        return cls(**values)

    return read


def from_protobuf(cls: type[R], message: Any, renames: dict[str, str]) -> R:
    """The request ``cls`` from its protobuf message, field by field."""
    values: dict[str, Any] = {}
    for fi in msgspec.structs.fields(cls):
        holder, _, name = renames.get(fi.name, fi.name).rpartition(".")
        source = getattr(message, holder) if holder else message
        fd = source.DESCRIPTOR.fields_by_name.get(name)
        if fd is None:
            continue
        value = getattr(source, name)
        if fi.type is Contract:
            values[fi.name] = contract_from_protobuf(value)
        elif isinstance(fi.type, type) and issubclass(fi.type, msgspec.Struct):
            values[fi.name] = fi.type(**_present(value, fi.type, {}))
        else:
            values[fi.name] = _convert(fi.type, value)
    return cls(**values)


def _present(message: Any, cls: type[msgspec.Struct], renames: dict[str, str]) -> dict[str, Any]:
    """The fields of a nested message that are set, as the struct ``cls`` types them."""
    fields = message.DESCRIPTOR.fields_by_name
    out = {}
    for fi in msgspec.structs.fields(cls):
        name = renames.get(fi.name, fi.name)
        fd = fields.get(name)
        if fd is None:
            continue
        if fd.has_presence and not message.HasField(name):
            continue
        value = getattr(message, name)
        if not fd.has_presence and not value:
            continue
        out[fi.name] = _convert(fi.type, value)
    return out


def _convert(kind: Any, value: Any) -> Any:
    """A protobuf value as the struct field's type: maps as (key, value) pairs, repeated
    values as tuples."""
    options = [k for k in get_args(kind) if k is not type(None)]
    if get_origin(kind) in (UnionType, Union) and len(options) == 1:
        kind = options[0]  # an optional value that is set
    if get_origin(kind) is tuple:
        item = get_args(kind)[0]
        if hasattr(value, "items"):
            return tuple((str(k), str(v)) for k, v in value.items())
        return tuple(item(x) for x in value)
    if kind in (int, float, str, bool):
        return kind(value)
    return value
