"""Orders through the client, end to end: the handle, idempotent placing, the event feed, the CLI.

A real nats-server with JetStream, the simulator and `twsbus run` as its own process; the
simulator's control endpoint (`GET /orders`, `POST /orders/fill`) is the independent witness of
what reached "TWS". Each test trades under a strategy of its own, so the stream filters
`tws.orders.*.<strategy>.*` see only its orders.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from clientstack import DAEMON_ENV, ClientStack
from nats.aio.client import Client as NATS
from waiting import wait_until

from twsbus import (
    BadRequest,
    Client,
    Conflict,
    OrderFeed,
    OrderNotFilled,
    OrderUpdate,
    limit_order,
    market_order,
    new_client_order_id,
)
from twsbus.client.orderview import OrderBoard
from twsbus.orders.events import OrderEvent, OrderRecord
from twsbus.orders.journal import names, stored
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

AAPL_ID = 265598
LIVE = ("PreSubmitted", "Submitted")


def strategy() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def sim_rows(stack: ClientStack | Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = stack.sim.control.call("GET", "/orders")["orders"]
    return rows


def sim_row(stack: ClientStack | Any, perm_id: int | None) -> dict[str, Any]:
    rows = [r for r in sim_rows(stack) if r["permId"] == perm_id]
    assert len(rows) == 1, rows
    return rows[0]


async def take(feed: OrderFeed, count: int) -> list[OrderUpdate]:
    """The first ``count`` updates of a feed, then the feed closed."""
    out: list[OrderUpdate] = []
    async with feed:
        while len(out) < count:
            out.append(await feed.next())
    return out


async def stream_count(nc: NATS, subject: str) -> int:
    """How many messages the order stream holds on ``subject`` (a filter) right now."""
    info = await nc.jetstream().stream_info(names("tws")[0], subjects_filter=stored(subject))
    return sum((info.state.subjects or {}).values())


# ---- the handle ----------------------------------------------------------------------------------


async def test_a_market_order_is_filled_at_the_price_the_simulator_used(
        bus: Client, stack: ClientStack) -> None:
    s = strategy()
    order = await bus.place(AAPL_ID, market_order("BUY", 5), strategy=s)
    assert re.fullmatch(rf"{s}-[0-9a-f]{{20}}", order.clientOrderId)
    assert order.orderId and order.attempts == 1 and not order.duplicate
    assert order.subject == f"tws.orders.{order.account}.{s}.{order.orderId}"
    assert await order.filled() is order
    row = await asyncio.to_thread(sim_row, stack, order.permId)
    executions = row["executions"]
    assert row["status"] == "Filled" and sum(e["shares"] for e in executions) == 5
    average = sum(e["shares"] * e["price"] for e in executions) / 5
    assert order.status == "Filled" and order.filledQuantity == 5
    assert order.avgFillPrice == pytest.approx(average)


async def test_a_forced_fill_of_a_resting_order_arrives_as_status_exec_and_commission(
        bus: Client, stack: ClientStack) -> None:
    order = await bus.place(AAPL_ID, limit_order("BUY", 3, 1.0), strategy=strategy())
    assert order.status in LIVE and not order.final
    events: list[OrderEvent] = []
    fill: dict[str, Any] = {}
    async for event in order.events():
        events.append(event)
        if event.type == "status" and event.status in LIVE and not fill:  # resting: fill it
            fill = await asyncio.to_thread(stack.sim.control.post, "/orders/fill",
                                           permId=order.permId, price=1.23)
        if event.type == "commission":
            break
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.clientOrderId for e in events} == {order.clientOrderId}
    execs = [e for e in events if e.type == "exec"]
    assert len(execs) == 1 and execs[0].execution is not None
    assert execs[0].execution["price"] == 1.23 == fill["price"]
    assert execs[0].execution["execId"] == fill["execId"]
    statuses = [e for e in events if e.type == "status" and e.status == "Filled"]
    assert statuses and statuses[-1].avgFillPrice == 1.23 and statuses[-1].filled == 3
    commission = events[-1].commissionReport
    assert commission is not None and commission["execId"] == fill["execId"]
    assert order.status == "Filled" and order.avgFillPrice == 1.23  # the handle followed
    await order.filled()


async def test_one_client_order_id_places_one_order_however_often_it_is_sent(
        bus: Client, stack: ClientStack) -> None:
    s = strategy()
    cid = new_client_order_id(s)
    first = await bus.place(AAPL_ID, limit_order("BUY", 1, 1.0), strategy=s, clientOrderId=cid)
    again = await bus.place(AAPL_ID, limit_order("BUY", 1, 1.0), strategy=s, clientOrderId=cid)
    assert first.clientOrderId == again.clientOrderId == cid
    assert not first.duplicate and again.duplicate
    assert (again.orderId, again.permId) == (first.orderId, first.permId)
    with pytest.raises(Conflict, match="another order"):  # the same id for another order
        await bus.place(AAPL_ID, limit_order("BUY", 2, 1.0), strategy=s, clientOrderId=cid)

    fresh = new_client_order_id(s)
    together = await asyncio.gather(*(
        bus.place(AAPL_ID, limit_order("BUY", 1, 1.0), strategy=s, clientOrderId=fresh)
        for _ in range(3)))
    assert sorted(h.duplicate for h in together) == [False, True, True]
    assert len({h.orderId for h in together}) == 1  # a duplicate may answer before the permId
    placed = next(h for h in together if not h.duplicate)

    rows = await asyncio.to_thread(sim_rows, stack)
    for perm_id in (first.permId, placed.permId):
        mine = [r for r in rows if r["permId"] == perm_id]
        assert len(mine) == 1 and mine[0]["places"] == 1
    assert len([r for r in rows if r["orderId"] == placed.orderId and r["clientId"] == 0]) == 1
    await first.cancel()
    await placed.cancel()


async def test_modify_and_cancel_through_the_handle(bus: Client, stack: ClientStack) -> None:
    order = await bus.place(AAPL_ID, limit_order("BUY", 2, 1.0), strategy=strategy())
    reply = await order.modify(lmtPrice=1.5, totalQuantity=3)
    assert reply.clientOrderId == order.clientOrderId and reply.status in LIVE
    assert order.order.lmtPrice == 1.5 and order.order.totalQuantity == 3
    row = await asyncio.to_thread(sim_row, stack, order.permId)
    assert (row["lmtPrice"], row["totalQuantity"], row["places"]) == (1.5, 3, 2)

    # another process (here: another handle) finds the order by its id and cancels it
    found = await bus.order(order.clientOrderId)
    assert (found.orderId, found.permId) == (order.orderId, order.permId)
    assert found.order.lmtPrice == 1.5 and found.order.action == "BUY"
    assert (await found.cancel()).status == "Cancelled"

    await order.done()  # read from the stream
    assert order.status == "Cancelled" and order.final
    with pytest.raises(Conflict):
        await order.cancel()
    with pytest.raises(Conflict):
        await order.modify(lmtPrice=1.6)
    with pytest.raises(OrderNotFilled, match="Cancelled") as caught:
        await order.filled()
    assert caught.value.order is order and order.filledQuantity == 0
    assert (await asyncio.to_thread(sim_row, stack, order.permId))["status"] == "Cancelled"


async def test_a_bad_order_or_client_order_id_is_refused_before_it_is_sent() -> None:
    offline = Client(nc=None)  # type: ignore[arg-type]  # nothing may reach NATS
    with pytest.raises(BadRequest, match="clientOrderId"):
        await offline.place(AAPL_ID, market_order("BUY", 1), clientOrderId="a b")
    with pytest.raises(BadRequest, match="strategy"):
        await offline.place(AAPL_ID, market_order("BUY", 1), strategy="mean.rev")
    with pytest.raises(BadRequest, match="totalQuantity"):
        await offline.place(AAPL_ID, {"action": "BUY", "orderType": "MKT",
                                      "totalQuantity": "10"})


def test_generated_client_order_ids_are_unique_journal_keys() -> None:
    ids = {new_client_order_id("meanrev") for _ in range(1000)}
    assert len(ids) == 1000
    key = re.compile(r"^[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*$")
    assert all(key.match(i) and len(i) <= 64 for i in ids)
    longest = new_client_order_id("s" * 32)
    assert len(longest) <= 64 and new_client_order_id().startswith("tb-")


# ---- a lost reply --------------------------------------------------------------------------------


@pytest.fixture
def private_stack() -> Iterator[Any]:
    """A stack of its own, for tests that stop its daemon (SIGSTOP) or restart its nats-server.
    No TWS probes, so a paused daemon reads as a slow one, not as a dead TWS link."""
    with NatsServer() as ns, SimulatorThread(tick_interval=0.05) as sim:
        daemon = DaemonProcess(ns.url, sim.port, env={
            **DAEMON_ENV, "TWSBUS_PROBE_INTERVAL": "60", "TWSBUS_WATCHDOG_INTERVAL": "60"})
        daemon.start()
        try:
            yield ClientStack(ns, sim, daemon)
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                os.kill(daemon.proc.pid, signal.SIGCONT)
            daemon.stop()


async def test_a_place_whose_reply_is_lost_is_sent_again_and_placed_once(
        private_stack: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "twsbus.client")
    stack = private_stack
    assert stack.daemon.proc is not None
    pid = stack.daemon.proc.pid
    nc = await nats.connect(stack.nats.url)
    try:
        async with Client(nc) as bus:
            os.kill(pid, signal.SIGSTOP)  # the request waits at the server, unanswered
            try:
                placing = asyncio.ensure_future(bus.place(
                    AAPL_ID, limit_order("BUY", 1, 1.0), strategy="retry", timeout=1.0))
                await wait_until(lambda: any("sending it again" in r.getMessage()
                                             for r in caplog.records), timeout=30,
                                 what="the client to send the place again")
            finally:
                os.kill(pid, signal.SIGCONT)
            order = await placing
            assert order.attempts == 2 and order.orderId and not order.final
            async for event in order.events():  # until TWS has it
                if event.type == "status" and event.status in LIVE:
                    break
            rows = await asyncio.to_thread(sim_rows, stack)
            assert len(rows) == 1 and rows[0]["permId"] == order.permId  # one order, not two
            assert rows[0]["places"] == 1
            await order.cancel()
    finally:
        await nc.close()


# ---- the feed ------------------------------------------------------------------------------------


async def test_a_restarted_strategy_replays_from_its_last_sequence_nothing_lost_or_twice(
        bus: Client, nc: NATS, stack: ClientStack) -> None:
    s = strategy()
    first = await bus.place(AAPL_ID, limit_order("BUY", 2, 1.0), strategy=s)

    # the strategy process reads its events, keeps the last stream sequence, and dies
    strategy_nc = await nats.connect(stack.nats.url)
    seen: list[OrderUpdate] = []
    async for update in Client(strategy_nc).orders(strategy=s):
        seen.append(update)
        if update.event.type == "status":
            break
    await strategy_nc.close()
    last = seen[-1].stream_seq

    # while it is away: a market order fills, and the resting one is filled too
    second = await bus.place(AAPL_ID, market_order("SELL", 1), strategy=s)
    await second.filled()
    await asyncio.to_thread(stack.sim.control.post, "/orders/fill", permId=first.permId,
                            price=1.01)
    await first.filled()
    for order in (first, second):  # the commission report comes after the Filled status
        async for event in order.events():
            if event.type == "commission":
                break
    total = await stream_count(nc, f"tws.orders.*.{s}.*")
    everything = await take(bus.orders(strategy=s), total)

    # restarted, it resumes after the last sequence it saw
    restarted_nc = await nats.connect(stack.nats.url)
    try:
        async with Client(restarted_nc) as restarted:
            resumed = await take(restarted.orders(strategy=s, since=last + 1),
                                 total - len(seen))
    finally:
        await restarted_nc.close()

    both = [u.stream_seq for u in seen + resumed]
    assert both == [u.stream_seq for u in everything] and len(set(both)) == total
    assert all(u.subject.split(".")[3] == s for u in everything)
    by_order = {h.clientOrderId: [u.event for u in seen + resumed
                                  if u.event.clientOrderId == h.clientOrderId]
                for h in (first, second)}
    for events in by_order.values():
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert {"order", "status", "exec", "commission"} <= {e.type for e in events}


async def test_a_feed_follows_across_a_nats_server_restart_without_gap_or_repeat(
        private_stack: Any) -> None:
    stack = private_stack
    nc = await nats.connect(stack.nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        async with Client(nc) as bus:
            got: list[OrderUpdate] = []
            async with bus.orders(strategy="across") as feed:

                async def read_through_commission(order: Any) -> None:
                    while not (got and got[-1].event.type == "commission"
                               and got[-1].event.clientOrderId == order.clientOrderId):
                        got.append(await feed.next())

                first = await bus.place(AAPL_ID, market_order("BUY", 1), strategy="across")
                await read_through_commission(first)
                await asyncio.to_thread(stack.nats.restart)  # its consumer is gone with it
                await asyncio.to_thread(stack.daemon.wait_ready)
                second = await bus.place(AAPL_ID, market_order("BUY", 1), strategy="across")
                await read_through_commission(second)
            total = await stream_count(nc, "tws.orders.*.across.*")
            everything = await take(bus.orders(strategy="across"), total)
    finally:
        await nc.close()
    assert [u.stream_seq for u in got] == [u.stream_seq for u in everything]
    assert len({u.event.clientOrderId for u in got}) == 2


async def test_history_and_live_merge_across_a_daemon_restart_without_gap_or_repeat(
        private_stack: Any) -> None:
    """A feed that was following and one opened while the daemon is dead (its history waits for
    the daemon) both read every event of the strategy once, in stream order: the live copies
    come from the stream, the history from the restarted daemon."""
    stack, s = private_stack, strategy()
    nc = await nats.connect(stack.nats.url)
    try:
        async with Client(nc) as bus, bus.orders(strategy=s) as following:
            got: list[OrderUpdate] = []

            async def through_commission(feed: OrderFeed, into: list[OrderUpdate],
                                         order: Any) -> None:
                while not (into and into[-1].event.type == "commission"
                           and into[-1].event.clientOrderId == order.clientOrderId):
                    into.append(await asyncio.wait_for(feed.next(), 20))

            first = await bus.place(AAPL_ID, market_order("BUY", 1), strategy=s)
            await through_commission(following, got, first)
            await asyncio.to_thread(stack.daemon.kill)
            late: list[OrderUpdate] = []
            opened = bus.orders(strategy=s)
            opening = asyncio.ensure_future(opened.open())  # asks a daemon that is not there
            await wait_until(lambda: opened.replays == 0 and not opening.done(), 5)
            await asyncio.to_thread(stack.daemon.start)
            await asyncio.wait_for(opening, 20)
            second = await bus.place(AAPL_ID, market_order("BUY", 1), strategy=s)
            await through_commission(following, got, second)
            async with opened:
                await through_commission(opened, late, second)
            total = await stream_count(nc, f"tws.orders.*.{s}.*")
            everything = await take(bus.orders(strategy=s), total)
    finally:
        await nc.close()
    want = [u.stream_seq for u in everything]
    assert [u.stream_seq for u in got] == want == [u.stream_seq for u in late]
    assert len(set(want)) == total and {u.event.clientOrderId for u in got} == {
        first.clientOrderId, second.clientOrderId}


async def test_a_feed_starts_at_a_time_or_at_now(bus: Client) -> None:
    s = strategy()
    before = datetime.datetime.now(datetime.UTC)
    first = await bus.place(AAPL_ID, market_order("BUY", 1), strategy=s)
    await first.filled()
    (update,) = await take(bus.orders(strategy=s, since=before), 1)
    assert update.event.clientOrderId == first.clientOrderId and update.event.seq == 1

    async with bus.orders(strategy=s, since="new") as feed:
        second = await bus.place(AAPL_ID, market_order("BUY", 1), strategy=s)
        update = await feed.next()
        while update.event.clientOrderId != second.clientOrderId:
            assert update.event.seq > 1  # a late event of the first order, never a replay
            update = await feed.next()
        assert update.event.seq == 1 and feed.last_seq == update.stream_seq
        assert "open" in repr(feed)
    assert feed.closed
    await second.filled()


async def test_closing_the_client_ends_its_feeds(nc: NATS) -> None:
    bus = Client(nc)
    feed = bus.orders(strategy=strategy())
    reading = asyncio.ensure_future(take(feed, 1))
    await wait_until(lambda: "open" in repr(feed), what="the feed to open")
    await bus.close()
    with pytest.raises(StopAsyncIteration):
        await reading


# ---- twsbus orders -------------------------------------------------------------------------------


def _orders_cli(stack: ClientStack, *args: str) -> list[str]:
    return [sys.executable, "-m", "twsbus", "orders", "--nats", stack.nats.url, *args]


async def test_twsbus_orders_once_prints_the_order(bus: Client, stack: ClientStack) -> None:
    s = strategy()
    order = await bus.place(AAPL_ID, limit_order("BUY", 4, 1.0), strategy=s)
    done = await asyncio.to_thread(subprocess.run, _orders_cli(stack, "--once", "--strategy", s),
                                   capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if order.clientOrderId in x]
    cells = line.split()
    assert str(order.orderId) in cells and "AAPL" in cells and "LMT" in cells
    assert order.status in cells and "BUY" in cells
    await order.cancel()


async def test_twsbus_orders_follows_the_stream_after_the_journal(
        bus: Client, stack: ClientStack) -> None:
    s = strategy()
    resting = await bus.place(AAPL_ID, limit_order("BUY", 1, 1.0), strategy=s)
    proc = subprocess.Popen(_orders_cli(stack, "--strategy", s), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        table: list[str] = []
        while not table or not table[-1].startswith("-- "):  # the journal's table, then events
            table.append((await asyncio.to_thread(proc.stdout.readline)).rstrip("\n"))
            assert table[-1] or proc.poll() is None
        assert any(resting.clientOrderId in line for line in table)
        await resting.cancel()
        while True:
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line, proc.stderr.read() if proc.stderr else ""
            if resting.clientOrderId in line and " status " in line:
                break
        assert "Cancelled" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_the_board_takes_the_journal_then_only_newer_events() -> None:
    board = OrderBoard()
    board.seed([OrderRecord(key="m-1", clientOrderId="m-1", orderId=7, permId=70,
                            account="DU1", strategy="m", status="Submitted", seq=2,
                            contract={"symbol": "AAPL", "conId": AAPL_ID},
                            order={"action": "BUY", "totalQuantity": 10, "orderType": "LMT",
                                   "lmtPrice": 190.5})])

    def update(seq: int, stream_seq: int, **fields: Any) -> OrderUpdate:
        event = OrderEvent(clientOrderId="m-1", orderId=7, permId=70, account="DU1",
                           strategy="m", seq=seq, **fields)
        return OrderUpdate(stream_seq, "tws.orders.DU1.m.7", event)

    assert not board.apply(update(2, 40, type="status", status="Submitted"))  # in the seed
    assert board.apply(update(3, 41, type="exec", execution={
        "side": "BOT", "shares": 10, "price": 190.25}))
    assert board.apply(update(4, 42, type="status", status="Filled", filled=10.0,
                              avgFillPrice=190.25))
    lines = board.lines("orders")
    assert lines[0].startswith("orders  0 live / 1 shown") and "stream seq 42" in lines[0]
    (row,) = [x for x in lines if x.startswith("m-1")]
    assert row.split() == ["m-1", "7", "DU1", "m", "AAPL", "BUY", "10", "LMT", "190.5",
                           "Filled", "10", "190.25", "1"]
    assert any("BOT 10 @ 190.25" in x for x in lines)
