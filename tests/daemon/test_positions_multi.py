"""The ``positions_multi`` kind end to end: reqPositionsMulti as a shared stream of one account's
positions, leased through the client library from the daemon, against the simulator (whose fills
reach a live positionsMulti request, as TWS's do)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import nats
import pytest
from daemonstack import Stack
from waiting import eventually

from twsbus import Client, Image, StreamMessage, datamessages

IBM = 8314


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack.running(tick_interval=0.05, daemon_env={"TWSBUS_LINGER": "0.3"}) as stack:
        yield stack


@pytest.fixture
async def bus(stack: Stack) -> AsyncIterator[Client]:
    nc = await nats.connect(stack.url)
    async with Client(nc) as client:
        yield client
    await nc.close()


@pytest.fixture(autouse=True)
async def _all_released(stack: Stack) -> AsyncIterator[None]:
    """Each test starts with no positions_multi stream, lingering or live, and leaves none."""
    await eventually(lambda: not stack.subscriptions(), 5, "no stream left from before")
    yield
    await eventually(lambda: not stack.sim_subscriptions("positions_multi"), 5,
                     "TWS's request to be cancelled")


def requests(stack: Stack, name: str) -> int:
    return int(stack.sim.control.state()["requests"].get(name, 0))


def fill(stack: Stack, account: str, action: str, quantity: int) -> None:
    """An order entered in TWS for ``account`` (its limit far from the market, so that it
    rests), then filled there."""
    placed = stack.sim.control.post("/orders/manual", contract={"conId": IBM}, action=action,
                                    totalQuantity=quantity, orderType="LMT",
                                    lmtPrice=1.0 if action == "BUY" else 1e6, account=account)
    stack.sim.control.post("/orders/fill", permId=placed["permId"], price=150.0)


async def next_position(sub: Any, timeout: float = 10.0) -> Any:
    """The next ``position`` message on the subscription."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                msg: StreamMessage = await sub.next()
                if msg.type == "position":
                    return msg
    except TimeoutError:
        raise AssertionError(f"no position message within {timeout}s") from None


async def test_a_lease_gets_the_accounts_positions_then_each_fill_then_cancels_upstream(
        stack: Stack, bus: Client) -> None:
    account = stack.status()["tws"]["accounts"][0]
    asked, cancelled = (requests(stack, "REQ_POSITIONS_MULTI"),
                        requests(stack, "CANCEL_POSITIONS_MULTI"))
    # The one-shot query (one request and its cancel of its own): TWS's view of the book.
    book = {str(r["contract"]["conId"]): r["pos"] for r in await bus.positions_multi(account)}
    async with bus.positions_multi(account) as sub:
        image = await sub.next()
        assert isinstance(image, Image) and image.kind == "positions_multi"
        assert image.subject == f"tws.positions_multi.{account}" and image.state == "ok"
        positions = msgspec.convert(image.data, datamessages.PositionsImage).positions
        assert {con: p.position for con, p in positions.items()} == book and book
        assert all(p.account == account for p in positions.values())
        assert image.seq >= len(book)  # each position of TWS's first burst was a message
        held = book.get(str(IBM), 0.0)

        fill(stack, account, "BUY", 7)
        bought = await next_position(sub)
        assert bought.seq > image.seq
        fields = msgspec.convert(bought.data, datamessages.PositionFields)
        assert (fields.account, fields.contract["conId"], fields.position) == \
            (account, IBM, held + 7)
        fill(stack, account, "SELL", 7)
        sold = await next_position(sub)
        assert sold.seq > bought.seq and sold["position"] == held
        assert stack.sim_subscriptions("positions_multi") == {"0": 1}
    assert requests(stack, "REQ_POSITIONS_MULTI") == asked + 2  # the query's, the stream's
    await eventually(lambda: not stack.sim_subscriptions("positions_multi"), 5,
                     "the linger to end and TWS's request to be cancelled")
    assert requests(stack, "CANCEL_POSITIONS_MULTI") == cancelled + 2
    assert stack.subscriptions() == []


async def test_leases_on_one_account_share_the_request_and_must_agree_on_the_model(
        stack: Stack, bus: Client) -> None:
    account = stack.status()["tws"]["accounts"][0]
    asked = requests(stack, "REQ_POSITIONS_MULTI")
    nc = await nats.connect(stack.url)
    try:
        async with bus.subscribe("positions_multi") as first, \
                bus.subscribe("positions_multi", account=account) as second:
            assert (await first.next()).subject == (await second.next()).subject
            assert stack.leases_on(f"tws.positions_multi.{account}") == 2
            assert requests(stack, "REQ_POSITIONS_MULTI") == asked + 1
            refused = await nc.request("tws.sub.positions_multi", json.dumps(
                {"account": account, "modelCode": "GROWTH"}).encode(), timeout=10)
            assert refused.headers and refused.headers["Nats-Service-Error-Code"] == "409"
            assert "modelCode" in json.loads(refused.data)["error"]["message"]
    finally:
        await nc.close()
