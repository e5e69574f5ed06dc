"""Values a server version changes without changing a layout, through IB's 10.x client at the
version matrix of ``test_versions``: UTC time stamps end in Z from 214, US-stock volume ticks are
lots of 100 before 220 and shares from it, odd-lot quotes (generic tick 787) exist from 225, and
prices sit on the tick grid at every version (224). Each assertion names the version where the
value switches, so a switch at the wrong version fails."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from ibapi.contract import Contract
from ibrecorder import IBClient
from orderkit import IBAPI_10, MSFT, make_order, next_id, status_of, stock
from test_versions import VERSIONS

from twsbus.testing import SimulatorThread

pytestmark = pytest.mark.skipif(not IBAPI_10, reason="ibapi 9.81 speaks only up to 157")

ES = 637533641


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
def versioned(request: pytest.FixtureRequest,
              strict_decoding: list[str]) -> Iterator[tuple[int, SimulatorThread, IBClient]]:
    version = request.param
    with SimulatorThread(tick_interval=0.05, max_version=version, time_zone="UTC") as sim:
        client = IBClient().start(sim.port)
        try:
            assert client.serverVersion() == version
            yield version, sim, client
        finally:
            client.stop()


def _first(ib: IBClient, callback: str, req_id: int, tick_type: int) -> object:
    args = ib.rec.wait_for(callback, lambda a: a[0] == req_id and a[1] == tick_type)[0]
    return args[2]


def test_volume_ticks_are_lots_of_100_before_220_and_shares_from_220(
        versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    version, sim, ib = versioned
    ib.reqMktData(1, stock("MSFT"), "", True, False, [])  # a snapshot: the quote stands still
    ib.rec.wait_for("tickSnapshotEnd", lambda a: a[0] == 1)
    shares = sim.call(lambda s: s.market.quote(MSFT).volume)
    assert shares % 100 == 0 and shares >= 10_000
    volume = float(str(_first(ib, "tickSize", 1, 8)))
    assert volume == (shares if version >= 220 else shares / 100), (version, volume, shares)

    future = Contract()
    future.conId, future.exchange = ES, "CME"
    ib.reqMktData(2, future, "", True, False, [])
    ib.rec.wait_for("tickSnapshotEnd", lambda a: a[0] == 2)
    contracts = sim.call(lambda s: s.market.quote(ES).volume)
    assert float(str(_first(ib, "tickSize", 2, 8))) == contracts  # not a US stock: as it is

    ib.reqMktData(3, stock("TSLA"), "165", False, False, [])  # average volume with the rest
    average = float(str(_first(ib, "tickSize", 3, 21)))
    first_volume = float(str(_first(ib, "tickSize", 3, 8)))
    assert average == 9 * first_volume  # the simulator's average is 9x the day's, in one unit


def test_prices_sit_on_the_tick_grid_at_every_version(
        versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    _, _, ib = versioned
    eur = Contract()
    eur.conId, eur.exchange = 12087792, "IDEALPRO"
    ib.reqMktData(4, eur, "", False, False, [])
    ib.reqMktData(5, stock(), "", False, False, [])
    for req_id, tick, places in ((4, 0.00005, 5), (5, 0.01, 2)):
        ib.rec.wait_for("tickPrice", lambda a, r=req_id: a[0] == r, count=4)
        prices = [a[2] for a in ib.rec.of("tickPrice") if a[0] == req_id and a[2] > 0]
        for price in prices:  # on the grid, and no binary tail past the tick's decimals
            assert abs(round(price / tick) * tick - price) < tick / 1000, (req_id, price)
            assert round(price, places) == price, (req_id, price)


def test_odd_lot_quotes_answer_generic_tick_787_from_225(
        versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    version, _, ib = versioned
    ib.reqMktData(6, stock(), "787", False, False, [])
    if version < 225:
        (_, code, message), = ib.rec.wait_for("error", lambda a: a[0] == 6)
        assert code == 321 and "787" in message
        return
    bid, ask = _first(ib, "tickPrice", 6, 1), _first(ib, "tickPrice", 6, 2)
    odd_bid, odd_ask = _first(ib, "tickPrice", 6, 105), _first(ib, "tickPrice", 6, 106)
    assert isinstance(odd_bid, float) and isinstance(odd_ask, float)
    assert bid <= odd_bid < odd_ask <= ask  # type: ignore[operator]
    for tick_type in (107, 108):
        assert 1 <= float(str(_first(ib, "tickSize", 6, tick_type))) <= 99
    assert (_first(ib, "tickString", 6, 109), _first(ib, "tickString", 6, 110)) == ("Q", "P")
    assert not [a for a in ib.rec.of("error") if a[0] == 6]


def test_utc_execution_and_completion_times_end_in_z_from_214(
        versioned: tuple[int, SimulatorThread, IBClient]) -> None:
    version, _, ib = versioned
    oid = next_id(ib)
    ib.placeOrder(oid, stock(), make_order("BUY", 10, "MKT"))
    status_of(ib, oid, "Filled")
    (_, _, execution), = ib.rec.wait_for("execDetails", lambda a: a[2].orderId == oid)[:1]
    ib.reqCompletedOrders(False)
    ib.rec.wait_for("completedOrdersEnd")
    (_, _, state), = ib.rec.of("completedOrder")[:1]
    z = "Z" if version >= 214 else ""
    for stamp in (execution.time, state.completedTime):
        assert re.fullmatch(r"\d{8}-\d\d:\d\d:\d\d" + z, stamp), (version, stamp)
        when = datetime.strptime(stamp[:17], "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
        assert abs(when.timestamp() - time.time()) < 60
