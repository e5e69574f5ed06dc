"""What ``twsbus req`` can ask, read from the surface (subjects.yaml) and never listed by hand.

``catalog`` gives every request op: the query ops of subjects.yaml with their arguments, types
and defaults as the file declares them, then the daemon's own request subjects under
``{prefix}.req.`` (``status``, ``snapshot``, ``orders``) with the fields of their request
structs. ``listing`` renders it for ``twsbus ops`` and ``twsbus req --help``; ``unknown_op`` and
``unknown_kind`` are the 404 a mistyped name gets at once, naming the valid ones.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import msgspec
import msgspec.inspect

from twsbus.errors import NotFound
from twsbus.subjects import Surface

#: Every query body may also carry this (the daemon's deadline for the whole request).
TIMEOUT_NOTE = 'every body may also carry "timeout": seconds (default 10)'


class ArgInfo(msgspec.Struct, frozen=True):
    name: str
    type: str
    required: bool
    default: Any = None

    def __str__(self) -> str:
        if self.required:
            return f"{self.name}: {self.type}"
        return f"{self.name}: {self.type} = {_show(self.default)}"


class OpInfo(msgspec.Struct, frozen=True):
    op: str
    group: str  # the reply pattern of a query; "daemon" for the daemon's own requests
    args: tuple[ArgInfo, ...] = ()

    @property
    def takes_contract(self) -> bool:
        return any(a.name == "contract" for a in self.args)


_PATTERN_TITLES = {
    "single": "single reply (an object)",
    "list": "list closed by an End (an array)",
    "list_done": "list closed by an End (an array)",
    "snapshot": "snapshot (an object of tick fields)",
    "fire_and_forget": 'fire-and-forget ({"ok": true})',
    "order": "orders (the order desk)",
    "daemon": "the daemon's own",
}


def catalog(surface: Surface) -> dict[str, OpInfo]:
    """Every op ``twsbus req`` can send, in the file's order, then the daemon's own."""
    ops = {op: OpInfo(op, spec.pattern.value, tuple(
        ArgInfo(a.name, a.type_name, a.required, None if a.required else a.default)
        for a in spec.args)) for op, spec in surface.queries.items()}
    for op, struct in _daemon_requests(surface).items():
        ops.setdefault(op, OpInfo(op, "daemon", _struct_args(struct)))
    return ops


def _daemon_requests(surface: Surface) -> dict[str, type[msgspec.Struct] | None]:
    """The fixed subjects of subjects.yaml that are requests on ``{prefix}.req.<name>``."""
    from twsbus.messages import SnapshotRequest
    from twsbus.orders.events import OrdersRequest

    bodies: dict[str, type[msgspec.Struct]] = {"snapshot": SnapshotRequest,
                                               "orders": OrdersRequest}
    out: dict[str, type[msgspec.Struct] | None] = {}
    marker = f"{surface.prefix}.req."
    for name, template in surface.raw["subjects"].items():
        if "{" in template.replace("{prefix}", ""):
            continue
        subject = surface.subject(name)
        if subject.startswith(marker):
            op = subject.removeprefix(marker)
            out[op] = bodies.get(op)
    return out


def _struct_args(struct: type[msgspec.Struct] | None) -> tuple[ArgInfo, ...]:
    if struct is None:
        return ()
    args = []
    for field in msgspec.structs.fields(struct):
        if field.name == "timeout":
            continue
        required = field.required
        default = None if required or field.default is msgspec.NODEFAULT else field.default
        args.append(ArgInfo(field.encode_name, _type_name(field.type), required, default))
    return tuple(args)


def _type_name(tp: Any) -> str:
    """A field's type as a short name: ``int``, ``str | int`` (None and constraints left out)."""
    info = msgspec.inspect.type_info(tp)
    options = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    names = [_TYPE_NAMES.get(type(t), type(t).__name__.removesuffix("Type").lower())
             for t in options if not isinstance(t, msgspec.inspect.NoneType)]
    return " | ".join(names) or "null"


_TYPE_NAMES: dict[type, str] = {
    msgspec.inspect.IntType: "int", msgspec.inspect.FloatType: "float",
    msgspec.inspect.StrType: "str", msgspec.inspect.BoolType: "bool",
}


def _show(value: Any) -> str:
    return "null" if value is None else json.dumps(value)


def listing(surface: Surface, width: int | None = None) -> str:
    """The ops grouped by reply pattern, one line each, arguments wrapped under the name."""
    width = width or min(shutil.get_terminal_size((100, 20)).columns, 120)
    ops = catalog(surface)
    pad = max(len(op) for op in ops) + 4
    lines = [f"Ops ({surface.query_subject('<op>')}); {TIMEOUT_NOTE}.",
             "A contract is {\"conId\": N} or a spec; its fields may stand at the top level."]
    for title in dict.fromkeys(_PATTERN_TITLES[info.group] for info in ops.values()):
        lines += ["", f"{title}:"]
        for info in ops.values():
            if _PATTERN_TITLES[info.group] != title:
                continue
            wrapped = _wrap([str(a) for a in info.args] or ["(no arguments)"],
                            max(width - pad, 30))
            lines.append(f"  {info.op.ljust(pad - 2)}{wrapped[0]}")
            lines += [" " * pad + more for more in wrapped[1:]]
    return "\n".join(lines)


def _wrap(items: list[str], width: int) -> list[str]:
    """``items`` joined by ", " into rows of at most ``width``, never splitting an item."""
    rows: list[str] = []
    row = ""
    for item in items:
        if row and len(row) + 2 + len(item) > width:
            rows.append(row + ",")
            row = item
        else:
            row = f"{row}, {item}" if row else item
    return [*rows, row]


def unknown_op(surface: Surface, op: str) -> NotFound:
    names = ", ".join(catalog(surface))
    return NotFound(f"unknown op {op!r}; the ops are {names} (`twsbus ops` lists their "
                    "arguments)")


def unknown_kind(surface: Surface, kind: str) -> NotFound:
    names = ", ".join(surface.subscriptions)
    return NotFound(f"unknown subscription kind {kind!r}; the kinds are {names}")
