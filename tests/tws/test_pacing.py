"""PacedSender: withdrawn requests never reach TWS and cost no token; the queue stays bounded.

Driven synchronously through ``pump`` with a list as the writer and a token bucket on a fake
clock: no event loop, no sleeps.
"""

from __future__ import annotations

import asyncio

import pytest

from twsbus.errors import BudgetExhausted
from twsbus.tws.pacing import PacedSender, Ticket, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sender(rate: float = 45.0, burst: int = 5, max_queue: int = 10_000,
            ) -> tuple[PacedSender, list[bytes], Clock]:
    clock = Clock()
    sender = PacedSender(max_queue=max_queue, bucket=TokenBucket(rate, burst, clock))
    written: list[bytes] = []
    sender.attach(written.append)
    return sender, written, clock


def _request(sender: PacedSender, name: str, parts: int = 1) -> Ticket:
    return Ticket(name, [sender.send(f"{name}/{i}".encode()) for i in range(parts)])


def test_callers_that_give_up_cost_tws_nothing_when_their_request_was_still_queued() -> None:
    # Issue #11: 600 queries, 10 s timeout, 45 msg/s. Before, every timed-out request went out
    # anyway and was followed by its cancel.
    sender, written, clock = _sender()
    tickets = [_request(sender, f"q{i}") for i in range(600)]
    while clock.now < 10.0:
        clock.now += max(sender.pump(), 1e-6)
    sent_before_timeout = len(written)
    assert 0 < sent_before_timeout < 600
    cancels = 0
    for ticket in tickets:  # every caller times out at 10 s
        if not sender.withdraw(ticket):
            sender.send(f"cancel {ticket.method}".encode())
            cancels += 1
    while sender.queued:
        clock.now += max(sender.pump(), 1e-6)
    assert cancels == sent_before_timeout
    assert sender.withdrawn == 600 - sent_before_timeout
    assert len(written) == 2 * sent_before_timeout
    assert not any(t.written for t in tickets[sent_before_timeout:])
    assert sender.queued == 0 and sender.held == 0


def test_withdrawn_entries_are_skipped_without_spending_a_token() -> None:
    sender, written, _ = _sender(burst=2)  # the clock never moves: two tokens, no more
    first = _request(sender, "a")
    gone = [_request(sender, f"w{i}") for i in range(3)]
    last = _request(sender, "b")
    assert all(sender.withdraw(t) for t in gone)
    assert sender.pump() == 0  # drained: two tokens were enough for five entries
    assert written == [b"a/0", b"b/0"]
    assert first.written and last.written
    assert sender.sent == 2 and sender.withdrawn == 3


def test_a_request_partly_written_cannot_be_withdrawn_and_goes_out_whole() -> None:
    sender, written, clock = _sender(burst=1)
    ticket = _request(sender, "two", parts=2)
    sender.pump()
    assert written == [b"two/0"]
    assert sender.withdraw(ticket) is False
    assert sender.queued == 1 and sender.withdrawn == 0
    clock.now += sender.pump()
    assert sender.pump() == 0
    assert written == [b"two/0", b"two/1"]


def test_withdrawn_entries_free_their_place_in_the_bounded_queue() -> None:
    sender, _, _ = _sender(max_queue=3)
    tickets = [_request(sender, f"r{i}") for i in range(3)]
    with pytest.raises(BudgetExhausted):
        sender.send(b"fourth")
    assert sender.refused == 1
    assert sender.withdraw(tickets[1])
    assert sender.queued == 2
    sender.send(b"fourth")
    assert sender.queued == 3


def test_withdrawals_behind_a_slow_head_are_compacted_so_memory_stays_bounded() -> None:
    sender, written, _ = _sender(burst=0, max_queue=10)  # no token ever: the head never moves
    _request(sender, "head")
    for i in range(1000):
        assert sender.withdraw(_request(sender, f"w{i}"))
        assert sender.held <= 2 * sender.max_queue + 1
    assert sender.queued == 1 and sender.withdrawn == 1000 and written == []


def test_requests_discarded_with_their_connection_withdraw_as_never_sent() -> None:
    sender, _, _ = _sender()
    ticket = _request(sender, "r")
    sender.attach(None)  # the connection died before the message went out
    assert sender.discarded == 1
    assert sender.withdraw(ticket) is True
    assert sender.withdrawn == 0  # nothing left to take back


def test_the_probe_goes_first_and_past_a_full_queue() -> None:
    sender, written, clock = _sender(burst=1, max_queue=2)
    _request(sender, "r0")
    _request(sender, "r1")
    sender.send(b"probe", first=True)
    assert sender.queued == 3
    while sender.queued:
        clock.now += max(sender.pump(), 1e-6)
    assert written == [b"probe", b"r0/0", b"r1/0"]


def test_tickets_say_what_became_of_their_messages() -> None:
    sender, _, _ = _sender(burst=1)
    sent, kept = _request(sender, "reqA"), _request(sender, "reqB")
    sender.pump()
    sender.withdraw(kept)
    assert repr(sent) == "<Ticket reqA WRITTEN>"
    assert repr(kept) == "<Ticket reqB WITHDRAWN>"
    assert repr(sender) == "<PacedSender queued=0 peak=2 sent=1 withdrawn=1>"


async def test_drained_waits_for_the_last_queued_message_not_a_fixed_time() -> None:
    """Shutdown's cancels: ``drained`` returns once the last one is written, however long the
    pacing takes (issue #13: it used to be a fixed 0.1 s, which 4 cancels at 45/s outlast)."""
    sender, written, clock = _sender(burst=1)
    for i in range(4):
        sender.send(f"cancel {i}".encode())
    waiter = asyncio.ensure_future(sender.drained())
    while sender.queued:
        assert not waiter.done()  # messages still wait
        clock.now += max(sender.pump(), 1e-6)
        await asyncio.sleep(0)  # let the waiter run, if it may
    await asyncio.wait_for(waiter, 1)
    assert written == [f"cancel {i}".encode() for i in range(4)]
    idle = asyncio.ensure_future(sender.drained())  # nothing queued: at once
    await asyncio.wait_for(idle, 1)


async def test_drained_is_not_done_while_a_message_waits() -> None:
    sender, written, _ = _sender(burst=1)  # one token: the second message waits for ever
    sender.send(b"a")
    sender.send(b"b")
    sender.pump()
    waiter = asyncio.ensure_future(sender.drained())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not waiter.done() and written == [b"a"]
    sender.attach(None)  # the connection went: what waited is discarded, nothing waits now
    await asyncio.wait_for(waiter, 1)


def test_statistics_is_a_frozen_snapshot_of_the_counters() -> None:
    sender, _, _ = _sender(burst=1, max_queue=2)
    ticket = _request(sender, "a")
    _request(sender, "b")
    with pytest.raises(BudgetExhausted):
        sender.send(b"c")
    sender.pump()  # "a" goes out; "b" waits for a token
    sender.withdraw(ticket)  # too late: already written
    stats = sender.statistics()
    assert (stats.current, stats.peak, stats.sent, stats.refused, stats.withdrawn) == \
        (1, 2, 1, 1, 0)
    sender.attach(None)
    assert sender.statistics().discarded == 1 and stats.discarded == 0  # a snapshot
