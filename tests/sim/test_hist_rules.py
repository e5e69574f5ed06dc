"""The simulator keeps IB's historical-data limits when asked to (``hist_pacing``): error 162
with TWS's message for an identical request within the gap, a sixth request for one contract,
exchange and tick type within the burst window, and more than the window allows (BID_ASK
counting twice); the open limit with a slow data farm; and the violations in ``GET /state``.
The rules' clock is a fake, so the ten-minute window is tested as it is."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from ibapi.contract import Contract
from ibrecorder import IBClient

from twsbus.sim import histrules
from twsbus.testing import SimulatorThread

PACING = "Historical Market Data Service error message:Historical data request pacing violation"


def stock(symbol: str = "AAPL") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(sim: SimulatorThread) -> FakeClock:
    fake = FakeClock()

    def install(s: Any) -> None:
        histrules.book(s).clock = fake

    sim.call(install)
    sim.control.post("/config", hist_pacing=True)
    return fake


@pytest.fixture
def client(sim: SimulatorThread) -> Iterator[IBClient]:
    c = IBClient().start(sim.port, client_id=7)
    try:
        yield c
    finally:
        c.stop()


def bars(ib: IBClient, req_id: int, duration: str = "1 D", what: str = "TRADES",
         contract: Contract | None = None) -> None:
    ib.reqHistoricalData(req_id, contract or stock(), "20261118 16:00:00 US/Eastern", duration,
                         "1 hour", what, 1, 1, False, [])


def outcome(ib: IBClient, req_id: int, timeout: float = 5.0) -> str:
    """"ok" when the bars came, else the error's code and message."""
    deadline = time.monotonic() + timeout
    with ib.rec.cond:
        while True:
            for name, args in ib.rec.calls:
                if name == "historicalDataEnd" and args[0] == req_id:
                    return "ok"
                if name == "error" and args[0] == req_id:
                    return f"{args[1]} {args[2]}"
            left = deadline - time.monotonic()
            assert left > 0, f"no answer to request {req_id}"
            ib.rec.cond.wait(left)


def test_identical_request_within_the_gap_is_a_pacing_violation(
        sim: SimulatorThread, clock: FakeClock, client: IBClient) -> None:
    bars(client, 1)
    assert outcome(client, 1) == "ok"
    clock.now += 14.9
    bars(client, 2)
    assert outcome(client, 2) == f"162 {PACING}"
    clock.now += 0.2  # 15.1 s after the first
    bars(client, 3)
    assert outcome(client, 3) == "ok"
    state = sim.control.state()["historical"]
    assert state["accepted"] == 2 and state["by_rule"]["identical"] == 1
    assert state["violations"] == 1


def test_sixth_request_for_one_contract_within_two_seconds_is_refused(
        sim: SimulatorThread, clock: FakeClock, client: IBClient) -> None:
    for i in range(1, 7):
        bars(client, i, duration=f"{i} D")
        clock.now += 0.1
    assert [outcome(client, i) for i in range(1, 6)] == ["ok"] * 5
    assert outcome(client, 6) == f"162 {PACING}"
    bars(client, 7, duration="7 D", what="MIDPOINT")  # another tick type: its own count
    assert outcome(client, 7) == "ok"
    clock.now += 2.0
    bars(client, 8, duration="8 D")
    assert outcome(client, 8) == "ok"
    assert sim.control.state()["historical"]["by_rule"]["burst"] == 1


def test_the_window_counts_bid_ask_twice(sim: SimulatorThread, clock: FakeClock,
                                         client: IBClient) -> None:
    sim.control.post("/config", hist_window_max=5, hist_window=600)
    symbols = ["AAPL", "MSFT", "IBM", "SPY"]
    bars(client, 1, what="BID_ASK", contract=stock(symbols[0]))  # 2
    bars(client, 2, what="BID_ASK", contract=stock(symbols[1]))  # 4
    bars(client, 3, contract=stock(symbols[2]))  # 5: the window is full
    bars(client, 4, contract=stock(symbols[3]))
    assert [outcome(client, i) for i in range(1, 5)] == ["ok", "ok", "ok", f"162 {PACING}"]
    clock.now += 599.0
    bars(client, 5, contract=stock(symbols[3]), duration="2 D")
    assert outcome(client, 5) == f"162 {PACING}"
    clock.now += 1.5  # the first ones left the ten-minute window
    bars(client, 6, contract=stock(symbols[3]), duration="3 D")
    assert outcome(client, 6) == "ok"
    state = sim.control.state()["historical"]
    assert state["by_rule"]["window"] == 2 and state["window_used"] == 1


def test_open_requests_past_the_limit_are_refused(sim: SimulatorThread, clock: FakeClock,
                                                  client: IBClient) -> None:
    sim.control.post("/config", hist_max_open=2, hist_latency=60.0)
    for i, symbol in enumerate(["AAPL", "MSFT", "IBM"], start=1):
        bars(client, i, contract=stock(symbol))
    code, message = outcome(client, 3).split(" ", 1)
    assert code == "162" and "simultaneous" in message
    state = sim.control.state()["historical"]
    assert state["open"] == 2 and state["by_rule"]["open"] == 1


def test_rules_are_off_unless_asked_for_and_reset_keeps_the_settings(
        sim: SimulatorThread, client: IBClient) -> None:
    bars(client, 1)
    bars(client, 2)
    assert [outcome(client, i) for i in (1, 2)] == ["ok", "ok"]
    assert sim.control.state()["historical"]["violations"] == 0
    sim.control.post("/config", hist_pacing=True, hist_identical_gap=60)
    bars(client, 3)
    bars(client, 4)
    assert [outcome(client, i) for i in (3, 4)] == ["ok", f"162 {PACING}"]
    sim.control.post("/reset")
    state = sim.control.state()["historical"]
    assert state["hist_identical_gap"] == 60 and state["violations"] == 0
    with pytest.raises(RuntimeError, match="hist_nonsense"):
        sim.control.post("/config", hist_nonsense=1)
