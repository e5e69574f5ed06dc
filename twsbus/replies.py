"""The reply type of every query op, built from ``subjects.yaml`` and the installed ibapi.

A query op answers what its callbacks received (``twsbus.ibschema`` types each argument), shaped
by its pattern: a single reply is one object of the arguments (or the one argument ``reply:``
names), a list has one element per callback (the argument itself when the callback has only one;
an object tagged with ``type``, the callback's name, when the op collects several kinds; one
object per order when ``fold:`` merges them), a list with a done flag is the ticks, a snapshot
maps tick names to values. Orders and fire-and-forget ops answer their own structs.

``reply_type(spec)`` is the op's type, ``decode_reply(op, raw)`` decodes a reply strictly: a field
the type does not know, or a value of the wrong type, is a ``msgspec.ValidationError``. The
AsyncAPI document and docs/MESSAGES.md take the reply payloads from these types, and the daemon's
tests decode every op's reply with them: the shapes published are the shapes a client decodes.
"""

from __future__ import annotations

import functools
import operator
from typing import Annotated, Any

import msgspec

from twsbus.ibschema import (
    PARAM_RENAMES,
    STRUCT_CONFIG,
    data_params,
    ib_struct,
    list_item_class,
    list_of,
    param_type,
)
from twsbus.messages import OkReply
from twsbus.orders.events import PlaceReply
from twsbus.subjects import Pattern, QuerySpec, surface

#: A snapshot: IB's tick type names (camel-cased) -> the last value of each.
TickFields = Annotated[dict[str, float | str | None],
                       msgspec.Meta(description="IB tick type names (camel-cased) -> value")]


def reply_type(spec: QuerySpec) -> Any:
    """The type of ``spec``'s reply body (a struct, or a list or map of them). AttributeError
    when the installed ibapi lacks one of its callbacks (9.81: the ops of newer servers)."""
    return _reply_type(spec.op, spec.pattern, spec.callbacks, spec.reply, spec.fold)


def decode_reply(op: str, raw: bytes) -> Any:
    """A reply body of ``op`` decoded strictly into its reply type."""
    return msgspec.json.decode(raw, type=reply_type(_queries()[op]))


@functools.cache
def _queries() -> dict[str, QuerySpec]:
    return surface().queries


@functools.cache
def _reply_type(op: str, pattern: Pattern, callbacks: tuple[str, ...], reply: str | None,
                fold: str | None) -> Any:
    if pattern is Pattern.ORDER:
        return PlaceReply
    if pattern is Pattern.FIRE_AND_FORGET:
        return OkReply
    if pattern is Pattern.SNAPSHOT:
        return TickFields
    if pattern is Pattern.LIST_DONE:  # historical ticks: one kind per request, whatToShow's
        return list_of(_merged(_item_name(callbacks),
                               [list_item_class(cb, "ticks") for cb in callbacks]))
    if pattern is Pattern.SINGLE:
        if reply is None:
            return _arguments("".join(part.title() for part in op.split("_")) + "Reply",
                              callbacks)
        (cb,) = [cb for cb in callbacks if reply in _renamed_params(cb)]
        return param_type(cb, _renamed_params(cb)[reply])
    if fold or (len(callbacks) == 1 and len(data_params(callbacks[0])) > 1):
        return list_of(_arguments(_item_name(callbacks), callbacks))
    if len(callbacks) == 1:
        (param,) = data_params(callbacks[0])
        return list_of(param_type(callbacks[0], param))
    tagged = tuple(_arguments(_item_name((cb,)), (cb,), tag=cb) for cb in callbacks)
    return list_of(functools.reduce(operator.or_, tagged))


def _item_name(callbacks: tuple[str, ...]) -> str:
    """A list element is named after its (first) callback: ``position`` -> ``PositionItem``."""
    return f"{callbacks[0][0].upper()}{callbacks[0][1:]}Item"


def _renamed_params(callback: str) -> dict[str, str]:
    """The callback's data parameters: published name -> ibapi's name."""
    return {PARAM_RENAMES.get(p, p): p for p in data_params(callback)}


@functools.cache
def _arguments(name: str, callbacks: tuple[str, ...], tag: str | None = None) -> Any:
    """The callbacks' arguments as one object, as the daemon merges them: each may be null
    (IB's unset), or absent (an order folded from a status alone)."""
    fields: dict[str, Any] = {}
    for cb in callbacks:
        for published, param in _renamed_params(cb).items():
            fields.setdefault(published, param_type(cb, param))
    doc = f"the arguments of {', '.join(callbacks)}, made plain"
    config = {**STRUCT_CONFIG, **({"tag_field": "type", "tag": tag} if tag else {})}
    return msgspec.defstruct(name, [(f, tp | None, None) for f, tp in fields.items()],
                             namespace={"__doc__": doc}, **config)


def _merged(name: str, classes: list[type]) -> Any:
    """One struct with the fields of several IB classes (the reply holds one of them)."""
    fields: dict[str, Any] = {}
    for cls in classes:
        for field in msgspec.structs.fields(ib_struct(cls)):
            fields.setdefault(field.encode_name, field.type)
    doc = f"one of IB's {', '.join(c.__name__ for c in classes)}: their fields merged"
    return msgspec.defstruct(name, [(f, tp, msgspec.UNSET) for f, tp in fields.items()],
                             namespace={"__doc__": doc}, **STRUCT_CONFIG)
