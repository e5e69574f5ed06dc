"""The query executor in-process: coalescing, one deadline, withdrawal, id-less queries."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from scripted import ScriptedUpstream

from twsbus.errors import Timeout
from twsbus.service.queries import QueryExecutor
from twsbus.subjects import surface


def executor(upstream: ScriptedUpstream) -> QueryExecutor:
    return QueryExecutor(surface(), upstream, upstream.router, default_timeout=5.0)


def body(**fields: object) -> bytes:
    return msgspec.json.encode(fields)


async def _until(predicate: object, turns: int = 100) -> None:
    for _ in range(turns):  # loop turns, not time: the executor runs on this loop
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_identical_queries_in_flight_are_one_tws_request() -> None:
    up = ScriptedUpstream()
    q = executor(up)
    request = body(contract={"conId": 265598})
    both = asyncio.gather(q.execute("contract_details", request),
                          q.execute("contract_details", request))
    await _until(lambda: up.calls)
    key, _ = up.last("reqContractDetails")
    up.emit("contractDetails", key, contractDetails={"contract": {"conId": 265598}})
    up.emit("contractDetailsEnd", key)
    first, second = await both
    assert first == second == [{"contract": {"conId": 265598}}]
    assert up.methods() == ["reqContractDetails"] and q.coalesced == 1


async def test_a_query_still_queued_at_its_deadline_is_withdrawn_not_cancelled() -> None:
    up = ScriptedUpstream(still_queued=True)
    with pytest.raises(Timeout, match="not sent"):
        await executor(up).execute("historical_data", body(contract={"conId": 1},
                                                           timeout=0.05))
    assert up.withdrawn == ["reqHistoricalData"]
    assert "cancelHistoricalData" not in up.methods()


async def test_a_query_sent_but_unanswered_is_cancelled_at_its_deadline() -> None:
    up = ScriptedUpstream()
    with pytest.raises(Timeout, match="did not answer"):
        await executor(up).execute("historical_data", body(contract={"conId": 1},
                                                           timeout=0.05))
    key, _ = up.last("reqHistoricalData")
    assert up.last("cancelHistoricalData")[0] == key


async def test_id_less_queries_wait_in_line_within_their_own_deadline() -> None:
    up = ScriptedUpstream()
    q = executor(up)
    first = asyncio.ensure_future(q.execute("account_updates", body(acctCode="A")))
    second = asyncio.ensure_future(q.execute("account_updates", body(acctCode="B",
                                                                     timeout=0.05)))
    await _until(lambda: up.calls)
    with pytest.raises(Timeout, match="one at a time"):
        await second  # never sent: the first held the line past its deadline
    assert up.methods() == ["reqAccountUpdates"]
    up.emit("updateAccountValue", None, key="NetLiquidation", val="1", currency="USD",
            accountName="A")
    up.emit("accountDownloadEnd", None, accountName="A")
    assert len(await first) == 1


async def test_answers_that_name_their_argument_run_side_by_side() -> None:
    up = ScriptedUpstream()
    q = executor(up)
    rules = asyncio.gather(q.execute("market_rule", body(marketRuleId=26)),
                           q.execute("market_rule", body(marketRuleId=32)))
    await _until(lambda: len(up.calls) == 2)
    up.emit("marketRule", None, marketRuleId=32, priceIncrements=[{"lowEdge": 0.0}])
    up.emit("marketRule", None, marketRuleId=26, priceIncrements=[{"lowEdge": 0.0}])
    first, second = await rules
    assert (first["marketRuleId"], second["marketRuleId"]) == (26, 32)


async def test_historical_queries_take_turns_under_ibs_historical_rules() -> None:
    from twsbus.service.histpacing import REQUESTER, HistoricalPacer, HistRules

    up = ScriptedUpstream()
    q = executor(up)
    q.pacer = HistoricalPacer(HistRules(identical_gap=60))
    runner = asyncio.create_task(q.pacer.run())
    try:
        REQUESTER.set("strategy-a")
        request = body(contract={"conId": 265598}, durationStr="1 D")
        first = asyncio.ensure_future(q.execute("historical_data", request))
        await _until(lambda: up.calls)
        key, _ = up.last("reqHistoricalData")
        up.emit("historicalDataEnd", key, start="", end="")
        assert await first == []
        # The same request again within IB's 15 s (here 60 s) would be a pacing violation:
        # the caller, whose timeout cannot be met, is told when to come back instead.
        with pytest.raises(Exception) as refused:
            await q.execute("historical_data", body(contract={"conId": 265598},
                                                    durationStr="1 D", timeout=1))
        assert getattr(refused.value, "code", None) == 429
        assert refused.value.retry_after > 50  # type: ignore[attr-defined]
        assert up.methods() == ["reqHistoricalData"]
    finally:
        runner.cancel()
