"""``subjects.yaml`` loaded and typed: subject names, the query table and the subscription kinds.

Everything else asks this module for subjects (``Surface.subject("status")``) and for the request
struct of a query (``QuerySpec.request_type``), so the YAML file stays the single source of truth.
Request structs are built with ``msgspec.defstruct`` from the argument types in the file and reject
unknown fields, so a typo in a body is a 400 that names the field.
"""

from __future__ import annotations

import enum
import functools
import re
import string
from pathlib import Path
from typing import Any

import msgspec
import yaml

from twsbus.errors import BadRequest
from twsbus.messages import Contract, ExecFilter, OrderCancel, TagValue
from twsbus.orders.model import Order

SUBJECTS_FILE = Path(__file__).with_name("subjects.yaml")


class OpClass(enum.StrEnum):
    """What an op or a subscription kind can do; roles are granted classes (``roles``)."""

    REFERENCE = "reference"
    MARKET = "market"
    ACCOUNT = "account"
    TRADE = "trade"
    ADMIN = "admin"


class Pattern(enum.StrEnum):
    SINGLE = "single"
    LIST = "list"
    LIST_DONE = "list_done"
    SNAPSHOT = "snapshot"
    FIRE_AND_FORGET = "fire_and_forget"
    ORDER = "order"


ARG_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "contract": Contract,
    "order": Order,
    "exec_filter": ExecFilter,
    "tag_list": list[TagValue],
    "order_cancel": OrderCancel,
}

_NO_DEFAULT = msgspec.NODEFAULT


class CallSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A follow-up call: a method and argument overrides (e.g. reqAccountUpdates(False))."""

    method: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)


class ArgSpec(msgspec.Struct, frozen=True):
    name: str
    type_name: str
    default: Any = _NO_DEFAULT

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


class QuerySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    op: str
    method: str
    pattern: Pattern
    #: ``class:`` in the file; every query declares one (the role permissions are made from it).
    cls: OpClass = msgspec.field(name="class")
    key: str | None = None
    args: tuple[ArgSpec, ...] = ()
    callbacks: tuple[str, ...] = ()
    end: str | None = None
    cancel: str | None = None
    then_cancel: str | CallSpec | None = None
    reply: str | None = None
    fold: str | None = None
    #: An argument the answer's callback repeats (marketRule's marketRuleId): queries without a
    #: request id but with ``match`` are told apart by it and need not wait for each other.
    match: str | None = None
    min_server_version: int = 0

    @property
    def keyed(self) -> bool:
        return self.key is not None

    @property
    def takes_contract(self) -> bool:
        return any(a.name == "contract" for a in self.args)

    @property
    def caller_supplies_key(self) -> bool:
        return self.key is not None and any(a.name == self.key for a in self.args)

    @functools.cached_property
    def request_type(self) -> type[msgspec.Struct]:
        """The msgspec struct a request body is decoded into (plus an optional ``timeout``)."""
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for arg in sorted(self.args, key=lambda a: not a.required):
            tp = ARG_TYPES[arg.type_name]
            if arg.required:
                fields.append((arg.name, tp))
            else:
                fields.append((arg.name, tp, _default_of(tp, arg.default)))
        fields.append(("timeout", float | None, None))
        return msgspec.defstruct(
            f"{_camel(self.op)}Request", fields, forbid_unknown_fields=True, kw_only=True
        )

    @property
    def listens(self) -> tuple[str, ...]:
        return self.callbacks + ((self.end,) if self.end and self.end not in self.callbacks else ())


class SubscriptionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: str
    method: str
    cancel: str | CallSpec
    data: str
    cls: OpClass = msgspec.field(name="class")
    lines: int = 0
    depth: int = 0


class Roles(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``roles`` in the file: the classes each client role may use, and the class of each fixed
    subject (``status``, ``orders_request``...; queries and kinds carry their own)."""

    classes: dict[str, frozenset[OpClass]]
    subjects: dict[str, OpClass]

    def may(self, role: str, cls: OpClass) -> bool:
        return cls in self.classes[role]


#: What a value may hold to become one subject token: a strict subset of what NATS allows (no
#: whitespace, no ``.``, no wildcards, no control characters), short enough that no subject can
#: approach nats-server's control-line limit. Spaces are written as ``_`` (``1 min`` ->
#: ``1_min``); anything else outside the set is refused, never rewritten, so two values can never
#: share a subject.
TOKEN_MAX = 64
_TOKEN_RE = re.compile(r"[A-Za-z0-9_\-+=:@~]{1,64}")


def token(value: Any, field: str) -> str:
    """``value`` as a subject token, or BadRequest naming ``field`` (never echoing the value)."""
    text = str(value).replace(" ", "_")
    if _TOKEN_RE.fullmatch(text) is None:
        raise BadRequest(f"{field}: must be 1 to {TOKEN_MAX} characters from A-Z a-z 0-9 "
                         f"and _-+=:@~ (spaces become _); it names a NATS subject")
    return text


def template_fields(template: str) -> tuple[str, ...]:
    """The ``{name}`` parameters of a subject template, prefix excluded."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(template)
                 if name and name != "prefix")


class Surface:
    """The parsed subjects.yaml with a prefix applied."""

    def __init__(self, raw: dict[str, Any], prefix: str | None = None) -> None:
        self.raw = raw
        self.version: int = raw["version"]
        self.prefix: str = prefix or raw["prefix"]
        self.service: dict[str, str] = raw["service"]
        self._subjects: dict[str, str] = raw["subjects"]
        self.queries: dict[str, QuerySpec] = {
            op: _query_spec(op, body) for op, body in raw["queries"].items()
        }
        self.subscriptions: dict[str, SubscriptionSpec] = {
            kind: msgspec.convert({"kind": kind, **body}, SubscriptionSpec)
            for kind, body in raw["subscriptions"].items()
        }
        self.roles: Roles = msgspec.convert(raw["roles"], Roles)

    def subject(self, name: str, **params: Any) -> str:
        return self._subjects[name].format(prefix=self.prefix, **params)

    def query_subject(self, op: str) -> str:
        return self.subject("query", op=op)

    def data_subject(self, kind: str, **params: Any) -> str:
        """The data subject of ``kind`` for ``params``; every value that becomes a token is
        checked (``token``), so no request can make a subject NATS would refuse."""
        template = self.subscriptions[kind].data
        tokens = {name: token(params.get(name, ""), name) for name in template_fields(template)}
        return template.format(prefix=self.prefix, **tokens)

    def all_subject_patterns(self) -> list[str]:
        """Every subject the daemon serves or publishes, with wildcards for parameters."""
        out = [s.format(prefix=self.prefix, **dict.fromkeys(template_fields(s), "*"))
               for s in self._subjects.values()]
        for spec in self.subscriptions.values():
            parts = spec.data.format(prefix=self.prefix, conId="*", tickType="*", barSize="*",
                                     account="*").split(".")
            out.append(".".join(parts))
        return sorted(set(out))


def _query_spec(op: str, body: dict[str, Any]) -> QuerySpec:
    args = []
    for name, decl in (body.get("args") or {}).items():
        if isinstance(decl, list):
            type_name, default = decl
        else:
            type_name, default = decl, _NO_DEFAULT
        if type_name not in ARG_TYPES:
            raise ValueError(f"subjects.yaml: query {op}: argument {name} has unknown type "
                             f"{type_name!r}")
        args.append(ArgSpec(name, type_name, default))
    fields = {k: v for k, v in body.items() if k != "args"}
    return msgspec.convert({"op": op, **fields, "args": args}, QuerySpec)


def _default_of(tp: Any, default: Any) -> Any:
    if isinstance(default, (list, dict)):
        value = msgspec.convert(default, tp)
        return msgspec.field(default_factory=lambda: msgspec.convert(default, tp))\
            if value is not None else None
    return default


def _camel(op: str) -> str:
    return "".join(part.title() for part in op.split("_"))


@functools.cache
def load(path: str | None = None) -> dict[str, Any]:
    with open(path or SUBJECTS_FILE) as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


def surface(prefix: str | None = None, path: str | None = None) -> Surface:
    return Surface(load(path), prefix)
