"""The TWS socket framing, server side: length-prefixed frames of NUL-terminated text fields.

Every message after the handshake is a 4-byte big-endian length followed by fields, each ended by
``\\0``. The first field of a message is its numeric id. This module owns nothing else: it turns
Python values into fields the way TWS writes them, and reads fields back with the helpers a
request parser needs. It does not import ``ibapi``: the simulator is an independent implementation
of the protocol, so a layout mistake here shows up as a decoding failure in IB's own client.
"""

from __future__ import annotations

import builtins
import math
import struct
from collections.abc import Iterable

_LEN = struct.Struct("!I")

#: IB's sentinel for "no value" in doubles and ints (sent as an empty field).
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1


class ProtocolError(Exception):
    """The client sent bytes that are not a TWS API frame."""


def field(value: object) -> str:
    """Render one value as TWS renders it on the wire (without the terminator)."""
    if value is None:
        return ""
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, float):
        if value == UNSET_DOUBLE or math.isnan(value):
            return ""
        if math.isinf(value):
            return "Infinity"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, int) and value == UNSET_INTEGER:
        return ""
    return str(value)


def payload(fields: Iterable[object]) -> bytes:
    """A message's NUL-terminated fields, without the length prefix."""
    return "".join(field(v) + "\0" for v in fields).encode()


def encode(fields: Iterable[object]) -> bytes:
    """One framed message: length prefix + NUL-terminated fields."""
    return frame(payload(fields))


def frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def split_fields(payload: bytes) -> list[str]:
    """Split a frame payload into its text fields (the trailing terminator yields no field)."""
    parts = payload.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "replace") for p in parts]


class Fields:
    """A cursor over the fields of one request, with typed reads.

    Request parsers read fields in the order the client wrote them; reading past the end yields
    empty strings (clients omit trailing optional fields at older versions).
    """

    __slots__ = ("_fields", "_i")

    def __init__(self, fields: list[builtins.str], start: builtins.int = 0) -> None:
        self._fields = fields
        self._i = start

    def __repr__(self) -> builtins.str:
        return f"<Fields at {self._i} of {self._fields!r}>"

    @property
    def remaining(self) -> builtins.int:
        return len(self._fields) - self._i

    def str(self) -> builtins.str:
        if self._i >= len(self._fields):
            self._i += 1
            return ""
        value = self._fields[self._i]
        self._i += 1
        return value

    def int(self, default: builtins.int = 0) -> builtins.int:
        text = self.str()
        if text == "":
            return default
        try:
            return int(text)
        except ValueError:
            return int(float(text))

    def float(self, default: builtins.float = 0.0) -> builtins.float:
        text = self.str()
        if text == "":
            return default
        if text == "Infinity":
            return math.inf
        return float(text)

    def bool(self) -> builtins.bool:
        return self.int() != 0

    def skip(self, n: builtins.int = 1) -> None:
        self._i += n

    def tag_values(self) -> list[tuple[builtins.str, builtins.str]]:
        """A count-prefixed list of tag/value pairs is not what the text protocol sends for
        options; IB sends one string "tag=value;tag=value;". Parse that."""
        text = self.str()
        pairs = []
        for item in text.split(";"):
            if "=" in item:
                tag, _, value = item.partition("=")
                pairs.append((tag, value))
        return pairs
