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
from twsbus.tws.fastpath import decode_fast, decode_fast_binary
from twsbus.tws.protofast import decode_proto_fast

NOT_SET = TickTypeEnum.NOT_SET
_TAKES_MSG_ID = len(inspect.signature(Decoder.interpret).parameters) == 3


def _frames() -> list[list[object]]:
    frames: list[list[object]] = []
    prices = [190.01, 0.0, 1.08005, 5600.25, -1.0, ""]
    sizes = ["100", "0", "", "2147483647", "12.5", "0.0001"]
    for tick_type, price, size, mask in itertools.product(
            [1, 2, 4, 6, 7, 9, 14, 66, 67, 68, 37, 105, 106], prices, sizes, [0, 1, 3, 7]):
        frames.append([1, 6, 7, tick_type, price, size, mask])
    for tick_type, size in itertools.product([0, 3, 5, 8, 21, 27, 69, 86, 107, 108, -1, NOT_SET],
                                             sizes):  # 105-110: the odd-lot quote (225)
        frames.append([2, 6, 9, tick_type, size])
    for value in ["1795235950", "blast-end", "", "caf\\u00e9", "a;b;c;;"]:
        frames.append([46, 6, 11, 45, value])
    for tick_type in (109, 110):
        frames.append([46, 6, 11, tick_type, "Q"])
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


def _check_against_ibapi(frames: list[list[object]], version: int) -> None:
    """Each frame decoded by the fast path (text, or binary id from 201) as by IB's decoder."""
    for frame in frames:
        fields = wire.encode(frame)[4:].split(b"\0")[:-1]
        try:
            expected = _plain(_via_ibapi(fields, version))
        except ValueError:  # ibapi 9.81 cannot read a fractional size: neither may we
            with pytest.raises(ValueError):
                _via_fastpath(fields, version)
            continue
        events: list[Event] = []
        if version > 200:
            assert decode_fast_binary(int(fields[0]), fields[1:], events.append, version)
        else:
            assert decode_fast(fields, events.append, version)
        assert _plain(events) == expected, frame


@pytest.mark.parametrize("version", [157, 163, 178, 200])
def test_fast_decode_matches_ibapi_field_for_field(version: int) -> None:
    _check_against_ibapi(_frames(), version)


def test_other_messages_and_odd_shapes_are_left_to_ibapi() -> None:
    assert not decode_fast([b"49", b"1", b"1795235950"], lambda e: None, 200)
    assert not decode_fast([b"1", b"6", b"7", b"1"], lambda e: None, 200)  # truncated


@pytest.mark.parametrize("version", [201, 203, 206, 213, 220, 225])
def test_binary_id_text_frames_match_ibapi(version: int) -> None:
    if not _TAKES_MSG_ID:
        pytest.skip("ibapi 9.81 has no binary message ids")
    for frame in _frames():
        fields = wire.encode(frame)[4:].split(b"\0")[:-1]
        expected = _plain(_via_ibapi(fields, version))
        events: list[Event] = []
        assert decode_fast_binary(int(fields[0]), fields[1:], events.append, version)
        assert _plain(events) == expected, frame


def _tbt_frames() -> list[list[object]]:
    """Tick-by-tick messages (id 99, no version field; text up to server version 207)."""
    frames: list[list[object]] = []
    for tick_type, price, size, mask, venue in itertools.product(
            [1, 2], [190.01, 0.0, ""], ["100", "0", "", "12.5"], [0, 1, 2, 3],
            [("ARCA", ""), ("", " T I")]):
        frames.append([99, 7, tick_type, 1795235950, price, size, mask, *venue])
    for bid, size, mask in itertools.product([189.99, 0.0, ""], ["300", "", "0.5"], [0, 1, 3]):
        frames.append([99, 8, 3, 1795235951, bid, 190.01, size, "200", mask])
    for mid in [190.0, 0.0, ""]:
        frames.append([99, 9, 4, 1795235952, mid])
    frames.append([99, -1, 4, 1795235952, 190.0])  # no request id
    return frames


@pytest.mark.parametrize("version", [157, 178, 200, 201, 207])
def test_tick_by_tick_fast_decode_matches_ibapi_field_for_field(version: int) -> None:
    if version > 200 and not _TAKES_MSG_ID:
        pytest.skip("ibapi 9.81 has no binary message ids")
    _check_against_ibapi(_tbt_frames(), version)
    # a tick type IB's decoder reads as nothing, and a truncated one, stay with IB's decoder
    assert not decode_fast([b"99", b"7", b"0", b"1795235950"], lambda e: None, 200)
    assert not decode_fast([b"99", b"7", b"1", b"1795235950", b"190.0"], lambda e: None, 200)


def _proto_messages() -> list[tuple[int, bytes]]:
    pb = pytest.importorskip("ibapi.protobuf.TickPrice_pb2")
    from ibapi.protobuf.TickGeneric_pb2 import TickGeneric
    from ibapi.protobuf.TickSize_pb2 import TickSize
    from ibapi.protobuf.TickString_pb2 import TickString

    out: list[tuple[int, bytes]] = []
    sizes: list[str | None] = ["100", "0", "12.5", "0.0001", "1E+2", "NaN",
                               str(2**127 - 1), "2147483647", None]
    for tick_type, price, size, (mask, req_id) in itertools.product(
            [1, 2, 4, 9, 66, 37, 105, None], [190.01, 0.0, 1.7976931348623157e308, None], sizes,
            [(0, 7), (7, 0), (None, None)]):
        kwargs = {k: v for k, v in (("reqId", req_id), ("tickType", tick_type),
                                    ("price", price), ("size", size), ("attrMask", mask))
                  if v is not None}
        out.append((201, pb.TickPrice(**kwargs).SerializeToString()))
    for tick_type, size in itertools.product([0, 3, 8, 69, 107, NOT_SET, None], sizes):
        kwargs = {k: v for k, v in (("reqId", 9), ("tickType", tick_type), ("size", size))
                  if v is not None}
        out.append((202, TickSize(**kwargs).SerializeToString()))
    for value in ["1795235950", "", "café", "a;b;c;;", None]:
        for tick_type in (45, 32, 109, NOT_SET):
            kwargs = {k: v for k, v in (("reqId", 11), ("tickType", tick_type),
                                        ("value", value)) if v is not None}
            out.append((246, TickString(**kwargs).SerializeToString()))
    for gvalue in [0.0, 1.0, 3.5, -2.0, float("nan"), None]:
        kwargs = {k: v for k, v in (("reqId", 13), ("tickType", 49), ("value", gvalue))
                  if v is not None}
        out.append((245, TickGeneric(**kwargs).SerializeToString()))
    out.append((201, b""))  # every field absent
    return out


@pytest.mark.parametrize("version", [206, 220, 225])
def test_protobuf_ticks_match_ibapi_field_for_field(version: int) -> None:
    expected: list[Event] = []
    decoder = Decoder(EventWrapper(expected.append), version)
    for msg_id, body in _proto_messages():
        expected.clear()
        decoder.processProtoBuf(body, msg_id - 200)
        events: list[Event] = []
        assert decode_proto_fast(msg_id, body, events.append)
        assert _plain(events) == _plain(expected), (msg_id, body)


def test_protobuf_callbacks_emit_nothing() -> None:
    pb = pytest.importorskip("ibapi.protobuf.TickPrice_pb2")
    events: list[Event] = []
    wrapper = EventWrapper(events.append)
    wrapper.tickPriceProtoBuf(pb.TickPrice(reqId=1, tickType=1, price=1.0))
    assert events == []
    assert not decode_proto_fast(249, b"", events.append)  # currentTime: left to IB's decoder


def _tick_by_tick_messages() -> list[bytes]:
    pb = pytest.importorskip("ibapi.protobuf.TickByTickData_pb2")
    from ibapi.protobuf.HistoricalTick_pb2 import HistoricalTick
    from ibapi.protobuf.HistoricalTickBidAsk_pb2 import HistoricalTickBidAsk
    from ibapi.protobuf.HistoricalTickLast_pb2 import HistoricalTickLast
    from ibapi.protobuf.TickAttribBidAsk_pb2 import TickAttribBidAsk
    from ibapi.protobuf.TickAttribLast_pb2 import TickAttribLast

    def some(**kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in kwargs.items() if v is not None}

    out: list[bytes] = []
    sizes = ["100", "0", "12.5", "1E+2", "NaN", str(2**127 - 1), None]
    for (req_id, tick_type, time_, price, size, flags) in itertools.product(
            [7, -1, None], [1, 2, 3, 4, 0, None], [1795235950, 0, None], [190.01, 0.0, None],
            sizes, [(True, False), (False, True), None]):
        last = HistoricalTickLast(**some(
            time=time_, price=price, size=size, exchange="ISLAND" if size else None,
            specialConditions="T" if price else None,
            tickAttribLast=TickAttribLast(pastLimit=flags[0], unreported=flags[1])
            if flags else None))
        quote = HistoricalTickBidAsk(**some(
            time=time_, priceBid=price, priceAsk=price and price + 0.01, sizeBid=size,
            sizeAsk="7" if size else None,
            tickAttribBidAsk=TickAttribBidAsk(bidPastLow=flags[0], askPastHigh=flags[1])
            if flags else None))
        mid = HistoricalTick(**some(time=time_, price=price))
        body = {1: "historicalTickLast", 2: "historicalTickLast", 3: "historicalTickBidAsk",
                4: "historicalTickMidPoint"}.get(tick_type or 0)
        inner = {"historicalTickLast": last, "historicalTickBidAsk": quote,
                 "historicalTickMidPoint": mid}
        out.append(pb.TickByTickData(**some(reqId=req_id, tickType=tick_type)).SerializeToString()
                   if body is None else
                   pb.TickByTickData(**some(reqId=req_id, tickType=tick_type,
                                            **{body: inner[body]})).SerializeToString())
    out.append(pb.TickByTickData(reqId=3, tickType=3).SerializeToString())  # no tick at all
    return out


@pytest.mark.parametrize("version", [208, 225])
def test_protobuf_tick_by_tick_matches_ibapi_field_for_field(version: int) -> None:
    expected: list[Event] = []
    decoder = Decoder(EventWrapper(expected.append), version)
    for body in _tick_by_tick_messages():
        expected.clear()
        decoder.processProtoBuf(body, 99)
        events: list[Event] = []
        assert decode_proto_fast(299, body, events.append)
        assert _plain(events) == _plain(expected), body
