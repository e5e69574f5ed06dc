"""EventWrapper gives one shape whichever wire (text, protobuf) and ibapi a callback came from."""

from __future__ import annotations

import inspect

import pytest
from ibapi.decoder import Decoder

from twsbus.sim import codec
from twsbus.sim.msgids import ToClient
from twsbus.tws.callbacks import Event, EventWrapper

_TAKES_MSG_ID = len(inspect.signature(Decoder.interpret).parameters) == 3
COMPONENTS = [(0, "NYSE", "N"), (1, "ARCA", "P"), (7, "ISE", "I")]
FIELDS = (ToClient.SMART_COMPONENTS, 14, len(COMPONENTS), *(x for c in COMPONENTS for x in c))


def _events(version: int) -> list[Event]:
    """The simulator's smartComponents reply at ``version``, through IB's decoder."""
    events: list[Event] = []
    decoder = Decoder(EventWrapper(events.append), version)
    frame = codec.encode(version, FIELDS)[4:]
    if version < codec.PROTOBUF_FROM:
        fields = tuple(frame.split(b"\0")[:-1])
        if _TAKES_MSG_ID:
            decoder.interpret(fields[1:], int(fields[0]))
        else:
            decoder.interpret(fields)
    else:
        msg_id = int.from_bytes(frame[:4], "big")
        if msg_id > codec.PROTOBUF_MSG_ID:
            decoder.processProtoBuf(frame[4:], msg_id - codec.PROTOBUF_MSG_ID)
        else:
            decoder.interpret(tuple(frame[4:].split(b"\0")[:-1]), msg_id)
    return events


@pytest.mark.parametrize("version", [200, 211, 212, 225])
def test_smart_components_are_one_list_on_both_wires(version: int) -> None:
    if version > 200:
        pytest.importorskip("ibapi.protobuf.SmartComponents_pb2")
    (event,) = _events(version)
    assert (event.name, event.key) == ("smartComponents", 14)
    assert event.data == {"smartComponentMap": [
        {"bitNumber": bit, "exchange": exchange, "exchangeLetter": letter}
        for bit, exchange, letter in COMPONENTS]}
