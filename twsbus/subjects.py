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


class SubscriptionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """A subscription kind as ``subjects.yaml`` declares it; its behaviour (how TWS's callbacks
    become messages) is the ``Kind`` subclass of that name, which registers itself."""

    kind: str
    method: str
    cancel: str | CallSpec
    data: str
    #: The ``type`` of its data messages (``twsbus.datamessages``).
    message: str
    cls: OpClass = msgspec.field(name="class")
    #: The lease's parameters with their defaults (``[type, default]`` in the file).
    params: tuple[ArgSpec, ...] = ()
    #: Parameters a new lease may widen on the live request (the Kind says how).
    merge: tuple[str, ...] = ()
    #: Successive updates merge, latest value wins (ticks, the book, PnL).
    conflate: bool = False
    #: The field of a data message that carries the items which arrived together from TWS (one
    #: message per TWS read, not per item: tick-by-tick's ``ticks``); "" for one item a message.
    collect: str = ""
    #: Sent under IB's historical-data limits, like the historical queries.
    paced: bool = False
    #: What one stream costs of TWS's budgets.
    lines: int = 0
    depth: int = 0
    tbt: int = 0
    scanner: int = 0
    #: What its data messages carry, in a few words (the README's table of kinds).
    doc: str = ""

    @property
    def needs_contract(self) -> bool:
        return "{conId}" in self.data

    @property
    def key_params(self) -> tuple[str, ...]:
        """The parameters that are tokens of the data subject: each value is its own stream."""
        return tuple(f for f in template_fields(self.data) if f in self.defaults)

    @functools.cached_property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    @functools.cached_property
    def request_type(self) -> type[msgspec.Struct]:
        """The body of ``tws.sub.<kind>``: the parameters, a contract when the kind takes one,
        and the lease's ``ttl``."""
        fields: list[Any] = [(p.name, ARG_TYPES[p.type_name],
                              _default_of(ARG_TYPES[p.type_name], p.default))
                             for p in self.params]
        if self.needs_contract:
            fields.append(("contract", Contract))  # required: the stream is of one contract
        fields.append(("ttl", float | None, None))
        return msgspec.defstruct(f"{_camel(self.kind)}Subscribe", fields, kw_only=True,
                                 forbid_unknown_fields=True)


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
#: Fields whose dots stay: each part is a token of its own (a scanner's ``STK.US.MAJOR``); such a
#: field ends its subject template, so the parts cannot be mistaken for another field's.
DOTTED_FIELDS = frozenset({"locationCode"})


def token(value: Any, field: str) -> str:
    """``value`` as a subject token, or BadRequest naming ``field`` (never echoing the value)."""
    text = str(value).replace(" ", "_")
    if field in DOTTED_FIELDS and 0 < len(text) <= 4 * TOKEN_MAX:
        return ".".join(token(part, f"{field} (each dotted part)") for part in text.split("."))
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
            kind: _subscription_spec(kind, body) for kind, body in raw["subscriptions"].items()
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
            fields = template_fields(spec.data)
            out.append(spec.data.format(prefix=self.prefix, **{
                f: ">" if f in DOTTED_FIELDS else "*" for f in fields}))
        return sorted(set(out))


def _arg_specs(where: str, decls: dict[str, Any] | None) -> list[ArgSpec]:
    args = []
    for name, decl in (decls or {}).items():
        if isinstance(decl, list):
            type_name, default = decl
        else:
            type_name, default = decl, _NO_DEFAULT
        if type_name not in ARG_TYPES:
            raise ValueError(f"subjects.yaml: {where}: argument {name} has unknown type "
                             f"{type_name!r}")
        args.append(ArgSpec(name, type_name, default))
    return args


def _subscription_spec(kind: str, body: dict[str, Any]) -> SubscriptionSpec:
    params = _arg_specs(f"subscription {kind}", body.get("params"))
    if any(p.required for p in params):
        raise ValueError(f"subjects.yaml: subscription {kind}: every parameter needs a default")
    fields = {k: v for k, v in body.items() if k != "params"}
    return msgspec.convert({"kind": kind, **fields, "params": params}, SubscriptionSpec)


def _query_spec(op: str, body: dict[str, Any]) -> QuerySpec:
    args = _arg_specs(f"query {op}", body.get("args"))
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
