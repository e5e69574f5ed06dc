"""Typed requests: what a client asked for, read off either wire into one frozen struct.

A request on the text wire (and on the binary-id wire without protobuf) is read field by field
at the session's server version; from its switch-over version (ibapi's ``PROTOBUF_MSG_IDS``: 201
executions, 203 orders, 206 market data, ... 213 startApi) IB's client sends it as message id +
200 with a protobuf body, which is read field by field into the same struct. Handlers see only
the struct. The families live in submodules (``session``, ``market``, ``history``,
``reference``, ``account``, ``orders``); IB's protobuf schemas are imported on first use (ibapi
9.81 has none).
"""

from __future__ import annotations

from typing import NamedTuple

from twsbus.sim.codec import Incoming, schema
from twsbus.sim.requests import account, history, market, orders, reference, session
from twsbus.sim.requests.base import Contract, Request, Spec
from twsbus.sim.wire import Fields

__all__ = ["SPECS", "Contract", "Frame", "Request", "UnknownRequest", "frame", "read_protobuf",
           "read_text", "warm_up"]

#: message id -> how its request is read, on both wires
SPECS: dict[int, Spec] = {int(msg_id): entry for family in (
    session, market, history, reference, account, orders) for msg_id, entry in
    family.SPECS.items()}


class UnknownRequest(Exception):
    """A message id the simulator has no request type for."""


class Frame(NamedTuple):
    """One request as it came off the wire: its id, and either its text fields (read when it is
    dispatched, at the session's version, so that a field that does not read is answered as an
    error for that request) or the request a protobuf body was read into."""

    msg_id: int
    fields: list[str]
    request: Request | None = None

    def read(self, version: int) -> Request:
        if self.request is not None:
            return self.request
        return read_text(self.msg_id, version, self.fields)


def frame(incoming: Incoming) -> Frame:
    """The frame a session dispatches, from what ``codec.decode`` read off the wire: a protobuf
    body is read into its typed request now (one that does not parse raises), text fields when
    the frame is dispatched."""
    if incoming.body is None:
        return Frame(incoming.msg_id, incoming.fields)
    return Frame(incoming.msg_id, [], read_protobuf(incoming.msg_id, incoming.body))


def read_text(msg_id: int, version: int, fields: list[str]) -> Request:
    """The request ``msg_id`` from its text fields (after the id) at server ``version``."""
    entry = SPECS.get(msg_id)
    if entry is None:
        raise UnknownRequest(msg_id)
    return entry.text(Fields(fields), version)


def read_protobuf(msg_id: int, body: bytes) -> Request:
    """The request ``msg_id`` (without the +200) from its protobuf body."""
    entry = SPECS.get(msg_id)
    if entry is None:
        raise UnknownRequest(msg_id)
    message = schema(entry.schema)()
    message.ParseFromString(body)
    return entry.protobuf(message)


def warm_up() -> None:
    """Import every request schema now rather than on a session's first protobuf request (see
    ``codec.warm_up``)."""
    for entry in SPECS.values():
        schema(entry.schema)
