"""The latency load generator's frames are TWS's, byte for byte, on every wire: the stamp frame
is encoded once around a placeholder and the send time put in its place."""

from __future__ import annotations

from typing import Any

import pytest

from twsbus.sim import codec, loadgen
from twsbus.sim.msgids import ToClient
from twsbus.sim.session import Subscription
from twsbus.sim.values import size_field

NOW = 1_796_000_000_123_456_789  # a send time: 19 digits, as time.time_ns() has until 2286


class Session:
    """What a paced target reads of a client session: its version and its encoder."""

    def __init__(self, version: int) -> None:
        self.version = version

    def encode(self, fields: Any) -> bytes:
        return codec.encode(self.version, fields)


@pytest.mark.parametrize("version", [157, 200, 203, 206, 225])
def test_a_paced_tick_is_the_frames_the_session_would_encode(
        version: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if version >= codec.PROTOBUF_FROM:
        pytest.importorskip("ibapi.protobuf", reason="ibapi 9.81 has no protobuf schemas")
    session = Session(version)
    target = loadgen._PacedTarget(session, Subscription("mkt_data", 7), 10.0, 10.01)  # type: ignore[arg-type]
    monkeypatch.setattr(loadgen.time, "time_ns", lambda: NOW)
    price = session.encode((ToClient.TICK_PRICE, 6, 7, loadgen.BID, 10.01,
                            size_field(version, 100 + 3), 1))
    stamp = session.encode((ToClient.TICK_STRING, 6, 7, loadgen.LAST_TIMESTAMP, str(NOW)))
    assert target.frames(1, 3) == price + stamp
