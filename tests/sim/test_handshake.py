"""The simulator's handshake and session-level requests, seen through IB's real client."""

from __future__ import annotations

import time

from ibrecorder import IBClient

from twsbus.testing import SimulatorThread


def test_ibapi_connects_and_gets_accounts_and_next_id(sim: SimulatorThread, ib: IBClient) -> None:
    assert ib.rec.of("managedAccounts")[0][0] == "DU1234567"
    assert ib.rec.of("nextValidId")[0][0] >= 1
    assert sim.sim is not None
    assert 157 <= ib.serverVersion() <= sim.sim.config.max_version


def test_current_time_is_now(ib: IBClient) -> None:
    ib.reqCurrentTime()
    (t,) = ib.rec.wait_for("currentTime")[0]
    assert abs(t - time.time()) < 5


def test_farm_ok_messages_arrive_after_connect(ib: IBClient) -> None:
    codes = {args[1] for args in ib.rec.wait_for("error", count=3)}
    assert {2104, 2106, 2158} <= codes


def test_duplicate_client_id_is_refused_with_326(sim: SimulatorThread, ib: IBClient) -> None:
    other = IBClient()
    other.connect("127.0.0.1", sim.port, 0)
    import threading

    threading.Thread(target=other.run, daemon=True).start()
    err = other.rec.wait_for("error", lambda a: a[1] == 326)
    assert "client id is already in use" in err[0][2]
    other.disconnect()


def test_control_endpoint_counts_requests(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqCurrentTime()
    ib.rec.wait_for("currentTime")
    state = sim.control.state()
    assert state["requests"]["REQ_CURRENT_TIME"] == 1
    assert state["requests"]["START_API"] == 1
    assert state["clients"][0]["version"] == ib.serverVersion()
