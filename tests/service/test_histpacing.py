"""IB's historical-data rules kept by one fair queue: nothing due ever breaks a rule, nobody
starves, and a caller learns at once when its timeout cannot be met. Pure: the time is passed
in, so the ten-minute window is tested as it is."""

from __future__ import annotations

from twsbus.service.histpacing import HistQueue, HistRules


def drain(q: HistQueue, start: float, until: float) -> list[tuple[float, str]]:
    """Run the queue as the daemon would, jumping from one next_time to the next."""
    out: list[tuple[float, str]] = []
    now = start
    while now <= until:
        for item in q.due(now):
            out.append((now, item.requester))
            q.done(item, now)  # answered at once
        nxt = q.next_time(now)
        if nxt is None:
            break
        now = max(nxt, now + 1e-9)
    return out


def test_no_more_than_the_window_allows_and_bid_ask_counts_twice() -> None:
    q = HistQueue(HistRules(window=600, window_max=60))
    for i in range(70):
        q.submit("a", ("series", i), ("c", i), 2 if i % 2 else 1, now=0.0)
    sent = drain(q, 0.0, 5000.0)
    assert len(sent) == 70
    # In every 600 s window the weighted count stays within 60.
    weights = {}
    for i in range(70):
        weights[i] = 2 if i % 2 else 1
    times = [t for t, _ in sent]
    order = list(range(70))
    for start in times:
        inside = [weights[order[k]] for k, t in enumerate(times) if start <= t < start + 600]
        assert sum(inside) <= 60
    assert times[-1] >= 600  # the rest had to wait for the window


def test_an_identical_request_waits_out_the_identical_gap() -> None:
    q = HistQueue(HistRules(identical_gap=15))
    q.submit("a", "same", "c", 1, now=0.0)
    q.submit("b", "same", "c", 1, now=0.0)
    sent = drain(q, 0.0, 100.0)
    assert [t for t, _ in sent] == [0.0, 15.0]


def test_a_burst_on_one_contract_is_spread_over_the_burst_window() -> None:
    q = HistQueue(HistRules(burst_max=5, burst_window=2))
    for i in range(12):
        q.submit("a", ("bars", i), "AAPL/SMART/TRADES", 1, now=0.0)
    times = [t for t, _ in drain(q, 0.0, 100.0)]
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 2.0  # never six within 2 s
    assert times[:5] == [0.0] * 5


def test_requesters_take_turns_so_nobody_starves() -> None:
    q = HistQueue(HistRules(window=60, window_max=10))
    for i in range(100):
        q.submit("big", ("big", i), ("big", i), 1, now=0.0)
    q.submit("small", "one", "one", 1, now=1.0)
    sent = drain(q, 1.0, 10_000.0)
    first_small = next(i for i, (_, who) in enumerate(sent) if who == "small")
    assert first_small <= 1  # served in the first round it was queued for


def test_open_requests_are_capped_until_one_is_done() -> None:
    q = HistQueue(HistRules(max_open=2))
    items = [q.submit("a", i, i, 1, now=0.0) for i in range(3)]
    granted = q.due(0.0)
    assert len(granted) == 2 and q.next_time(0.0) is None  # held by the open limit
    q.done(granted[0], 0.0)
    assert q.due(0.0) == [items[2]]


def test_earliest_tells_a_caller_how_long_before_its_request_could_go() -> None:
    q = HistQueue(HistRules(identical_gap=15))
    q.due(0.0)
    item = q.submit("a", "same", "c", 1, now=0.0)
    assert q.due(0.0) == [item]
    assert q.earliest("same", "c", 1, now=3.0) == 18.0  # if it finished now
    q.done(item, 1.0)
    assert q.earliest("same", "c", 1, now=3.0) == 16.0
    assert q.earliest("other", "c", 1, now=3.0) == 3.0


def test_a_withdrawn_request_is_never_granted() -> None:
    q = HistQueue()
    item = q.submit("a", "x", "x", 1, now=0.0)
    q.withdraw(item)
    assert q.due(0.0) == [] and q.queued == 0


async def test_the_pacer_grants_in_turn_and_refuses_what_cannot_meet_its_deadline() -> None:
    import asyncio

    import pytest

    from twsbus.errors import BudgetExhausted
    from twsbus.service.histpacing import HistoricalPacer

    pacer = HistoricalPacer(HistRules(identical_gap=0.2))
    runner = asyncio.create_task(pacer.run())
    try:
        now = pacer.clock()
        first = await pacer.acquire("a", "same", "c", 1, deadline=now + 5)
        order: list[str] = []

        async def second() -> None:
            item = await pacer.acquire("b", "same", "c", 1, deadline=pacer.clock() + 5)
            order.append("b")
            pacer.release(item)

        waiting = asyncio.create_task(second())
        with pytest.raises(BudgetExhausted) as refused:  # cannot go within 0.01 s
            await pacer.acquire("c", "same", "c", 1, deadline=pacer.clock() + 0.01)
        assert refused.value.code == 429 and refused.value.retry_after is not None
        assert refused.value.retry_after > 0
        assert order == []  # b still waits out the identical gap
        pacer.release(first)
        await waiting
        assert order == ["b"] and pacer.stats()["refused"] == 1
    finally:
        runner.cancel()


def test_the_rules_count_from_when_a_request_finished_not_when_it_was_granted() -> None:
    """A granted request may wait in the outbound queue before TWS sees it: only its answer
    bounds when it arrived, so the window and the gap run from there."""
    q = HistQueue(HistRules(window=10, window_max=1, identical_gap=5))
    first = q.submit("a", "x", "x", 1, now=0.0)
    assert q.due(0.0) == [first]
    second = q.submit("b", "y", "y", 1, now=0.0)
    assert q.due(30.0) == [] and q.next_time(30.0) is None  # still open: wait for it
    q.done(first, 3.0)
    assert q.next_time(3.0) == 13.0  # ten seconds after it finished
    assert q.due(13.0) == [second]
    q.done(second, 13.5)
    assert q.earliest("y", "y", 1, now=14.0) == 23.5


def test_a_bid_ask_request_is_not_starved_by_weight_one_requests_filling_the_window() -> None:
    q = HistQueue(HistRules(window=10, window_max=4))
    for i in range(3):
        q.submit("light", ("l", i), ("l", i), 1, now=0.0)
    assert len(drain(q, 0.0, 0.0)) == 3  # one unit of the window left
    q.submit("heavy", "bidask", "b", 2, now=0.5)
    for i in range(3, 20):
        q.submit("light", ("l", i), ("l", i), 1, now=0.5)
    sent = drain(q, 0.5, 100.0)
    # The heavy request keeps its turn: the freed unit is not handed to the light queue.
    assert sent[0] == (10.0, "heavy")


def test_a_request_shared_by_a_small_requester_goes_at_its_turn_not_the_big_ones() -> None:
    q = HistQueue(HistRules(window=10, window_max=2))
    for i in range(6):
        q.submit("big", ("s", i), ("s", i), 1, now=0.0)
    assert q.join(("s", 5), "small")  # small asks for big's last series: coalesced
    assert not q.join(("s", 99), "small")  # nothing queued to join
    assert q.queued == 6
    first = q.due(0.0)
    # The window takes two: big's first, then small's turn, which is big's last series.
    assert [item.identity for item in first] == [("s", 0), ("s", 5)]
    for item in first:
        q.done(item, 0.0)
    assert len(drain(q, 0.0, 100.0)) == 4 and q.queued == 0
