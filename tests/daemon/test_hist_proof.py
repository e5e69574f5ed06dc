"""The proof of issue 14: ten strategy processes warming up at once through one daemon keep IB's
historical-data rules (shrunk to a 6 s window, same shape), with nothing starved and the whole
mix done close to the rules' own lower bound; without the daemon's scheduler the simulator
counts the violations it prevents. The simulator enforces the rules (``hist_pacing``) with the
same settings as the daemon."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks import histproof
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(tick_interval=0.05, extra_instruments=histproof.CONTRACTS) as s:
        s.control.post("/config", hist_pacing=True, **histproof.RULES)
        yield s


@pytest.fixture(scope="module")
def ns() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


@pytest.mark.timeout(120)
def test_ten_strategies_keep_ibs_historical_rules_fairly_near_the_lower_bound(
        sim: SimulatorThread, ns: NatsServer) -> None:
    deals = histproof.mix(requesters=10, total=300, distinct=120, bid_ask=10)
    with DaemonProcess(ns.url, sim.port, env=histproof.env()).start() as daemon:
        sim.control.post("/reset")
        run = histproof.run_workers(ns.url, "tws", deals)
        sent = sim.control.state()["requests"]["REQ_HISTORICAL_DATA"]
        # A latecomer asks for every series again: the cache answers, TWS sees nothing.
        again = histproof.run_workers(ns.url, "tws", [histproof.distinct(deals)])
        status = daemon.status()
    assert sim.control.state()["requests"]["REQ_HISTORICAL_DATA"] == sent == 120
    late = histproof.summarize(again, [histproof.distinct(deals)])
    assert late["cache_hits"] == late["requests"] == 120, late
    result = histproof.summarize(run, deals)
    print(result)  # the measured numbers, for the report
    state = sim.control.state()["historical"]
    assert state["violations"] == 0, state
    assert result["requests"] == 300 and result["other"] == 0, result
    assert result["refused_429"] == result["refused_with_retry_after"]
    # Round robin: the smallest strategy is served within a window of the requests granted
    # before it arrived (first come, first served while the window has room), never last.
    smallest, largest = result["smallest_requester"], result["largest_requester"]
    assert smallest["longest_wait_s"] < 0.75 * largest["longest_wait_s"], result
    assert result["ratio"] is not None and result["ratio"] <= 1.2, result
    assert status is not None and status["historical"]["granted"] >= 1


@pytest.mark.timeout(120)
def test_without_the_scheduler_the_same_kind_of_mix_breaks_the_rules(
        sim: SimulatorThread, ns: NatsServer) -> None:
    deals = histproof.mix(requesters=4, total=90, distinct=80, bid_ask=10)
    with DaemonProcess(ns.url, sim.port, client_id=1, prefix="tws.nopace",
                       env=histproof.env(pacing=False)).start():
        sim.control.post("/reset")
        run = histproof.run_workers(ns.url, "tws.nopace", deals, timeout=20)
    state = sim.control.state()["historical"]
    assert state["violations"] > 0, state
    assert sum(1 for rs in run["requesters"] for r in rs if r["code"] == 502) > 0
