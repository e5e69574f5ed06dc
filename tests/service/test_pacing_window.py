"""The outbound pacing the daemon's query tests rely on, on a fake clock: no one-second window
carries more than TWS's 50 messages, however many requests wait (the process test in
tests/daemon/test_query_mechanics.py sees the same through the simulator's violation count)."""

from __future__ import annotations

import bisect

from scripted import FakeClock

from twsbus.tws.pacing import TokenBucket
from twsbus.tws.session import TwsConfig

TWS_LIMIT = 50  # messages per second per client; more is error 100


def send_times(bucket: TokenBucket, clock: FakeClock, count: int) -> list[float]:
    """When each of ``count`` messages, all queued at once, is let through."""
    times: list[float] = []
    while len(times) < count:
        wait = bucket.take()
        if wait:
            clock.advance(wait + 1e-6)  # a sleep never wakes early (nor exactly on time)
        else:
            times.append(clock())
    return times


def busiest_second(times: list[float]) -> int:
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


def test_ninety_queued_messages_never_put_more_than_the_limit_in_one_second() -> None:
    config = TwsConfig()
    clock = FakeClock()
    bucket = TokenBucket(config.pacing_rate, config.pacing_burst, clock=clock)
    times = send_times(bucket, clock, 90)
    assert busiest_second(times) <= TWS_LIMIT
    assert times[-1] - times[0] > 1.0  # so ninety take longer than one second
    assert times[:config.pacing_burst] == [times[0]] * config.pacing_burst  # the burst at once


def test_an_idle_bucket_refills_only_to_its_burst() -> None:
    config = TwsConfig()
    clock = FakeClock()
    bucket = TokenBucket(config.pacing_rate, config.pacing_burst, clock=clock)
    send_times(bucket, clock, 20)
    clock.advance(3600)  # an hour of quiet saves up no more than the burst
    start = clock()
    times = send_times(bucket, clock, 60)
    assert sum(t == start for t in times) == config.pacing_burst
    assert busiest_second(times) <= TWS_LIMIT
