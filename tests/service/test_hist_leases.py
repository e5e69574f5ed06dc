"""Subscriptions under TWS's other limits, in-process (scripted upstream, fake clock):
``hist_bars`` streams take their turn under IB's historical-data limits with the historical
queries, and tick-by-tick subscriptions have their own budget (429 past it, before TWS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from scripted import FakeClock, Recorder, ScriptedUpstream
from waiting import wait_until

from twsbus.errors import BudgetExhausted
from twsbus.messages import Contract
from twsbus.service.histpacing import HistoricalPacer, HistRules
from twsbus.service.leases import LeaseRegistry
from twsbus.service.publisher import Publisher
from twsbus.subjects import surface

AAPL, MSFT, IBM = 265598, 272093, 8314


async def _resolve(contract: Contract) -> dict[str, Any]:
    return {"conId": contract.conId, "exchange": "SMART"}


class Rig:
    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.upstream = ScriptedUpstream()
        publisher = Publisher("e1")
        publisher.attach(Recorder())
        self.leases = LeaseRegistry(surface(), self.upstream, self.upstream.router, publisher,
                                    _resolve, epoch="e1", confirm_window=0.0, clock=self.clock,
                                    **options)

    async def subscribe(self, con_id: int, kind: str, **params: Any) -> Any:
        body = msgspec.json.encode({"contract": {"conId": con_id}, **params})
        return await self.leases.subscribe(kind, body)


@pytest.fixture
async def paced() -> AsyncIterator[Rig]:
    rig = Rig()
    pacer = HistoricalPacer(HistRules(window=600, window_max=1), clock=rig.clock)
    rig.leases.pacer = pacer
    runner = asyncio.create_task(pacer.run())
    yield rig
    runner.cancel()


async def test_hist_bars_streams_are_sent_under_the_historical_limits(paced: Rig) -> None:
    await paced.subscribe(AAPL, "hist_bars", barSize="5 mins")
    assert paced.upstream.methods() == ["reqHistoricalData"]
    pacer = paced.leases.pacer
    assert pacer is not None and pacer.queue.granted == 1 and pacer.queue.open == 0
    with pytest.raises(BudgetExhausted) as refused:  # the window is full for ten minutes
        await paced.subscribe(MSFT, "hist_bars", barSize="5 mins")
    assert refused.value.retry_after is not None and refused.value.retry_after >= 590
    assert paced.upstream.methods() == ["reqHistoricalData"]  # nothing more reached TWS
    await paced.subscribe(AAPL, "hist_bars", barSize="5 mins")  # a lease on the live one
    assert paced.upstream.methods() == ["reqHistoricalData"]


async def test_tick_by_tick_has_its_own_budget() -> None:
    rig = Rig(max_tbt=2)
    await rig.subscribe(AAPL, "tbt", tickType="Last")
    await rig.subscribe(AAPL, "tbt", tickType="BidAsk")
    with pytest.raises(BudgetExhausted, match="tick-by-tick subscriptions budget exhausted"):
        await rig.subscribe(MSFT, "tbt", tickType="Last")
    await rig.subscribe(MSFT, "ticks")  # market data lines are another budget
    assert rig.upstream.methods() == ["reqTickByTickData"] * 2 + ["reqMktData"]
    assert rig.leases.tbt_used == 2 and rig.leases.refused == 1


async def test_a_lingering_tick_by_tick_stream_gives_way() -> None:
    rig = Rig(max_tbt=1)
    grant = await rig.subscribe(AAPL, "tbt", tickType="Last")
    rig.leases.release([grant.lease])
    await rig.subscribe(IBM, "tbt", tickType="Last")
    assert rig.upstream.methods() == ["reqTickByTickData", "cancelTickByTickData",
                                      "reqTickByTickData"]


async def test_after_a_reconnect_hist_bars_streams_are_asked_again_as_the_limits_allow(
        paced: Rig) -> None:
    pacer = paced.leases.pacer
    assert pacer is not None
    await paced.subscribe(AAPL, "hist_bars", barSize="5 mins")
    paced.upstream.connected = False
    paced.leases.tws_lost("TWS connection lost")
    paced.upstream.connected = True
    paced.leases.tws_ready()
    await asyncio.sleep(0)
    assert paced.upstream.methods() == ["reqHistoricalData"]  # the window is full: it waits
    assert pacer.queue.queued == 1
    paced.clock.advance(600.0)  # the first request leaves the ten-minute window
    pacer.wake()
    await wait_until(lambda: paced.upstream.methods().count("reqHistoricalData") == 2,
                     what="the paced re-request")
    assert pacer.queue.open == 0  # its turn was given back once sent
