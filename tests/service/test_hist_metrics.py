"""/metrics carries IB's historical limits as the daemon keeps them and the answer caches,
taken from the same status as tws.req.status."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client.exposition import generate_latest

from twsbus.service.metrics import Metrics

STATUS: dict[str, Any] = {
    "tws": {"state": "ready"}, "lines": {"used": 0, "max": 100},
    "depth": {"used": 0, "max": 3}, "pacing": {"queued": 0},
    "historical": {"queued": 7, "requesters": 2, "open": 3, "granted": 40, "window_used": 58,
                   "window_max": 60, "window": 600.0, "refused": 1, "longest_wait": 12.5,
                   "mean_wait": 2.25, "oldest_queued": 4.0,
                   "cache": {"hits": 5, "misses": 9, "bytes": 2048, "entries": 4}},
    "queries": {"in_flight": 0, "coalesced": 0, "cache_hits": 11, "cache_misses": 2,
                "cache_bytes": 512, "cache_entries": 2},
}


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_metrics_show_the_historical_window_queue_waits_and_caches() -> None:
    metrics = Metrics(lambda: STATUS, asyncio.get_running_loop())
    text = (await asyncio.to_thread(generate_latest, metrics.registry)).decode()
    assert sample(text, "twsbus_hist_queued") == 7
    assert sample(text, "twsbus_hist_window_used") == 58
    assert sample(text, "twsbus_hist_window_max") == 60
    assert sample(text, "twsbus_hist_refused_total") == 1
    assert sample(text, "twsbus_hist_longest_wait_seconds") == 12.5
    assert sample(text, 'twsbus_cache_hits_total{cache="historical"}') == 5
    assert sample(text, 'twsbus_cache_hits_total{cache="reference"}') == 11
    assert sample(text, 'twsbus_cache_bytes{cache="historical"}') == 2048
