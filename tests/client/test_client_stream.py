"""One subscription's ordering rules, driven through a scripted fake of the daemon (no sockets).

``FakeDaemon`` stands in for the Client's wire: it answers subscribe requests with a scripted
image and seq, and ``publish`` delivers a data-subject message through the NATS callback the
subscription registered, exactly as nats-py would.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from waiting import wait_until

from twsbus import Image, NotFound, StreamClosed, StreamStatus, SubState, Tick, TickByTick
from twsbus.client.keeper import LeaseKeeper
from twsbus.client.stream import Granted, Inbox, Subscription
from twsbus.messages import Contract, LeasesReply
from twsbus.subjects import surface

SUBJECT = "tws.ticks.265598"


class _Msg:
    def __init__(self, subject: str, data: bytes) -> None:
        self.subject, self.data = subject, data


class _NatsSub:
    def __init__(self, link: FakeDaemon, subject: str, cb: Any) -> None:
        self.link, self.subject, self.cb = link, subject, cb

    async def unsubscribe(self) -> None:
        self.link.subs.remove(self)


class FakeDaemon:
    """A scripted ``Link``: what a Subscription and the LeaseKeeper use of the wire."""

    nats_closed = False

    def __init__(self, epoch: str = "E1", seq: int = 3) -> None:
        self.surface = surface()
        self.closed = False
        self.subs: list[_NatsSub] = []
        self.epoch, self.seq = epoch, seq
        self.image: dict[str, Any] = {"bid": 1.0, "ask": 1.2}
        self.grants = 0
        self.released: list[str] = []
        self.refuse: Exception | None = None
        self.running_epoch: str | None = epoch
        self.events: list[str] = []
        self.keeper = LeaseKeeper(self, 30.0, None, None)  # type: ignore[arg-type]
        DAEMONS.append(self)

    @property
    def listening(self) -> list[str]:
        """The data subjects listened to (the keeper's tws.status aside)."""
        return [s.subject for s in self.subs if s.subject != "tws.status"]

    async def listen(self, subject: str, handler: Any) -> _NatsSub:
        sub = _NatsSub(self, subject, handler)
        self.subs.append(sub)
        return sub

    async def data_subject(self, kind: str, contract: Any, params: dict[str, Any]) -> Any:
        return contract, params, SUBJECT

    async def grant(self, kind: str, body: bytes) -> Granted:
        self.events.append(f"grant (listening: {self.listening})")
        if self.refuse is not None:
            raise self.refuse
        self.grants += 1
        return Granted(subject=SUBJECT, seq=self.seq, epoch=self.epoch, image=dict(self.image),
                       lease=f"L{self.grants}", ttl=30.0, conId=265598)

    async def snapshot(self, subject: str) -> Granted:
        raise AssertionError("the fake always predicts the subject")

    async def release(self, leases: list[str]) -> None:
        self.released += leases

    async def renew(self, leases: list[str], timeout: float) -> LeasesReply:
        return LeasesReply(renewed=leases)

    async def daemon_epoch(self) -> str | None:
        return self.running_epoch

    async def publish(self, seq: int, epoch: str | None = None, **fields: Any) -> None:
        body = {"type": fields.pop("type", "ticks"), "seq": seq, "ts": seq,
                "epoch": epoch or self.epoch, **fields}
        for sub in [s for s in self.subs if s.subject == SUBJECT]:
            await sub.cb(_Msg(sub.subject, msgspec.json.encode(body)))


DAEMONS: list[FakeDaemon] = []


@pytest.fixture(autouse=True)
async def _stop_keepers() -> Any:
    """Opening a subscription starts its keeper (as Client.start would): stopped after each test."""
    yield
    while DAEMONS:
        await DAEMONS.pop().keeper.stop()


def make(daemon: FakeDaemon, maxsize: int = 100, kind: str = "ticks") -> Subscription:
    return Subscription(daemon, daemon.keeper, kind,  # type: ignore[arg-type]
                        Contract(conId=265598), {}, ttl=30.0, maxsize=maxsize)


async def test_the_data_subject_is_listened_to_before_subscribing() -> None:
    daemon = FakeDaemon()
    await make(daemon).open()
    assert daemon.events == [f"grant (listening: ['{SUBJECT}'])"]


async def test_image_comes_first_and_messages_it_contains_are_dropped() -> None:
    daemon = FakeDaemon(seq=3)
    sub = make(daemon)
    await sub.open()
    for seq in (2, 3, 4, 5):  # 2 and 3 were buffered before the reply: already in the image
        await daemon.publish(seq, bid=float(seq))
    image = await sub.next()
    assert isinstance(image, Image) and image.seq == 3 and image["bid"] == 1.0
    assert not image.resubscribed and image.subject == SUBJECT and image.conId == 265598
    got = [await sub.next(), await sub.next()]
    assert [(type(m), m.seq, m.gap, m["bid"]) for m in got] == [(Tick, 4, 0, 4.0),
                                                                (Tick, 5, 0, 5.0)]


async def test_ticks_that_travel_together_are_handed_over_one_by_one() -> None:
    """A tick-by-tick message carries the ticks of one TWS read (``collect: ticks`` in
    subjects.yaml): the subscription yields each, in order, with the message's seq; a gap marks
    the first tick after it, and a status between messages stays in its place."""
    daemon = FakeDaemon(seq=0)
    daemon.image = {"last": {"time": 1, "price": 0.5}}
    sub = make(daemon, kind="tbt")
    await sub.open()
    await daemon.publish(1, type="tbt", ticks=[{"time": 1, "price": 1.0, "size": 5.0},
                                               {"time": 1, "price": 1.5, "size": 1.0}])
    await daemon.publish(2, type="status", state="stale", reason="farm")
    await daemon.publish(4, type="tbt", ticks=[{"time": 2, "price": 2.0, "size": 3.0}])
    assert isinstance(await sub.next(), Image)
    got = [await sub.next() for _ in range(4)]
    assert [(type(m), m.seq, m.gap, m.get("price")) for m in got] == [
        (TickByTick, 1, 0, 1.0), (TickByTick, 1, 0, 1.5), (StreamStatus, 2, 0, None),
        (TickByTick, 4, 1, 2.0)]
    assert got[0].fields.size == 5.0 and got[0].epoch == "E1"  # the published tick struct


async def test_gap_is_surfaced_when_seq_jumps() -> None:
    daemon = FakeDaemon(seq=3)
    sub = make(daemon)
    await sub.open()
    for seq in (4, 7, 8):
        await daemon.publish(seq, last=100.0 + seq)
    await sub.next()  # the image
    four, seven, eight = await sub.next(), await sub.next(), await sub.next()
    assert (four.gap, seven.gap, eight.gap) == (0, 2, 0)
    assert (sub.gaps, sub.missed, sub.seq) == (1, 2, 8)


async def test_a_slow_consumer_loses_the_oldest_messages_counted_and_marked_as_a_gap() -> None:
    daemon = FakeDaemon(seq=0)
    sub = make(daemon, maxsize=3)
    await sub.open()
    for seq in range(1, 7):
        await daemon.publish(seq, bid=float(seq))
    assert sub.dropped == 3 and sub.stats()["peak"] == 3
    assert isinstance(await sub.next(), Image)  # control items are never dropped
    four = await sub.next()
    assert (four.seq, four.gap) == (4, 3)


async def test_status_messages_are_delivered_in_order_and_tracked() -> None:
    daemon = FakeDaemon(seq=0)
    sub = make(daemon)
    await sub.open()
    await daemon.publish(1, type="status", state="stale", reason="TWS 2103: farm broken")
    await daemon.publish(2, bid=2.0)
    assert (sub.health, sub.reason) == ("stale", "TWS 2103: farm broken")
    await sub.next()
    status = await sub.next()
    assert isinstance(status, StreamStatus) and status.state == "stale"
    assert (await sub.next()).seq == 2


async def test_closed_from_a_running_daemon_ends_the_iterator_with_stream_closed() -> None:
    daemon = FakeDaemon(seq=0)
    sub = make(daemon)
    await sub.open()  # starts the keeper, as Client.start does
    await daemon.publish(1, type="status", state="closed", reason="TWS 10197: no data")
    items = [m async for m in _until_error(sub)]
    assert [type(m) for m in items[:2]] == [Image, StreamStatus]
    assert isinstance(items[-1], StreamClosed) and "10197" in str(items[-1])
    assert sub.state is SubState.CLOSED


async def test_closed_by_a_daemon_going_away_resubscribes_with_a_new_image() -> None:
    daemon = FakeDaemon(seq=5)
    sub = make(daemon)
    await sub.open()  # starts the keeper, as Client.start does
    daemon.running_epoch = None  # nobody answers tws.req.status: the daemon is gone
    daemon.epoch, daemon.seq, daemon.image = "E2", 2, {"bid": 9.0}
    await daemon.publish(6, epoch="E1", type="status", state="closed", reason="shutdown")
    assert isinstance(await sub.next(), Image)
    assert isinstance(await sub.next(), StreamStatus)
    again = await asyncio.wait_for(sub.next(), 5)
    assert isinstance(again, Image) and again.resubscribed and again.epoch == "E2"
    assert again.seq == 2 and again["bid"] == 9.0 and sub.lease == "L2"
    await daemon.publish(3)
    after = await sub.next()
    assert (after.epoch, after.seq, after.gap) == ("E2", 3, 0)


async def test_a_refused_resubscription_ends_the_iterator_with_the_daemons_error() -> None:
    daemon = FakeDaemon(seq=0)
    sub = make(daemon)
    await sub.open()  # starts the keeper, as Client.start does
    daemon.refuse = NotFound("No security definition", tws_code=200)
    daemon.keeper.recover(sub)  # as when a renewal says the lease is unknown
    items = [m async for m in _until_error(sub)]
    assert isinstance(items[-1], NotFound) and items[-1].tws_code == 200


async def test_closing_releases_the_lease_and_ends_iteration() -> None:
    daemon = FakeDaemon()
    sub = make(daemon)
    async with sub:
        assert sub.lease == "L1"
    assert daemon.released == ["L1"] and daemon.listening == []
    with pytest.raises(StopAsyncIteration):
        await sub.next()


async def test_leaving_an_async_for_releases_the_lease() -> None:
    daemon = FakeDaemon()
    async for _ in make(daemon):
        break
    # the abandoned generator is closed by the event loop, on a later turn
    await wait_until(lambda: daemon.released == ["L1"], 5, "the lease released")


def test_inbox_bound_must_hold_a_message() -> None:
    with pytest.raises(ValueError):
        Inbox(0)


async def _until_error(sub: Subscription) -> Any:
    while True:
        try:
            yield await asyncio.wait_for(sub.next(), 5)
        except (StreamClosed, NotFound) as exc:
            yield exc
            return


async def test_a_held_subscription_survives_leaving_a_loop() -> None:
    daemon = FakeDaemon(seq=0)
    async with make(daemon) as sub:
        async for _ in sub:
            break
        await daemon.publish(1, bid=1.0)
        async for msg in sub:
            assert msg.seq == 1
            break
        assert daemon.released == []
    assert daemon.released == ["L1"]


async def test_a_status_already_in_the_image_does_not_end_the_stream() -> None:
    daemon = FakeDaemon(seq=4)
    sub = make(daemon)
    await sub.open()
    await daemon.publish(3, type="status", state="closed", reason="an earlier stream")
    assert sub.state is SubState.ACTIVE and not daemon.keeper.recovering
