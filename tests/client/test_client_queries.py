"""Queries through the client, end to end: typed methods, the generic request, errors raised."""

from __future__ import annotations

import pytest
from clientstack import ClientStack
from nats.aio.client import Client as NATS

from twsbus import (
    BadRequest,
    Client,
    NotConnected,
    NotFound,
    limit_order,
    stock,
)

AAPL_ID, MSFT_ID = 265598, 272093


async def test_queries_are_typed_methods_and_errors_are_exceptions(bus: Client) -> None:
    assert (await bus.current_time())["time"] > 1_600_000_000
    details = await bus.contract_details(stock("AAPL"))
    assert [d["contract"]["conId"] for d in details] == [AAPL_ID]
    bars = await bus.historical_data(stock("AAPL"), durationStr="1 D", barSizeSetting="1 hour")
    assert bars and {"open", "high", "low", "close", "volume"} <= set(bars[0])
    assert (await bus.market_data_snapshot("AAPL"))["bid"] > 0  # a bare symbol is a US stock
    with pytest.raises(NotFound) as caught:
        await bus.contract_details(stock("ZZZZ"))
    assert caught.value.code == 404 and caught.value.tws_code == 200
    with pytest.raises(NotFound) as unknown:  # the order desk knows no such order
        await bus.cancel_order(orderId=999_999)
    assert unknown.value.code == 404 and "999999" in unknown.value.message


async def test_an_unknown_op_is_a_404_naming_the_ops_at_once(bus: Client) -> None:
    with pytest.raises(NotFound) as caught:  # not a timeout, not "no daemon answers"
        await bus.request("no_such_op")
    assert "no_such_op" in caught.value.message and "current_time" in caught.value.message


async def test_bad_arguments_are_bad_requests(bus: Client) -> None:
    with pytest.raises(BadRequest, match="noSuchArg"):
        await bus.request("current_time", noSuchArg=1)


async def test_the_generic_request_reaches_any_op(bus: Client) -> None:
    assert (await bus.request("current_time"))["time"] > 0
    rows = await bus.request("contract_details", contract="265598")  # contract coerced
    assert rows[0]["contract"]["symbol"] == "AAPL"
    assert (await bus.request("managed_accounts"))["accountsList"]


async def test_orders_go_through_the_order_helpers(bus: Client) -> None:
    placed = await bus.place_order({"conId": MSFT_ID}, limit_order("BUY", 1, 1.0))
    assert placed["orderId"] > 0 and placed["status"] == "Submitted"
    cancelled = await bus.cancel_order(orderId=placed["orderId"])
    assert cancelled["orderId"] == placed["orderId"]


async def test_positions_awaited_is_the_query(bus: Client, stack: ClientStack) -> None:
    account = stack.sim.call(lambda s: s.config.accounts[0])
    rows = await bus.positions()
    assert any(r["contract"]["conId"] == AAPL_ID for r in rows)
    assert await bus.positions(account) == [r for r in rows if r["account"] == account]
    assert await bus.positions("NO-SUCH-ACCOUNT") == []


async def test_no_daemon_on_the_prefix_is_not_connected(nc: NATS) -> None:
    async with Client(nc, prefix="nobody") as bus:
        with pytest.raises(NotConnected, match="no twsbus daemon"):
            await bus.current_time()


async def test_daemon_status_is_a_method(bus: Client) -> None:
    status = await bus.status()
    assert status["tws"]["state"] == "ready" and status["epoch"]
