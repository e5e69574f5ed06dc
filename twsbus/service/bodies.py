"""Request bodies: JSON objects decoded once, every failure a 400 that says what was wrong.

Queries, subscriptions and lease requests all take a JSON object; ``parse`` turns the bytes into a
dict (empty body = ``{}``) and ``convert`` validates it against the endpoint's msgspec struct,
naming the field msgspec names. ``what`` prefixes every message (``contract_details``,
``sub.ticks``...) so an error says which endpoint refused it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from twsbus.errors import BadRequest

T = TypeVar("T")


def parse(body: bytes, what: str) -> dict[str, Any]:
    try:
        raw = msgspec.json.decode(body.strip() or b"{}")
    except msgspec.DecodeError as exc:
        raise BadRequest(f"{what}: body is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BadRequest(f"{what}: body must be a JSON object")
    return raw


def convert(raw: dict[str, Any], tp: type[T], what: str) -> T:
    try:
        return msgspec.convert(raw, tp)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"{what}: {exc}") from None


def decode(body: bytes, tp: type[T], what: str) -> T:
    return convert(parse(body, what), tp, what)
