"""No request can break the bus: every input is bounded at the edge, and one bad request costs
its sender a 400, never the other users their daemon (issue #11, one test per defect found)."""

from __future__ import annotations

import asyncio
import json

import pytest
from daemonstack import Stack
from nats.aio.client import Client
from nats.aio.msg import Msg
from natsreq import ask
from waiting import wait_until

AAPL = {"conId": 265598}


pytestmark = pytest.mark.usefixtures("clean_faults")


async def _request(nc: Client, subject: str, body: bytes) -> tuple[int, dict, dict]:
    msg = await nc.request(subject, body, timeout=10)
    headers = dict(msg.headers or {})
    return int(headers.get("Nats-Service-Error-Code", 0)), json.loads(msg.data), headers


async def _still_serving(nc: Client, stack: Stack) -> None:
    """The daemon answers, on the NATS connection it started with, and TWS never dropped."""
    reply = await ask(nc, "status")
    assert reply.code == 0, reply
    assert reply.data["nats"]["restarts"] == 0, reply.data["nats"]
    assert reply.data["tws"].get("reconnects", 0) == 0, reply.data["tws"]
    assert stack.sim.control.state()["connections"] == 1


@pytest.mark.parametrize(("kind", "body", "field"), [
    ("pnl", {"account": "A" * 5000}, "account"),
    ("pnl", {"account": "\t"}, "account"),
    ("pnl", {"account": "DU1\r\nPUB x 1"}, "account"),
    ("pnl", {"account": "a.b"}, "account"),
    ("pnl", {"account": "a*"}, "account"),
    ("tbt", {"contract": AAPL, "tickType": "Last\n"}, "tickType"),
    ("hist_bars", {"contract": AAPL, "barSize": "1 min" + "x" * 4000}, "barSize"),
])
async def test_a_token_nats_would_refuse_is_a_400_and_nothing_is_published(
        nc: Client, stack: Stack, kind: str, body: dict, field: str) -> None:
    seen: list[str] = []

    async def record(msg: Msg) -> None:
        seen.append(msg.subject)

    sub = await nc.subscribe("tws.>", cb=record)
    code, data, headers = await _request(nc, f"tws.sub.{kind}", json.dumps(body).encode())
    assert code == 400, data
    assert data["error"]["message"].startswith(f"{field}:"), data
    assert len(headers["Nats-Service-Error"]) < 300
    await _still_serving(nc, stack)
    await sub.unsubscribe()
    assert not [s for s in seen if s.startswith(("tws.pnl", "tws.tbt", "tws.hbars"))], seen


async def test_an_error_reply_never_echoes_a_huge_input(nc: Client, stack: Stack) -> None:
    body = json.dumps({"providerCode": "BRFG", "articleId": "x" * 600_000}).encode()
    code, data, headers = await _request(nc, "tws.req.news_article", body)
    assert code == 413, data
    assert len(headers["Nats-Service-Error"]) <= 400
    assert len(json.dumps(data)) < 600
    # The same input where it fits the body bound but names an unknown field.
    code, data, headers = await _request(
        nc, "tws.req.news_article", json.dumps({"x" * 30_000: 1}).encode())
    assert code == 400 and len(headers["Nats-Service-Error"]) <= 400, data
    await _still_serving(nc, stack)


async def test_deep_nesting_is_a_400_not_a_500(nc: Client, stack: Stack) -> None:
    for body in (b"[" * 10_000, b'{"a":' * 10_000, b'{"contract": ' + b"[" * 100 + b"]" * 100
                 + b"}"):
        code, data, _ = await _request(nc, "tws.req.contract_details", body)
        assert code == 400, data
        assert "deeper" in data["error"]["message"]
    await _still_serving(nc, stack)


async def test_invalid_utf8_is_a_400_not_a_500(nc: Client, stack: Stack) -> None:
    for subject in ("tws.req.contract_details", "tws.sub.ticks", "tws.lease.renew"):
        code, data, _ = await _request(nc, subject, b'{"contract": {"symbol": "\xff\xfe"}}')
        assert code == 400, (subject, data)
        assert "UTF-8" in data["error"]["message"]
    await _still_serving(nc, stack)


async def test_concurrent_id_less_queries_answer_or_time_out_never_500(
        nc: Client, stack: Stack) -> None:
    # reqPositions carries no id: its answers cannot be told apart, so they go one at a time.
    stack.sim.control.post("/faults", delay={"REQ_POSITIONS": 0.6})
    replies = await asyncio.gather(*(
        ask(nc, "positions", {"timeout": 1}) for _ in range(6)))
    codes = sorted(r.code for r in replies)
    assert set(codes) <= {0, 408}, replies
    assert codes[0] == 0, replies  # the first in line is answered
    for reply in replies:
        if reply.code == 408:
            assert "one at a time" in reply.error["message"] or "in time" in \
                reply.error["message"]


async def test_id_less_queries_the_answer_names_run_side_by_side(
        nc: Client, stack: Stack) -> None:
    # marketRule(marketRuleId, ...) repeats its argument: four different rules at once, each
    # answered, although TWS takes 0.6 s per answer and each caller allows 1 s.
    rules = [26, 32, 67, 239]
    stack.sim.control.post("/faults", delay={"REQ_MARKET_RULE": 0.6})
    replies = await asyncio.gather(*(
        ask(nc, "market_rule", {"marketRuleId": rule, "timeout": 1}) for rule in rules))
    assert [r.code for r in replies] == [0] * 4, replies
    assert [r.data["marketRuleId"] for r in replies] == rules


async def test_requests_that_time_out_while_queued_are_never_sent(
        nc: Client, stack: Stack) -> None:
    # 600 distinct queries at 45 msgs/s with a 2 s timeout: most time out still queued. Those
    # must leave the queue unsent (and need no cancel), so TWS gets only what went out in time.
    def received() -> int:
        return int(stack.sim.control.state()["requests"].get("REQ_CONTRACT_DATA", 0))

    before = received()
    replies = await asyncio.gather(*(
        ask(nc, "contract_details", {"contract": {"conId": 10_000 + i}, "timeout": 2},
            timeout=30) for i in range(600)))
    unsent = [r for r in replies if r.code == 408 and "not sent" in r.error["message"]]
    assert len(unsent) > 300, [r for r in replies if r.code != 408][:3]
    assert all(r.code in (404, 408) for r in replies), {r.code for r in replies}
    status = (await ask(nc, "status")).data
    assert status["pacing"]["queued"] == 0  # the queue is empty once every caller has left
    assert status["queries"]["withdrawn"] >= len(unsent)
    # Everything that was sent reaches the simulator; nothing withdrawn ever does.
    await wait_until(lambda: received() - before >= 600 - len(unsent), 10, "the sent ones")
    assert received() - before == 600 - len(unsent)
