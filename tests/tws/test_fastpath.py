"""The fast decode of hot tick messages emits exactly what IB's decoder + EventWrapper emit."""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import pytest
from ibapi.decoder import Decoder
from ibapi.ticktype import TickTypeEnum

from twsbus.sim import wire
from twsbus.tws.callbacks import Event, EventWrapper
from twsbus.tws.fastpath import decode_fast

NOT_SET = TickTypeEnum.NOT_SET
_TAKES_MSG_ID = len(inspect.signature(Decoder.interpret).parameters) == 3


def _frames() -> list[list[object]]:
    frames: list[list[object]] = []
    prices = [190.01, 0.0, 1.08005, 5600.25, -1.0, ""]
    sizes = ["100", "0", "", "2147483647", "12.5", "0.0001"]
    for tick_type, price, size, mask in itertools.product(
            [1, 2, 4, 6, 7, 9, 14, 66, 67, 68, 37], prices, sizes, [0, 1, 3, 7]):
        frames.append([1, 6, 7, tick_type, price, size, mask])
    for tick_type, size in itertools.product([0, 3, 5, 8, 21, 27, 69, 86, -1, NOT_SET], sizes):
        frames.append([2, 6, 9, tick_type, size])
    for value in ["1795235950", "blast-end", "", "caf\\u00e9", "a;b;c;;"]:
        frames.append([46, 6, 11, 45, value])
    for value in ["0", "1", "3.5", "-2"]:
        frames.append([45, 6, 13, 49, value])
    frames.append([1, 6, -1, 1, 190.0, "100", 0])  # no request id
    return frames


def _via_ibapi(fields: list[bytes], version: int) -> list[Event]:
    events: list[Event] = []
    decoder = Decoder(EventWrapper(events.append), version)
    if _TAKES_MSG_ID:
        decoder.interpret(tuple(fields[1:]), int(fields[0]))
    else:
        decoder.interpret(tuple(fields))
    return events


def _via_fastpath(fields: list[bytes], version: int) -> list[Event]:
    events: list[Event] = []
    assert decode_fast(fields, events.append, version)
    return events


def _plain(events: list[Event]) -> list[Any]:
    return [(e.name, e.key, e.data) for e in events]


@pytest.mark.parametrize("version", [157, 163, 178, 200])
def test_fast_decode_matches_ibapi_field_for_field(version: int) -> None:
    for frame in _frames():
        fields = wire.encode(frame)[4:].split(b"\0")[:-1]
        try:
            expected = _plain(_via_ibapi(fields, version))
        except ValueError:  # ibapi 9.81 cannot read a fractional size: neither may we
            with pytest.raises(ValueError):
                _via_fastpath(fields, version)
            continue
        assert _plain(_via_fastpath(fields, version)) == expected, frame


def test_other_messages_and_odd_shapes_are_left_to_ibapi() -> None:
    assert not decode_fast([b"49", b"1", b"1795235950"], lambda e: None, 200)
    assert not decode_fast([b"1", b"6", b"7", b"1"], lambda e: None, 200)  # truncated
