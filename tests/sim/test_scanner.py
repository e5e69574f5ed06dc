"""Market scanner subscriptions against the simulator, seen through IB's real client (10.x and
9.81), on the text wire (157, 200) and the protobuf one (225): ranked rows, repeated scans that
follow the market model, filters, TWS's limit of 10 scanners, cancellation and refusals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ibapi.scanner import ScannerSubscription
from ibapi.server_versions import MAX_CLIENT_VER
from ibapi.tag_value import TagValue
from ibrecorder import IBClient
from waiting import poll

from twsbus.sim.h_scanner import SCAN_TICKS
from twsbus.sim.market import Market
from twsbus.sim.universe import Universe
from twsbus.testing import SimulatorThread

pytestmark = pytest.mark.usefixtures("strict_decoding")

US_STOCKS = [i for i in Universe().instruments if i.sec_type == "STK" and i.currency == "USD"]


@pytest.fixture(params=[157, 200, 225])
def vib(request: pytest.FixtureRequest) -> Iterator[tuple[IBClient, SimulatorThread]]:
    """A client on a simulator capped at a server version (skipped when the client's own range
    ends below it, as 9.81's does at 157)."""
    if request.param > MAX_CLIENT_VER:
        pytest.skip(f"this ibapi tops out at {MAX_CLIENT_VER}")
    with SimulatorThread(tick_interval=0.05, max_version=request.param) as sim:
        client = IBClient().start(sim.port)
        try:
            if client.serverVersion() != request.param:
                pytest.skip(f"client tops out at {client.serverVersion()}")
            yield client, sim
        finally:
            client.stop()


def scan(code: str = "TOP_PERC_GAIN", location: str = "STK.US.MAJOR", rows: int = -1,
         **filters: Any) -> ScannerSubscription:
    sub = ScannerSubscription()
    sub.instrument, sub.locationCode, sub.scanCode, sub.numberOfRows = "STK", location, code, rows
    for name, value in filters.items():
        setattr(sub, name, value)
    return sub


def scans(ib: IBClient, req_id: int, count: int) -> list[list[tuple[int, int]]]:
    """The first ``count`` scans of ``req_id``, each as [(rank, conId)] in arrival order."""
    ib.rec.wait_for("scannerDataEnd", lambda a: a[0] == req_id, count=count, timeout=10)
    out: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    with ib.rec.cond:
        calls = list(ib.rec.calls)
    for name, args in calls:
        if name == "scannerData" and args[0] == req_id:
            current.append((args[1], args[2].contract.conId))
        elif name == "scannerDataEnd" and args[0] == req_id:
            out.append(current)
            current = []
    return out[:count]


def expected(code: str, steps: int, rows: int, seed: int = 1) -> list[int]:
    """The ranking a scan sends after ``steps`` steps of each stock's walk (the simulator's own
    market model, replayed here: a scanner alone on the tape steps every stock each tick)."""
    market = Market(Universe(), seed)
    for inst in US_STOCKS:
        for _ in range(steps):
            market.step(inst.con_id)
    quotes = {i.con_id: market.quote(i.con_id) for i in US_STOCKS}
    key = {"TOP_PERC_GAIN": lambda q: (q.last - q.close) / q.close,
           "TOP_PERC_LOSE": lambda q: (q.close - q.last) / q.close,
           "MOST_ACTIVE": lambda q: q.volume}[code]
    ranked = sorted(quotes, key=lambda con: (-key(quotes[con]), con))
    return ranked[:rows]


@pytest.mark.parametrize("code", ["TOP_PERC_GAIN", "MOST_ACTIVE", "TOP_PERC_LOSE"])
def test_scans_rank_the_stocks_and_repeat_as_the_market_moves(
        vib: tuple[IBClient, SimulatorThread], code: str) -> None:
    ib, _ = vib
    ib.reqScannerSubscription(7, scan(code, rows=5), [], [])
    got = scans(ib, 7, 3)
    for k, rows in enumerate(got):
        assert [rank for rank, _ in rows] == list(range(5))
        assert [con for _, con in rows] == expected(code, k * SCAN_TICKS, 5), f"scan {k}"
    assert got[1] != got[2] or got[0] != got[1]  # the ranks follow the tape


def test_a_row_carries_the_contract_as_tws_describes_it(
        vib: tuple[IBClient, SimulatorThread]) -> None:
    ib, _ = vib
    ib.reqScannerSubscription(3, scan("MOST_ACTIVE"), [], [TagValue("priceAbove", "1")])
    ib.rec.wait_for("scannerDataEnd", lambda a: a[0] == 3)
    rows = {a[2].contract.symbol: a for a in ib.rec.of("scannerData") if a[0] == 3}
    assert set(rows) == {i.symbol for i in US_STOCKS}  # 8 stocks, fewer than the 50 asked
    _, rank, details, distance, benchmark, projection, legs = rows["AAPL"]
    c = details.contract
    assert (c.conId, c.secType, c.exchange, c.currency, c.localSymbol, c.tradingClass) == \
        (265598, "STK", "SMART", "USD", "AAPL", "NMS")
    assert details.marketName == "NMS" and 0 <= rank < 8
    assert (distance, benchmark, projection, legs) == ("", "", "", "")


def test_price_filters_and_row_count_narrow_the_scan(ib: IBClient) -> None:
    ib.reqScannerSubscription(1, scan("MOST_ACTIVE", abovePrice=300.0), [], [])
    ib.reqScannerSubscription(2, scan("MOST_ACTIVE", belowPrice=300.0, rows=3), [], [])
    ib.reqScannerSubscription(3, scan("MOST_ACTIVE", location="STK.NYSE"), [], [])
    for req_id in (1, 2, 3):
        ib.rec.wait_for("scannerDataEnd", lambda a, r=req_id: a[0] == r)
    symbols = {r: {a[2].contract.symbol for a in ib.rec.of("scannerData") if a[0] == r}
               for r in (1, 2, 3)}
    assert symbols[1] == {"MSFT", "SPY"}
    assert len(symbols[2]) == 3 and not symbols[2] & {"MSFT", "SPY"}
    assert symbols[3] == {"IBM"}


def test_the_eleventh_scanner_is_refused_and_a_cancel_frees_its_slot(
        ib: IBClient, sim: SimulatorThread) -> None:
    for req_id in range(1, 11):
        ib.reqScannerSubscription(req_id, scan(), [], [])
    ib.rec.wait_for("scannerDataEnd", lambda a: a[0] == 10)
    ib.reqScannerSubscription(11, scan(), [], [])
    (err,) = ib.rec.wait_for("error", lambda a: a[0] == 11)
    assert err[1] == 322 and "Only 10 simultaneous API scanner subscriptions" in err[2]
    assert sim.control.state()["subscriptions"]["scanner"] == {"0": 10}
    ib.cancelScannerSubscription(4)
    poll(lambda: sim.control.state()["subscriptions"]["scanner"] == {"0": 9}, what="cancelled")
    ib.reqScannerSubscription(12, scan(), [], [])
    ib.rec.wait_for("scannerDataEnd", lambda a: a[0] == 12)
    assert not [a for a in ib.rec.of("error") if a[0] == 12]


def test_a_cancelled_scanner_stops_and_its_id_may_be_used_again(
        ib: IBClient, sim: SimulatorThread) -> None:
    ib.reqScannerSubscription(5, scan(), [], [])
    ib.rec.wait_for("scannerDataEnd", lambda a: a[0] == 5)
    ib.reqScannerSubscription(5, scan(), [], [])
    (dup,) = ib.rec.wait_for("error", lambda a: a[0] == 5)
    assert dup[1] == 322 and "Duplicate ticker ID" in dup[2]
    ib.cancelScannerSubscription(5)
    poll(lambda: "scanner" not in sim.control.state()["subscriptions"], what="no scanner left")
    ib.rec.clear()
    ib.reqScannerSubscription(5, scan("TOP_PERC_LOSE"), [], [])
    ib.rec.wait_for("scannerDataEnd", lambda a: a[0] == 5)
    assert sim.control.state()["requests"]["CANCEL_SCANNER_SUBSCRIPTION"] == 1


@pytest.mark.parametrize(("sub", "code", "text"), [
    (scan("NO_SUCH_SCAN"), 162, "not supported"),
    (scan(location="STK.MARS"), 162, "not configured for one of the chosen locations"),
])
def test_unknown_scans_and_locations_are_refused(
        ib: IBClient, sim: SimulatorThread, sub: ScannerSubscription, code: int,
        text: str) -> None:
    ib.reqScannerSubscription(9, sub, [], [])
    (err,) = ib.rec.wait_for("error", lambda a: a[0] == 9)
    assert err[1] == code and text in err[2]
    assert "scanner" not in sim.control.state()["subscriptions"]
