"""``Client.query``: a query's reply decoded strictly into the op's reply type (twsbus.replies),
end to end. Each reply shape (one object, one named argument, a list, a list of tagged kinds, one
item per order folded from two callbacks, ticks, a snapshot's map, the order and fire-and-forget
replies) is read through attributes and, where the reply is deterministic, is exactly what
``request`` answers for the same query. Arguments and errors are ``request``'s; a reply the type
does not describe is refused. Runs under ibapi 10.x and 9.81 (ops 9.81 cannot type are skipped
there, and their TypeError tested instead).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import ibapi
import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from waiting import eventually

from twsbus import BadRequest, Client, NotFound, limit_order, market_order, stock
from twsbus.errors import TwsBusError

AAPL_ID, MSFT_ID, IBM_ID = 265598, 272093, 8314
#: A fixed end time, so historical replies are the same for both calls.
HIST_END = "20240112 16:00:00 US/Eastern"
IBAPI_9 = ibapi.get_version_string().startswith("9.")
needs_10 = pytest.mark.skipif(IBAPI_9, reason="ibapi 9.81 has no callback for this op's reply")


async def both(bus: Client, op: str, **args: Any) -> tuple[Any, Any]:
    """The same query typed and plain."""
    return await bus.query(op, **args), await bus.request(op, **args)


# ---- reply shapes ---------------------------------------------------------------------------


async def test_a_single_reply_is_one_struct(bus: Client) -> None:
    now = await bus.query("current_time", timeout=5)
    assert type(now).__name__ == "CurrentTimeReply"
    assert abs(now.time - (await bus.request("current_time"))["time"]) <= 2
    accounts, plain = await both(bus, "managed_accounts")
    assert type(accounts).__name__ == "ManagedAccountsReply"
    assert accounts.accountsList == plain["accountsList"] != ""
    assert msgspec.to_builtins(accounts) == plain


async def test_a_named_argument_reply_is_its_list(bus: Client) -> None:
    codes, plain = await both(bus, "family_codes")
    assert [type(c).__name__ for c in codes] == ["IbFamilyCode"] * len(plain) != []
    assert [(c.accountID, c.familyCodeStr) for c in codes] == \
        [(p["accountID"], p["familyCodeStr"]) for p in plain]
    assert msgspec.to_builtins(codes) == plain
    samples, plain = await both(bus, "matching_symbols", pattern="AAP")
    assert samples[0].contract.conId == AAPL_ID and samples[0].contract.symbol == "AAPL"
    assert msgspec.to_builtins(samples) == plain


@pytest.mark.parametrize("contract", [stock("AAPL"), "265598", {"conId": AAPL_ID}])
async def test_contract_details_are_structs_of_any_contract_like(bus: Client,
                                                                 contract: Any) -> None:
    (details,), plain = await both(bus, "contract_details", contract=contract)
    assert type(details).__name__ == "IbContractDetails"
    assert (details.contract.conId, details.contract.symbol, details.contract.secType) == \
        (AAPL_ID, "AAPL", "STK")
    assert details.minTick > 0
    assert msgspec.to_builtins([details]) == plain


async def test_historical_bars_are_structs_equal_to_the_plain_reply(bus: Client) -> None:
    bars, plain = await both(bus, "historical_data", contract="AAPL", endDateTime=HIST_END,
                             durationStr="1 D", barSizeSetting="1 hour")
    assert len(bars) == len(plain) > 1
    assert all(type(b).__name__ == "IbBarData" for b in bars)
    assert all(b.low <= b.open <= b.high and b.low <= b.close <= b.high for b in bars)
    assert [b.date for b in bars] == [p["date"] for p in plain]
    assert msgspec.to_builtins(bars) == plain


@pytest.mark.parametrize(("what", "present", "absent"), [
    ("TRADES", "price", "priceBid"), ("BID_ASK", "priceBid", "price")])
async def test_historical_ticks_leave_the_other_kinds_fields_unset(
        bus: Client, what: str, present: str, absent: str) -> None:
    ticks, plain = await both(bus, "historical_ticks", contract=stock("AAPL"),
                              endDateTime=HIST_END, numberOfTicks=10, whatToShow=what)
    assert len(ticks) == len(plain) == 10
    assert all(getattr(t, present) > 0 for t in ticks)
    assert all(getattr(t, absent) is msgspec.UNSET for t in ticks)
    assert msgspec.to_builtins(ticks) == plain


async def test_account_updates_are_tagged_by_kind(bus: Client) -> None:
    items, plain = await both(bus, "account_updates")
    assert {type(i).__name__ for i in items} == {
        "UpdateAccountValueItem", "UpdatePortfolioItem", "UpdateAccountTimeItem"}
    # the kind travels as the tag "type"; values move with the market, so only kinds compare
    assert [msgspec.to_builtins(i)["type"] for i in items] == [p["type"] for p in plain]
    (code,) = [i.val for i in items
               if type(i).__name__ == "UpdateAccountValueItem" and i.key == "AccountCode"]
    assert code == (await bus.request("managed_accounts"))["accountsList"]
    held = {i.contract.conId for i in items if type(i).__name__ == "UpdatePortfolioItem"}
    assert AAPL_ID in held
    assert held == {p["contract"]["conId"] for p in plain if p["type"] == "updatePortfolio"}


async def test_executions_are_fills_and_their_commission_reports(bus: Client) -> None:
    placed = await bus.query("place_order", contract={"conId": IBM_ID},
                             order=market_order("BUY", 4))
    assert type(placed).__name__ == "PlaceReply" and placed.orderId > 0

    async def filled() -> Any:
        items = await bus.query("executions")
        return items if any(type(i).__name__ == "ExecDetailsItem"
                            and i.execution.orderId == placed.orderId for i in items) else None

    items = await eventually(filled, what="the market order's execution")
    (fill,) = [i for i in items if type(i).__name__ == "ExecDetailsItem"]
    assert (fill.contract.conId, fill.execution.side, fill.execution.shares) == (IBM_ID, "BOT", 4)
    (report,) = [i for i in items if type(i).__name__ == "CommissionReportItem"]
    assert report.commissionReport.execId == fill.execution.execId
    assert report.commissionReport.commission > 0
    assert msgspec.to_builtins(items) == await bus.request("executions")


async def test_an_order_is_placed_listed_folded_and_cancelled(bus: Client) -> None:
    placed = await bus.query("place_order", contract={"conId": MSFT_ID},
                             order=limit_order("BUY", 3, 1.0))  # far below the market: rests
    try:
        assert type(placed).__name__ == "PlaceReply"
        assert (placed.status, placed.remaining) == ("Submitted", 3)
        orders, plain = await both(bus, "open_orders")
        # openOrder and orderStatus folded into one item per order
        (mine,) = [o for o in orders if o.orderId == placed.orderId]
        assert type(mine).__name__ == "OpenOrderItem"
        assert (mine.contract.conId, mine.order.action, mine.order.lmtPrice,
                mine.order.totalQuantity) == (MSFT_ID, "BUY", 1.0, 3)
        assert (mine.status, mine.orderState.status, mine.permId) == \
            ("Submitted", "Submitted", placed.permId)
        assert msgspec.to_builtins(orders) == plain
    finally:
        cancelled = await bus.query("cancel_order", orderId=placed.orderId)
    assert (type(cancelled).__name__, cancelled.orderId) == ("PlaceReply", placed.orderId)
    assert cancelled.status in ("Cancelled", "ApiCancelled", "PendingCancel")


async def test_a_snapshot_is_a_map_of_tick_names(bus: Client) -> None:
    ticks, plain = await both(bus, "market_data_snapshot", contract="AAPL")
    assert type(ticks) is dict and set(ticks) == set(plain)
    assert 0 < ticks["bid"] < ticks["ask"]
    assert all(isinstance(v, float | str) or v is None for v in ticks.values())


async def test_fire_and_forget_answers_ok(bus: Client) -> None:
    ok, plain = await both(bus, "market_data_type", marketDataType=1)
    assert (type(ok).__name__, ok.ok) == ("OkReply", True)
    assert msgspec.to_builtins(ok) == plain == {"ok": True}


@needs_10
async def test_ops_of_newer_servers_are_typed_with_ibapi_10(bus: Client) -> None:
    info, plain = await both(bus, "user_info")
    assert (type(info).__name__, info.whiteBrandingId) == ("UserInfoReply", "")
    assert msgspec.to_builtins(info) == plain
    millis = await bus.query("current_time_in_millis")
    assert millis.timeInMillis // 1000 >= (await bus.query("current_time")).time - 2


@pytest.mark.skipif(not IBAPI_9, reason="ibapi 10.x types every op")
@pytest.mark.parametrize("op", ["user_info", "current_time_in_millis"])
async def test_an_op_ibapi_9_cannot_type_is_a_type_error_naming_it(bus: Client, op: str) -> None:
    with pytest.raises(TypeError, match=f"'{op}'.*request\\('{op}'\\)"):
        await bus.query(op)


# ---- errors ---------------------------------------------------------------------------------


async def errors_of(call: Callable[[], Awaitable[Any]]) -> TwsBusError:
    with pytest.raises(TwsBusError) as caught:
        await call()
    return caught.value


async def test_an_unknown_op_is_requests_404(bus: Client) -> None:
    typed = await errors_of(lambda: bus.query("no_such_op"))
    plain = await errors_of(lambda: bus.request("no_such_op"))
    assert type(typed) is type(plain) is NotFound
    assert typed.message == plain.message and "no_such_op" in typed.message


async def test_a_bad_argument_is_requests_400(bus: Client) -> None:
    typed = await errors_of(lambda: bus.query("current_time", noSuchArg=1))
    plain = await errors_of(lambda: bus.request("current_time", noSuchArg=1))
    assert type(typed) is type(plain) is BadRequest
    assert typed.message == plain.message and "noSuchArg" in typed.message


async def test_a_tws_refusal_is_requests_error(bus: Client) -> None:
    typed = await errors_of(lambda: bus.query("contract_details", contract=stock("ZZZZ")))
    assert type(typed) is NotFound and typed.tws_code == 200


@pytest.fixture
async def impostor(nc: NATS) -> AsyncIterator[list[bytes]]:
    """A responder on the prefix ``fake`` answering ``current_time`` with whatever bytes the
    test puts in the list."""
    replies: list[bytes] = []

    async def answer(msg: Msg) -> None:
        await msg.respond(replies[0])

    sub = await nc.subscribe("fake.req.current_time", cb=answer)
    await nc.flush()
    yield replies
    await sub.unsubscribe()


@pytest.mark.parametrize(("body", "error"), [
    (b'{"time": "now"}', "Expected `int | null`, got `str` - at `$.time`"),
    (b'{"time": 1, "timezone": "UTC"}', "unknown field `timezone`"),
])
async def test_a_reply_its_type_does_not_describe_is_refused(
        nc: NATS, impostor: list[bytes], body: bytes, error: str) -> None:
    impostor.append(body)
    async with Client(nc, prefix="fake") as bus:
        assert await bus.request("current_time") == msgspec.json.decode(body)  # plain: as is
        with pytest.raises(TwsBusError) as caught:
            await bus.query("current_time")
    assert type(caught.value) is TwsBusError
    assert "fake.req.current_time" in caught.value.message and error in caught.value.message
    assert isinstance(caught.value.__cause__, msgspec.ValidationError)
