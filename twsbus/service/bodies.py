"""Request bodies: bounded, decoded once, every failure a 400 that says what was wrong.

Queries, subscriptions, lease and order requests all take a JSON object. ``parse`` bounds the body
before decoding it (size ``MAX_BODY``, nesting ``MAX_DEPTH``), turns it into a dict (empty body =
``{}``) and ``convert`` validates it against the endpoint's msgspec struct, naming the field
msgspec names. ``what`` prefixes every message (``contract_details``, ``sub.ticks``...) so an error
says which endpoint refused it. Nothing here echoes the caller's input back: a message names the
field and the rule, so an error reply stays small whatever was sent.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from twsbus.errors import BadRequest, PayloadTooLarge

T = TypeVar("T")

#: The largest request body taken (a contract with every field and an order with a hundred fields
#: is under 8 KiB); far below any NATS max_payload.
MAX_BODY = 64 * 1024
#: The deepest nesting of objects and arrays taken (an order's algoParams is three levels deep).
MAX_DEPTH = 16

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def parse(body: bytes, what: str) -> dict[str, Any]:
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(f"{what}: the request body is {len(body)} bytes; at most "
                              f"{MAX_BODY} are taken")
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and depth(body) > MAX_DEPTH:
        raise BadRequest(f"{what}: the body nests objects or arrays deeper than {MAX_DEPTH}")
    try:
        raw = msgspec.json.decode(body.strip() or b"{}")
    except msgspec.DecodeError as exc:
        raise BadRequest(f"{what}: body is not valid JSON ({_short(str(exc))})") from None
    except UnicodeDecodeError:
        raise BadRequest(f"{what}: body is not valid UTF-8") from None
    except RecursionError:  # pragma: no cover - depth() refuses these first
        raise BadRequest(f"{what}: the body nests too deeply") from None
    if not isinstance(raw, dict):
        raise BadRequest(f"{what}: body must be a JSON object")
    return raw


def depth(body: bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings (unbalanced input counts too)."""
    deepest = level = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", body)):
        if bracket in b"[{":
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def convert(raw: dict[str, Any], tp: type[T], what: str) -> T:
    try:
        return msgspec.convert(raw, tp)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"{what}: {_short(str(exc))}") from None


def decode(body: bytes, tp: type[T], what: str) -> T:
    return convert(parse(body, what), tp, what)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
