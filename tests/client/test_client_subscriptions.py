"""Subscriptions through the client against the real daemon: order, kinds, renewal, release."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import nats
import pytest
from clientstack import ClientStack, eventually
from nats.aio.client import Client as NATS
from waiting import wait_until

from twsbus import (
    Bar,
    Client,
    Depth,
    Image,
    NotFound,
    StreamMessage,
    SubState,
    Tick,
    stock,
)
from twsbus.subjects import surface

AAPL_ID, MSFT_ID, IBM_ID, SPY_ID = 265598, 272093, 8314, 756733
CONTROL_ID = 700_000_001  # an option no other test here streams


async def take(sub: Any, n: int, timeout: float = 10.0) -> list[StreamMessage]:
    out: list[StreamMessage] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(await sub.next())
    return out


async def test_ticks_iterator_yields_image_then_updates_in_seq_order(bus: Client) -> None:
    got: list[StreamMessage] = []
    async for msg in bus.ticks("AAPL"):
        got.append(msg)
        if len(got) == 30:
            break
    image, updates = got[0], got[1:]
    assert isinstance(image, Image) and image.kind == "ticks" and not image.resubscribed
    assert image.subject == f"tws.ticks.{AAPL_ID}" and image.conId == AAPL_ID
    assert image.data  # the stream's state when the lease was granted (a quote once one came)
    seqs = [m.seq for m in updates]
    assert seqs == list(range(image.seq + 1, image.seq + 30)), "no gap, no repeat"
    assert all(m.gap == 0 and m.epoch == image.epoch for m in updates)
    ticks = [m for m in updates if isinstance(m, Tick)]
    assert ticks and all(t.data for t in ticks)  # only the fields that changed, never none
    assert any(t.bid is not None or t.last is not None for t in ticks)


#: The kind with its own tests above.
_TESTED_APART = {"ticks"}
_EVERY_KIND = [
    ("tbt", ("AAPL", "BidAsk"), f"tws.tbt.{AAPL_ID}.BidAsk", "tbt"),
    ("bars", (AAPL_ID,), f"tws.bars.{AAPL_ID}", "bar"),
    ("hist_bars", (stock("AAPL"), "1 min"), f"tws.hbars.{AAPL_ID}.1_min", "bar"),
    ("depth", ("AAPL", 5), f"tws.depth.{AAPL_ID}", "depth"),
    ("pnl", (), "tws.pnl.{account}", "pnl"),
    ("pnl_single", ("AAPL",), "tws.pnl.{account}." + str(AAPL_ID), "pnl_single"),
    ("account", (), "tws.account.{account}", "accountValue"),
    ("positions", (), "tws.positions.{account}", None),
    ("positions_multi", (), "tws.positions_multi.{account}", None),
    ("scanner", ("MOST_ACTIVE",), "tws.scanner.MOST_ACTIVE.STK.US.MAJOR", "scan"),
]


def test_every_kind_of_the_surface_is_tested_here_or_apart() -> None:
    assert {row[0] for row in _EVERY_KIND} | _TESTED_APART == set(surface().subscriptions)


@pytest.mark.parametrize(("method", "args", "subject", "update"), _EVERY_KIND)
async def test_every_kind_yields_an_image_then_its_updates(
        bus: Client, stack: ClientStack, method: str, args: tuple[Any, ...], subject: str,
        update: str | None) -> None:
    account = stack.sim.call(lambda s: s.config.accounts[0])
    # Account values move with the market of what the account holds (AAPL, SPY), and the
    # simulator's market moves for instruments someone streams: stream AAPL meanwhile.
    moving = bus.ticks("AAPL") if method == "account" else contextlib.nullcontext()
    async with moving, getattr(bus, method)(*args) as sub:
        image = await sub.next()
        assert isinstance(image, Image) and image.subject == subject.format(account=account)
        assert image.data, "the image holds the stream's current state"
        image.fields  # noqa: B018 - decodes as the kind's published image struct, or raises
        if update is not None:  # positions change only when a fill happens
            msg = await asyncio.wait_for(_first_of(sub, update), 15)
            assert msg.seq > image.seq
            msg.fields  # noqa: B018 - the published struct (twsbus.datamessages), or raises
        if method == "hist_bars":
            assert len(image["bars"]) > 1 and isinstance(msg, Bar) and msg.close
        if method == "depth":  # the book fills row by row after the first subscription
            while not (isinstance(msg, Depth) and msg.bids and msg.asks):
                msg = await asyncio.wait_for(sub.next(), 10)


async def _first_of(sub: Any, type_name: str) -> StreamMessage:
    while True:
        msg = await sub.next()
        if msg.type == type_name:
            return msg  # type: ignore[no-any-return]


async def test_an_unknown_contract_fails_the_subscription(bus: Client) -> None:
    with pytest.raises(NotFound):
        async for _ in bus.ticks("ZZZZ"):
            pass


async def test_client_renews_leases_in_one_batch(nc: NATS, stack: ClientStack) -> None:
    spy = await nats.connect(stack.nats.url)
    renewals: list[list[str]] = []

    async def seen(msg: Any) -> None:
        renewals.append(json.loads(msg.data)["leases"])

    await spy.subscribe("tws.lease.renew", cb=seen)
    await spy.flush()
    ttl = 1.5
    async with Client(nc, ttl=ttl) as bus, bus.ticks("IBM") as a, bus.bars("IBM") as b, \
            bus.depth("IBM") as c:
        leases = {a.lease, b.lease, c.lease}
        # A witness on the daemon's clock: a lease with the same ttl, granted after these three
        # and never renewed. Once the daemon has dropped it, theirs would be gone too, unrenewed.
        control = json.loads((await nc.request("tws.sub.ticks", json.dumps(
            {"contract": {"conId": CONTROL_ID}, "ttl": ttl}).encode(), timeout=10)).data)
        await eventually(lambda: stack.leases_on(control["subject"]) in (0, None),
                         what="the unrenewed control lease to expire")
        await wait_until(lambda: sum(set(ids) == leases for ids in renewals) >= 3, 10,
                         "three renewals of all three leases")
        assert all(s.state is SubState.ACTIVE for s in (a, b, c))
        for subject in (f"tws.ticks.{IBM_ID}", f"tws.bars.{IBM_ID}", f"tws.depth.{IBM_ID}"):
            assert stack.leases_on(subject) == 1, subject
    await spy.close()
    assert all(set(ids) <= leases for ids in renewals), "only this client's leases"
    first = next(i for i, ids in enumerate(renewals) if set(ids) == leases)
    assert all(set(ids) == leases for ids in renewals[first:]), "one batch, no per-lease requests"


async def test_renew_every_sets_the_period(nc: NATS, stack: ClientStack) -> None:
    """renew_every=0.2 with the default ttl (30 s, which alone would mean a renewal every 10 s):
    five renewals come long before the first the ttl would have brought."""
    spy = await nats.connect(stack.nats.url)
    count = 0

    async def seen(msg: Any) -> None:
        nonlocal count
        count += 1

    await spy.subscribe("tws.lease.renew", cb=seen)
    await spy.flush()
    async with Client(nc, renew_every=0.2) as bus, bus.ticks("IBM"):
        assert bus.ttl / 3 > 5  # the default period, had renew_every been ignored
        await wait_until(lambda: count >= 5, 5, "five renewals")
    await spy.close()


async def test_client_releases_leases_on_exit(bus: Client, stack: ClientStack) -> None:
    subject = f"tws.ticks.{MSFT_ID}"
    async for msg in bus.ticks("MSFT"):
        assert stack.leases_on(subject) == 1
        assert stack.sim_subscriptions("mkt_data").get(str(MSFT_ID)) == 1
        assert isinstance(msg, Image)
        break
    # the lease is released at once; the TWS request ends after the linger
    await eventually(lambda: stack.leases_on(subject) in (0, None), timeout=2)
    await eventually(lambda: stack.leases_on(subject) is None, timeout=5)
    await eventually(lambda: str(MSFT_ID) not in stack.sim_subscriptions("mkt_data"))
    assert bus.subscriptions == []


async def test_closing_the_client_releases_every_lease(nc: NATS, stack: ClientStack) -> None:
    spy = await nats.connect(stack.nats.url)
    released: list[list[str]] = []

    async def seen(msg: Any) -> None:
        released.append(json.loads(msg.data)["leases"])

    await spy.subscribe("tws.unsub", cb=seen)
    await spy.flush()
    bus = Client(nc)
    subs = [bus.ticks("SPY"), bus.bars("SPY"), bus.tbt("SPY", "Last")]
    for sub in subs:
        await sub.open()
    leases = {s.lease for s in subs}
    assert stack.leases_on(f"tws.bars.{SPY_ID}") == 1
    await bus.close()
    await eventually(lambda: released, what="the client's tws.unsub")
    await spy.flush()  # a second tws.unsub, had there been one, is in by now
    await spy.close()
    assert [set(r) for r in released] == [leases], "one tws.unsub with every lease"
    assert all(s.state is SubState.CLOSED for s in subs)
    for subject in (f"tws.ticks.{SPY_ID}", f"tws.bars.{SPY_ID}", f"tws.tbt.{SPY_ID}.Last"):
        assert stack.leases_on(subject) in (0, None)
    with pytest.raises(StopAsyncIteration):
        await subs[0].next()


async def test_two_clients_share_one_stream(stack: ClientStack) -> None:
    one, two = await nats.connect(stack.nats.url), await nats.connect(stack.nats.url)
    try:
        async with Client(one) as a, Client(two) as b, a.ticks("AAPL") as x, \
                b.ticks({"conId": AAPL_ID}) as y:
            assert x.subject == y.subject and x.lease != y.lease
            assert stack.leases_on(x.subject) == 2  # type: ignore[arg-type]
            first_x, first_y = (await take(x, 5)), (await take(y, 5))
            assert first_x[0].epoch == first_y[0].epoch
    finally:
        await one.close()
        await two.close()
