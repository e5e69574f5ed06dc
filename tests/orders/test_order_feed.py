"""The order feed's merge of the daemon's history and the stream's live copies, with a scripted
NATS: every event once, in stream order; a live gap (or a reconnect) sends it back to the daemon.

The live copies are what nats-server's RePublish sends: the stream sequence in ``Nats-Sequence``
and the previous sequence on the same subject in ``Nats-Last-Sequence``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from twsbus.client.orderfeed import OrderFeed
from twsbus.errors import NotConnected

SUBJECT = "tws.orders.DU1.m.7"


def event(seq: int) -> dict[str, Any]:
    return {"type": "status", "orderId": 7, "strategy": "m", "seq": seq, "status": "Submitted"}


@dataclass
class Live:
    subject: str
    data: bytes
    headers: dict[str, str]


def live(stream_seq: int, previous: int, seq: int) -> Live:
    return Live(SUBJECT, json.dumps(event(seq)).encode(),
                {"Nats-Sequence": str(stream_seq), "Nats-Last-Sequence": str(previous)})


class FakeSub:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Live] = asyncio.Queue()

    async def next_msg(self, timeout: float | None = None) -> Live:
        return await self.queue.get()

    async def unsubscribe(self) -> None:
        pass


@dataclass
class FakeNats:
    sub: FakeSub = field(default_factory=FakeSub)
    stats: dict[str, int] = field(default_factory=lambda: {"reconnects": 0})
    is_closed: bool = False
    subscribed: list[str] = field(default_factory=list)

    async def subscribe(self, subject: str) -> FakeSub:
        self.subscribed.append(subject)
        return self.sub

    async def flush(self) -> None:
        pass


class Daemon:
    """Answers replay requests from a list of stored events (seq -> per-order seq)."""

    def __init__(self, stored: dict[int, int], page: int = 2) -> None:
        self.stored = stored
        self.page = page
        self.asked: list[dict[str, Any]] = []
        self.down = 0  # requests to fail (a daemon restarting)

    async def ask(self, subject: str, body: bytes, timeout: float) -> Any:
        request = json.loads(body)
        self.asked.append(request)
        if self.down:
            self.down -= 1
            raise NotConnected("no twsbus daemon answers")
        last = max(self.stored, default=0)
        since = request.get("since")
        start = last + 1 if since == "new" else int(since or 1)
        seqs = [s for s in sorted(self.stored) if s >= start][:self.page]
        more = bool(seqs) and any(s > seqs[-1] for s in self.stored)
        return {"events": [{"seq": s, "subject": SUBJECT, "event": event(self.stored[s])}
                           for s in seqs], "last_seq": last, "more": more}


async def read(feed: OrderFeed, count: int) -> list[int]:
    return [(await asyncio.wait_for(feed.next(), 5)).stream_seq for _ in range(count)]


def feed_on(nc: FakeNats, daemon: Daemon, since: Any = None) -> OrderFeed:
    return OrderFeed(nc, daemon.ask, "tws.req.orders", "tws.orders.*.m.*", since)  # type: ignore[arg-type]


async def test_history_in_pages_then_live_each_event_once() -> None:
    nc, daemon = FakeNats(), Daemon({3: 1, 5: 2, 9: 3})
    feed = feed_on(nc, daemon)
    async with feed:
        # republished while the history was read: 9 again (a repeat), then 12 (after 9)
        nc.sub.queue.put_nowait(live(9, 5, 3))
        nc.sub.queue.put_nowait(live(12, 9, 4))
        assert await read(feed, 4) == [3, 5, 9, 12]
    assert nc.subscribed == ["tws.orders.*.m.*"]
    assert [r.get("strategy") for r in daemon.asked] == ["m", "m"]
    assert [r["since"] for r in daemon.asked] == [1, 6]  # two pages


async def test_a_live_gap_goes_back_to_the_daemon_for_what_was_missed() -> None:
    nc, daemon = FakeNats(), Daemon({3: 1})
    feed = feed_on(nc, daemon, since="new")
    async with feed:
        assert feed.known == 3
        daemon.stored.update({4: 2, 6: 3})
        nc.sub.queue.put_nowait(live(6, 4, 3))  # the copy of 4 never arrived
        assert await read(feed, 2) == [4, 6]
        assert feed.gaps == 1 and daemon.asked[-1]["since"] == 4


async def test_a_reconnect_asks_the_daemon_and_waits_while_it_is_away() -> None:
    nc, daemon = FakeNats(), Daemon({2: 1})
    feed = feed_on(nc, daemon, since=3)
    async with feed:
        daemon.stored[5] = 2  # republished while NATS was away: lost with the connection
        nc.stats["reconnects"] += 1
        daemon.down = 2
        assert await read(feed, 1) == [5]
        assert daemon.asked[-1]["since"] == 3 and len(daemon.asked) == 3
        nc.sub.queue.put_nowait(live(5, 2, 2))  # a late copy of what was replayed
        daemon.stored[8] = 3
        nc.sub.queue.put_nowait(live(8, 5, 3))
        assert await read(feed, 1) == [8]


@pytest.mark.parametrize("since", [-1, "yesterday", 1.5, True])
def test_a_bad_since_is_refused_before_anything_is_sent(since: Any) -> None:
    with pytest.raises(ValueError, match="since"):
        feed_on(FakeNats(), Daemon({}), since=since)
