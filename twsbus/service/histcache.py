"""Finished answers kept for every requester: historical series that can no longer change, and
reference data (contract details, option chain parameters) that almost never does.

A second strategy asking for the same year of daily bars ends before today gets them from here
at once and costs TWS nothing, IB's historical limits included. ``completed`` says whether a
historical request lies wholly in the past (an ``endDateTime`` before now, read in the request's
own time zone, or conservatively when it names none; never ``keepUpToDate``, never a tick request
that runs forward to now). ``AnswerCache`` holds encoded replies, least recently used first out,
bounded by bytes and by age; ``stats`` (hits, misses, bytes, entries, evicted) is shown in
``tws.req.status``. A request bypasses it with ``"cache": false`` (its fresh answer is kept).
"""

from __future__ import annotations

import collections
import datetime as dt
import re
import time
from collections.abc import Callable, Hashable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Historical ops whose answers may be kept once complete.
HISTORICAL_CACHEABLE = frozenset({"historical_data", "historical_ticks", "head_timestamp"})
#: Reference ops kept for ``ref_cache_age`` (option chains ask for hundreds at once).
REFERENCE_CACHEABLE = frozenset({"contract_details", "sec_def_opt_params"})

_TIME_RE = re.compile(r"^(\d{8})(?:([ -]+)(\d{1,2}):(\d{2}):(\d{2}))?Z?(?:\s+(\S+))?$")
#: Without a time zone the instrument's own applies, which the daemon does not know: assume the
#: latest one (UTC-12), so that "past" is never claimed too early.
_WORST_OFFSET = 12 * 3600


def end_time(text: str) -> float | None:
    """An IB date-time ("20240115 16:00:00 US/Eastern", "20240115-21:00:00" in UTC, "20240115")
    as the latest epoch seconds it can mean; None when empty (now) or unreadable."""
    m = _TIME_RE.match(text.strip())
    if m is None:
        return None
    try:
        day = dt.datetime.strptime(m[1], "%Y%m%d")
        hms = (int(m[3]), int(m[4]), int(m[5])) if m[3] else (23, 59, 59)
        local = day.replace(hour=hms[0], minute=hms[1], second=hms[2])
        if (m[2] or "").strip() == "-":
            return local.replace(tzinfo=dt.UTC).timestamp()
        if m[6]:
            return local.replace(tzinfo=ZoneInfo(m[6])).timestamp()
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return local.replace(tzinfo=dt.UTC).timestamp() + _WORST_OFFSET


def completed(op: str, args: dict[str, Any], now: float | None = None) -> bool:
    """Does this historical request ask only for data that can no longer change?"""
    now = time.time() if now is None else now
    if op == "head_timestamp":
        return True  # where an instrument's data begins
    if op == "historical_data":
        if args.get("keepUpToDate") or str(args.get("whatToShow", "")).upper() == "SCHEDULE":
            return False
    elif op == "historical_ticks":
        if str(args.get("startDateTime", "")).strip():
            return False  # runs forward, possibly up to now
    else:
        return False
    end = end_time(str(args.get("endDateTime", "")))
    return end is not None and end < now


class AnswerCache:
    """Encoded replies by request, bounded by ``max_bytes`` and ``max_age`` seconds."""

    def __init__(self, max_bytes: int, max_age: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self._entries: collections.OrderedDict[Hashable, tuple[float, bytes]] = \
            collections.OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.bypassed = 0
        self.evicted = 0

    def __repr__(self) -> str:
        return (f"<AnswerCache entries={len(self._entries)} bytes={self.bytes}/{self.max_bytes} "
                f"hits={self.hits} misses={self.misses}>")

    def get(self, key: Hashable) -> bytes | None:
        found = self._entries.get(key)
        if found is not None and self.clock() - found[0] <= self.max_age:
            self._entries.move_to_end(key)
            self.hits += 1
            return found[1]
        if found is not None:  # too old
            self._drop(key)
        self.misses += 1
        return None

    def put(self, key: Hashable, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return  # would push everything else out
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self.clock(), data)
        self.bytes += len(data)
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self.evicted += 1

    def stats(self) -> dict[str, Any]:
        return {"entries": len(self._entries), "bytes": self.bytes, "max_bytes": self.max_bytes,
                "max_age": self.max_age, "hits": self.hits, "misses": self.misses,
                "bypassed": self.bypassed, "evicted": self.evicted}

    def _drop(self, key: Hashable) -> None:
        _, data = self._entries.pop(key)
        self.bytes -= len(data)
