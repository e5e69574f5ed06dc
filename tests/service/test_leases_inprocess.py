"""The lease registry in-process: a scripted upstream, a fake clock, no sleeps, no sockets."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from scripted import FakeClock, Recorder, ScriptedUpstream

from twsbus.errors import BudgetExhausted, NotConnected
from twsbus.messages import Contract
from twsbus.service.leases import LeaseRegistry
from twsbus.service.publisher import Publisher
from twsbus.subjects import surface

AAPL, MSFT = 265598, 272093


async def _resolve(contract: Contract) -> dict[str, Any]:
    return {"conId": contract.conId, "exchange": "SMART"}


class Rig:
    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.upstream = ScriptedUpstream()
        self.out = Recorder()
        self.publisher = Publisher("e1")
        self.publisher.attach(self.out)
        self.leases = LeaseRegistry(
            surface(), self.upstream, self.upstream.router, self.publisher, _resolve,
            epoch="e1", confirm_window=0.0, clock=self.clock,
            **{"linger": 5.0, "ttl": 30.0, **options})

    async def subscribe(self, con_id: int, kind: str = "ticks", **params: Any) -> Any:
        body = msgspec.json.encode({"contract": {"conId": con_id}, **params})
        return await self.leases.subscribe(kind, body)


async def test_one_upstream_request_per_key_however_many_leases() -> None:
    rig = Rig()
    first = await rig.subscribe(AAPL)
    second = await rig.subscribe(AAPL)
    assert rig.upstream.methods() == ["reqMktData"]
    assert first.subject == second.subject == f"tws.ticks.{AAPL}"
    assert first.lease != second.lease and len(first.lease) >= 22  # >= 128 random bits


async def test_the_last_release_cancels_upstream_only_after_the_linger() -> None:
    rig = Rig()
    grant = await rig.subscribe(AAPL)
    (stream,) = rig.leases.streams.values()
    req_id, _ = rig.upstream.last("reqMktData")
    assert rig.leases.lingering_for(stream) is None
    assert rig.leases.release([grant.lease]) == ([grant.lease], [])
    assert rig.leases.lingering_for(stream) == 5.0  # status shows it
    rig.clock.advance(4.9)
    rig.leases.sweep()
    assert "cancelMktData" not in rig.upstream.methods()
    assert rig.leases.lingering_for(stream) == pytest.approx(0.1)
    again = await rig.subscribe(AAPL)  # a quick re-subscribe reuses the lingering stream
    assert rig.upstream.methods() == ["reqMktData"]
    assert rig.leases.lingering_for(stream) is None
    rig.leases.release([again.lease])
    rig.clock.advance(5.1)
    rig.leases.sweep()
    assert rig.upstream.last("cancelMktData")[0] == req_id
    assert rig.leases.streams == {}


async def test_a_lease_not_renewed_expires_and_a_renewed_one_lives() -> None:
    rig = Rig()
    kept = await rig.subscribe(AAPL, ttl=10)
    lost = await rig.subscribe(MSFT, ttl=10)
    rig.clock.advance(8)
    assert rig.leases.renew([kept.lease, "nobody's"]) == ([kept.lease], ["nobody's"])
    rig.clock.advance(3)
    rig.leases.sweep()
    assert kept.lease in rig.leases.leases and lost.lease not in rig.leases.leases
    assert rig.leases.expired == 1
    rig.clock.advance(5.1)
    rig.leases.sweep()
    assert rig.upstream.methods().count("cancelMktData") == 1


async def test_past_the_line_budget_a_subscribe_is_refused_before_tws() -> None:
    rig = Rig(max_lines=1)
    await rig.subscribe(AAPL)
    with pytest.raises(BudgetExhausted, match="market-data lines"):
        await rig.subscribe(MSFT)
    assert rig.upstream.methods() == ["reqMktData"]
    assert rig.leases.refused == 1


async def test_a_lingering_stream_gives_its_line_to_a_new_subscriber() -> None:
    rig = Rig(max_lines=1)
    grant = await rig.subscribe(AAPL)
    rig.leases.release([grant.lease])
    await rig.subscribe(MSFT)
    assert rig.upstream.methods() == ["reqMktData", "cancelMktData", "reqMktData"]


async def test_generic_ticks_merge_across_leases_with_one_restart() -> None:
    rig = Rig()
    await rig.subscribe(AAPL, genericTickList="233")
    await rig.subscribe(AAPL, genericTickList="236")
    assert rig.upstream.methods() == ["reqMktData", "cancelMktData", "reqMktData"]
    assert rig.upstream.last("reqMktData")[1]["genericTickList"] == "233,236"


async def test_a_reconnect_marks_streams_stale_then_requests_them_again() -> None:
    rig = Rig()
    grant = await rig.subscribe(AAPL)
    first_id, _ = rig.upstream.last("reqMktData")
    rig.upstream.connected = False
    rig.leases.tws_lost("TWS connection lost")
    rig.publisher.flush()
    assert rig.out.on(grant.subject)[-1]["state"] == "stale"
    with pytest.raises(NotConnected):
        await rig.subscribe(MSFT)
    rig.upstream.connected = True
    rig.leases.tws_ready()
    second_id, _ = rig.upstream.last("reqMktData")
    assert second_id != first_id
    rig.upstream.emit("tickPrice", second_id, tickType=1, field="bid", price=1.5)
    rig.publisher.flush()
    messages = rig.out.on(grant.subject)
    assert [m.get("state", m.get("bid")) for m in messages][-2:] == ["ok", 1.5], messages
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))


async def test_a_watchlist_stream_is_held_without_any_lease() -> None:
    rig = Rig()
    await rig.leases.watch("ticks", {"contract": {"conId": AAPL}})
    (stream,) = rig.leases.streams.values()
    assert stream.permanent and not stream.leases and rig.leases.leases == {}
    rig.clock.advance(1000)
    rig.leases.sweep()
    assert rig.upstream.methods() == ["reqMktData"]  # never cancelled: no lease to lose
    grant = await rig.subscribe(AAPL)  # a lease on it shares the one request
    rig.leases.release([grant.lease])
    rig.clock.advance(10)
    rig.leases.sweep()
    assert rig.upstream.methods() == ["reqMktData"] and stream.permanent
