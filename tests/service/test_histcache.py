"""The answer cache: only what can no longer change is kept, within its bytes and its age, and
the least recently used goes first. Pure: the clocks are fakes."""

from __future__ import annotations

import datetime as dt

from twsbus.service.histcache import AnswerCache, completed, end_time

NOW = dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_end_times_are_read_in_their_zone_or_as_late_as_they_could_be() -> None:
    eastern = end_time("20261118 16:00:00 US/Eastern")
    assert eastern == dt.datetime(2026, 11, 18, 21, 0, tzinfo=dt.UTC).timestamp()
    assert end_time("20261118-21:00:00") == eastern  # the dash form is UTC
    assert end_time("20261118-21:00:00Z") == eastern  # as TWS writes it from version 214
    naive = end_time("20261118 16:00:00")
    assert naive is not None and naive > eastern  # no zone: the latest it could mean
    assert end_time("") is None and end_time("yesterday") is None
    assert end_time("20261118 16:00:00 Mars/Olympus") is None


def test_only_requests_wholly_in_the_past_are_completed() -> None:
    past = {"endDateTime": "20261118 16:00:00 US/Eastern"}
    assert completed("historical_data", past, NOW)
    assert not completed("historical_data", {"endDateTime": ""}, NOW)  # up to now
    assert not completed("historical_data", {"endDateTime": "20261120 16:00:00 US/Eastern"}, NOW)
    assert not completed("historical_data", {**past, "keepUpToDate": True}, NOW)
    assert not completed("historical_data", {**past, "whatToShow": "SCHEDULE"}, NOW)
    assert completed("historical_ticks", {"startDateTime": "", **past}, NOW)
    assert not completed("historical_ticks", {"startDateTime": "20261118 10:00:00 US/Eastern",
                                              "endDateTime": ""}, NOW)
    assert completed("head_timestamp", {}, NOW)
    assert not completed("histogram_data", past, NOW)


def test_the_cache_is_bounded_by_bytes_least_recently_used_out() -> None:
    cache = AnswerCache(max_bytes=10, max_age=100, clock=Clock())
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # a is now the most recent
    cache.put("c", b"cccc")
    assert cache.get("b") is None and cache.get("a") == b"aaaa" and cache.get("c") == b"cccc"
    assert cache.bytes == 8 and cache.evicted == 1
    cache.put("huge", b"x" * 11)  # larger than the whole cache: not kept, nothing pushed out
    assert cache.get("huge") is None and cache.bytes == 8


def test_entries_older_than_the_age_limit_are_misses() -> None:
    clock = Clock()
    cache = AnswerCache(max_bytes=100, max_age=60, clock=clock)
    cache.put("a", b"data")
    clock.now = 60.0
    assert cache.get("a") == b"data"
    clock.now = 60.5
    assert cache.get("a") is None
    stats = cache.stats()
    assert stats["hits"] == 1 and stats["misses"] == 1 and stats["bytes"] == 0
