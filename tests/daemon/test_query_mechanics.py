"""How queries behave: validation, concurrency, coalescing, timeouts, payload limits, pacing."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from daemonstack import Stack
from nats.aio.client import Client
from natsreq import ask
from waiting import eventually

from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

AAPL = {"conId": 265598}


pytestmark = pytest.mark.usefixtures("clean_faults")


def _requests(stack: Stack, name: str) -> int:
    return int(stack.sim.control.state()["requests"].get(name, 0))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"this is not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"contract": {"conId": "AAPL"}}', "$.contract.conId"),
        (b'{"contract": {"conId": 265598}, "bogus": 1}', "unknown field `bogus`"),
        (b'{"contract": {"conId": 265598, "sectype": "STK"}}', "unknown field `sectype`"),
        (b'{}', "missing required field `contract`"),
        (b'{"contract": {"conId": 265598}, "timeout": -1}', "timeout"),
    ],
)
async def test_bad_bodies_get_400_naming_the_problem(nc: Client, stack: Stack, body: bytes,
                                                     needle: str) -> None:
    before = _requests(stack, "REQ_CONTRACT_DATA")
    reply = await ask(nc, "contract_details", body)
    assert reply.code == 400, reply
    assert reply.headers["Nats-Service-Error-Code"] == "400"
    assert needle in reply.error["message"], reply.error
    assert needle in reply.headers["Nats-Service-Error"]
    assert _requests(stack, "REQ_CONTRACT_DATA") == before  # nothing reached TWS


async def test_a_huge_body_is_refused_and_the_daemon_keeps_serving(nc: Client) -> None:
    body = json.dumps({"contract": AAPL, "bogus": "x" * 500_000}).encode()
    reply = await ask(nc, "contract_details", body)
    assert reply.code == 413
    assert len(reply.headers["Nats-Service-Error"]) < 500
    assert (await ask(nc, "current_time")).code == 0


async def test_bad_order_fields_are_named(nc: Client) -> None:
    reply = await ask(nc, "place_order", {"contract": AAPL, "order": {
        "action": "BUY", "totalQuantity": 1, "orderType": "MKT", "limitPrice": 1}})
    assert reply.code == 400 and "limitPrice" in reply.error["message"]


async def test_concurrent_queries_do_not_serialize(nc: Client, stack: Stack) -> None:
    """Five queries TWS answers only after a second each: the daemon puts all five on the wire
    before the first answer comes back (one by one, TWS would have seen one)."""
    stack.sim.control.post("/faults", delay={"REQ_CONTRACT_DATA": 1.0})
    before = _requests(stack, "REQ_CONTRACT_DATA")
    symbols = ["AAPL", "MSFT", "IBM", "TSLA", "AMZN"]
    pending = [asyncio.ensure_future(
        ask(nc, "contract_details", {"contract": {"symbol": s, "secType": "STK"}}))
        for s in symbols]
    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    assert _requests(stack, "REQ_CONTRACT_DATA") - before == len(symbols)
    replies = await asyncio.gather(*pending)
    assert [r.data[0]["contract"]["symbol"] for r in replies] == symbols


async def test_identical_queries_coalesce_into_one_upstream_request(nc: Client,
                                                                    stack: Stack) -> None:
    stack.sim.control.post("/faults", delay={"REQ_CONTRACT_DATA": 0.5})
    before = _requests(stack, "REQ_CONTRACT_DATA")
    body = {"contract": {"symbol": "NVDA", "secType": "STK"}}
    replies = await asyncio.gather(*(ask(nc, "contract_details", body) for _ in range(6)))
    assert all(r.code == 0 for r in replies)
    assert len({json.dumps(r.data) for r in replies}) == 1
    assert _requests(stack, "REQ_CONTRACT_DATA") - before == 1


async def test_timeout_answers_408_and_cancels_upstream(nc: Client, stack: Stack) -> None:
    stack.sim.control.post("/faults", ignore=["REQ_HISTORICAL_DATA"])
    before = _requests(stack, "CANCEL_HISTORICAL_DATA")
    # The daemon's own deadline is 10 s and this requester gives up after 5: an answer at all
    # is the body's 0.5 s deadline at work.
    reply = await ask(nc, "historical_data", {"contract": AAPL, "timeout": 0.5}, timeout=5)
    assert reply.code == 408, reply
    assert "TWS did not answer within 0.5s" in reply.error["message"], reply.error
    await eventually(lambda: _requests(stack, "CANCEL_HISTORICAL_DATA") == before + 1,
                     what="the cancel to reach TWS")


async def test_tws_errors_arrive_as_structured_errors(nc: Client) -> None:
    reply = await ask(nc, "contract_details", {"contract": {"symbol": "ZZZZ", "secType": "STK"}})
    assert reply.code == 404
    assert reply.error["tws_code"] == 200
    assert "security definition" in reply.error["message"]


async def test_micro_service_answers_ping_info_and_stats(nc: Client) -> None:
    ping = json.loads((await nc.request("$SRV.PING.twsbus", b"", timeout=2)).data)
    assert ping["name"] == "twsbus"
    info = json.loads((await nc.request("$SRV.INFO.twsbus", b"", timeout=2)).data)
    assert info["description"]
    subjects = {e["subject"] for e in info["endpoints"]}
    assert {"tws.req.contract_details", "tws.req.status", "tws.req.current_time"} <= subjects
    stats = json.loads((await nc.request("$SRV.STATS.twsbus", b"", timeout=2)).data)
    assert any(e["num_requests"] > 0 for e in stats["endpoints"])


async def test_many_queries_are_paced_under_the_tws_limit(nc: Client, stack: Stack) -> None:
    stack.sim.control.post("/reset")
    sent_before = stack.status()["pacing"]["sent"]
    option_con_ids = [700_000_001 + i for i in range(60)] + [710_000_001 + i for i in range(30)]
    replies = await asyncio.gather(*(  # 90 distinct queries: nothing to coalesce
        ask(nc, "contract_details", {"contract": {"conId": c}}, timeout=20)
        for c in option_con_ids))
    assert all(r.code == 0 for r in replies), [r for r in replies if r.code][:3]
    assert [r.data[0]["contract"]["conId"] for r in replies] == option_con_ids
    # The simulator, like TWS, counts every message past its limit within any one second (and
    # answers it with error 100): 90 at once would be 40 over. None was: the daemon paced them.
    limit, enforced = stack.sim.call(lambda s: (s.config.pacing_limit, s.config.enforce_pacing))
    assert enforced and limit < len(option_con_ids)
    assert stack.sim.control.state()["pacing_violations"] == 0
    assert stack.status()["pacing"]["sent"] - sent_before >= len(option_con_ids)


async def test_a_reply_over_max_payload_is_413_with_a_hint() -> None:
    with NatsServer(max_payload=4096) as ns, SimulatorThread() as sim, \
            DaemonProcess(ns.url, sim.port):
        nc = await nats.connect(ns.url)
        reply = await ask(nc, "historical_data", {
            "contract": AAPL, "durationStr": "1 Y", "barSizeSetting": "1 day"})
        assert reply.code == 413, reply
        assert "narrow the request" in reply.error["message"]
        assert (await ask(nc, "current_time")).code == 0
        await nc.close()
