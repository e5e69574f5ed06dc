"""The publisher's bound: a burst bigger than it goes out whole; only while NATS is away does the
bound drop (the oldest, counted). Driven in-process with a list as NATS."""

from __future__ import annotations

import msgspec

from twsbus.service.publisher import Publisher


class ListOut:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self.flushes = 0

    def publish(self, subject: str, payload: bytes) -> None:
        self.sent.append((subject, msgspec.json.decode(payload)))

    def flush(self) -> None:
        self.flushes += 1


async def test_a_burst_over_the_bound_is_published_whole_in_order() -> None:
    """A TWS read of 25 tick-by-tick ticks against a bound of 10: all 25, seq 1..25, none lost
    (it used to keep the newest 10 and count 15 dropped)."""
    publisher, out = Publisher("E", bound=10), ListOut()
    publisher.attach(out)
    box = publisher.outbox("tws.tbt.1.AllLast", "tbt")
    for i in range(25):  # one TWS read: no loop turn in between
        publisher.offer(box, {"type": "tbt", "price": float(i)})
    publisher.flush()  # the loop's next turn
    assert [m["price"] for _, m in out.sent] == [float(i) for i in range(25)]
    assert [m["seq"] for _, m in out.sent] == list(range(1, 26))
    assert box.dropped == 0 and publisher.dropped() == 0


async def test_while_nats_is_away_the_bound_keeps_the_newest_and_counts_the_rest() -> None:
    publisher, out = Publisher("E", bound=10), ListOut()
    box = publisher.outbox("tws.tbt.1.AllLast", "tbt")
    for i in range(25):  # no NATS attached
        publisher.offer(box, {"type": "tbt", "price": float(i)})
    assert box.dropped == 15
    publisher.attach(out)
    publisher.flush()
    assert [m["price"] for _, m in out.sent] == [float(i) for i in range(15, 25)]
    assert [m["seq"] for _, m in out.sent] == list(range(1, 11))  # seq counts what went out


async def test_statistics_count_what_went_out_and_what_was_lost() -> None:
    publisher, out = Publisher("E", bound=2), ListOut()
    box = publisher.outbox("tws.bars.1", "bar")
    for i in range(3):  # NATS away: one lost to the bound
        publisher.offer(box, {"type": "bar", "close": float(i)})
    publisher.attach(out)
    publisher.flush()
    stats = publisher.statistics()
    assert (stats.subjects, stats.current, stats.published, stats.dropped) == (1, 0, 2, 1)


async def test_ticks_of_one_read_travel_together_in_order_with_a_status_between() -> None:
    """A collecting subject (tick-by-tick, ``collect: ticks``): the ticks recorded before a flush
    go out as one message, at most ``collect_max`` ticks each; a status recorded in between
    closes the message before it, so order holds."""
    publisher, out = Publisher("E", collect_max=100), ListOut()
    publisher.attach(out)
    box = publisher.outbox("tws.tbt.1.AllLast", "tbt", collect="ticks")
    for i in range(130):  # one TWS read
        publisher.add(box, {"price": float(i)})
    publisher.offer(box, {"type": "status", "state": "stale"})
    for i in range(130, 135):
        publisher.add(box, {"price": float(i)})
    publisher.flush()
    assert [(m["type"], len(m.get("ticks", ())), m["seq"]) for _, m in out.sent] == [
        ("tbt", 100, 1), ("tbt", 30, 2), ("status", 0, 3), ("tbt", 5, 4)]
    prices = [t["price"] for _, m in out.sent for t in m.get("ticks", ())]
    assert prices == [float(i) for i in range(135)]
    publisher.add(box, {"price": 135.0})  # the next read: a message of its own
    publisher.flush()
    assert out.sent[-1][1]["ticks"] == [{"price": 135.0}] and out.sent[-1][1]["seq"] == 5


async def test_while_nats_is_away_a_lost_collected_message_counts_its_ticks() -> None:
    publisher = Publisher("E", bound=2, collect_max=10)
    box = publisher.outbox("tws.tbt.1.AllLast", "tbt", collect="ticks")
    for i in range(35):  # no NATS: 3 full messages + 5 collecting; the bound keeps 2 messages
        publisher.add(box, {"price": float(i)})
    assert box.dropped == 10  # the first message's 10 ticks, not "1"
    out = ListOut()
    publisher.attach(out)
    publisher.flush()
    prices = [t["price"] for _, m in out.sent for t in m["ticks"]]
    assert prices == [float(i) for i in range(10, 35)]
