"""Prometheus metrics: the status counters and per-op request latency on ``/metrics``.

Off by default (``metrics_port: 0``). The counters are not kept twice: at each scrape
``StatusCollector`` takes the daemon's ``status()`` (on the event loop that owns that state, not in
the HTTP server's thread) and turns it into metric families, so ``/metrics`` and ``tws.status``
always agree. Request latency is the one thing measured here: ``Metrics.observe`` is called by
``endpoints.Requests`` when a request is answered, with its op and result code.

Names: ``twsbus_tws_state{state}``, ``twsbus_tws_ready``, ``twsbus_tws_reconnects_total``,
``twsbus_lines_used/max``, ``twsbus_depth_used/max``, ``twsbus_subscriptions``, ``twsbus_leases``,
``twsbus_pacing_queued/peak``, ``twsbus_pacing_sent_total``, ``twsbus_pacing_withdrawn_total``,
``twsbus_dropped_total{what}``, ``twsbus_queries_in_flight``, ``twsbus_queries_coalesced_total``,
``twsbus_nats_connected``, ``twsbus_nats_reconnects_total``, ``twsbus_nats_restarts_total``,
``twsbus_nats_watchdog_missed_total``, ``twsbus_nats_slow_consumers_total{side}``,
``twsbus_orders_state{state}``, ``twsbus_orders_live``, ``twsbus_orders_backlog``,
``twsbus_orders_dropped_total``, ``twsbus_orders_reconciliations_total``,
``twsbus_hist_queued/requesters/open/window_used/window_max``, ``twsbus_hist_granted_total``,
``twsbus_hist_refused_total``, ``twsbus_hist_longest/mean_wait_seconds``,
``twsbus_hist_oldest_queued_seconds``, ``twsbus_cache_hits_total/misses_total/bytes/entries``
``{cache}`` (``historical``, ``reference``),
``twsbus_request_duration_seconds{op}`` (histogram), ``twsbus_requests_total{op,code}``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

log = logging.getLogger("twsbus.metrics")

TWS_STATES = ("disconnected", "connecting", "ready", "reconnecting", "closing", "closed")
DESK_STATES = ("starting", "reconciling", "ok", "stale", "unavailable")
#: Request latency buckets, seconds: a cached answer is ~1 ms, a historical query several s.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class StatusCollector(Collector):
    """The daemon's status as metric families, read on the daemon's loop at scrape time."""

    def __init__(self, status: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self._status = status
        self._loop = loop

    def _read(self) -> dict[str, Any] | None:
        result: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

        def take() -> None:
            try:
                result.set_result(msgspec.to_builtins(self._status()))
            except BaseException as exc:
                result.set_exception(exc)

        try:
            self._loop.call_soon_threadsafe(take)
            return result.result(timeout=2.0)
        except Exception as exc:  # the loop is gone (shutting down) or busy: no status metrics
            log.debug("metrics: no status: %r", exc)
            return None

    def collect(self) -> Iterator[Metric]:
        s = self._read()
        if s is None:
            return
        yield from _tws(s)
        yield from _service(s)
        yield from _nats(s.get("nats") or {})
        yield from _orders(s.get("orders") or {})
        yield from _historical(s.get("historical") or {}, s.get("queries") or {})


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _states(name: str, doc: str, states: tuple[str, ...], current: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["state"])
    for state in (*states, current) if current not in states else states:
        family.add_metric([state], 1.0 if state == current else 0.0)
    return family


def _tws(s: dict[str, Any]) -> Iterator[Metric]:
    tws = s["tws"]
    yield _states("twsbus_tws_state", "The TWS link's state (1 for the current one)",
                  TWS_STATES, tws["state"])
    yield _gauge("twsbus_tws_ready", "1 when the TWS link is ready", tws["state"] == "ready")
    yield _counter("twsbus_tws_reconnects", "TWS reconnects", tws.get("reconnects", 0))
    yield _counter("twsbus_tws_probes", "Probes of a quiet TWS link", tws.get("probes", 0))


def _service(s: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("twsbus_lines_used", "Market-data lines in use", s["lines"]["used"])
    yield _gauge("twsbus_lines_max", "Market-data line budget", s["lines"]["max"])
    yield _gauge("twsbus_depth_used", "Depth requests in use", s["depth"]["used"])
    yield _gauge("twsbus_depth_max", "Depth request budget", s["depth"]["max"])
    subs = s.get("subscriptions") or []
    yield _gauge("twsbus_subscriptions", "Live shared subscriptions", len(subs))
    yield _gauge("twsbus_leases", "Leases held on them", sum(x["leases"] for x in subs))
    pacing = s["pacing"]
    yield _gauge("twsbus_pacing_queued", "Messages waiting in the pacing queue", pacing["queued"])
    yield _gauge("twsbus_pacing_peak", "Peak pacing queue depth", pacing.get("peak", 0))
    yield _counter("twsbus_pacing_sent", "Messages sent to TWS", pacing.get("sent", 0))
    yield _counter("twsbus_pacing_withdrawn",
                   "Queued requests taken back unsent (their caller gave up)",
                   pacing.get("withdrawn", 0))
    dropped = CounterMetricFamily("twsbus_dropped", "Messages dropped, by where",
                                  labels=["what"])
    for what, n in sorted((s.get("dropped") or {}).items()):
        dropped.add_metric([what], n)
    yield dropped
    queries = s.get("queries") or {}
    yield _gauge("twsbus_queries_in_flight", "Queries waiting for TWS",
                 queries.get("in_flight", 0))
    yield _counter("twsbus_queries_coalesced", "Identical queries answered by one TWS request",
                   queries.get("coalesced", 0))


def _nats(n: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("twsbus_nats_connected", "1 when the NATS connection is up",
                 bool(n.get("connected")))
    yield _counter("twsbus_nats_reconnects", "NATS reconnects of the current connection",
                   n.get("reconnects", 0))
    yield _counter("twsbus_nats_restarts", "NATS connections replaced by the daemon",
                   n.get("restarts", 0))
    yield _counter("twsbus_nats_watchdog_missed", "Unanswered NATS watchdog pings",
                   n.get("watchdog_missed", 0))
    slow = CounterMetricFamily("twsbus_nats_slow_consumers",
                               "Slow consumers: the daemon's own, and the server's count",
                               labels=["side"])
    slow.add_metric(["own"], n.get("own_slow_consumers") or 0)
    if n.get("slow_consumers") is not None:
        slow.add_metric(["server"], n["slow_consumers"])
    yield slow


def _orders(o: dict[str, Any]) -> Iterator[Metric]:
    if not o:
        return
    yield _states("twsbus_orders_state", "The order desk's state (1 for the current one)",
                  DESK_STATES, str(o.get("state")))
    yield _gauge("twsbus_orders_live", "Live orders", o.get("live", 0))
    yield _gauge("twsbus_orders_backlog", "Order events waiting to be written",
                 o.get("backlog", 0))
    yield _counter("twsbus_orders_dropped", "Order events dropped (backlog overflow)",
                   o.get("dropped", 0))
    yield _counter("twsbus_orders_reconciliations", "Reconciliation rounds",
                   o.get("reconciliations", 0))


def _historical(h: dict[str, Any], queries: dict[str, Any]) -> Iterator[Metric]:
    """IB's historical limits as the daemon keeps them, and the answer caches."""
    if "granted" in h:
        yield _gauge("twsbus_hist_queued", "Historical requests waiting their turn",
                     h["queued"])
        yield _gauge("twsbus_hist_requesters", "Requesters with historical requests queued",
                     h.get("requesters", 0))
        yield _gauge("twsbus_hist_open", "Historical requests open at TWS", h["open"])
        yield _gauge("twsbus_hist_window_used", "Weighted historical requests in the window",
                     h["window_used"])
        yield _gauge("twsbus_hist_window_max", "Weighted historical requests the window allows",
                     h["window_max"])
        yield _counter("twsbus_hist_granted", "Historical requests sent under the limits",
                       h["granted"])
        yield _counter("twsbus_hist_refused", "Historical requests refused with 429 (their "
                       "timeout could not be met)", h["refused"])
        yield _gauge("twsbus_hist_longest_wait_seconds", "Longest wait for a turn so far",
                     h["longest_wait"])
        yield _gauge("twsbus_hist_mean_wait_seconds", "Mean wait for a turn",
                     h.get("mean_wait", 0.0))
        yield _gauge("twsbus_hist_oldest_queued_seconds",
                     "How long the oldest queued historical request has waited",
                     h.get("oldest_queued", 0.0))
    caches = {"historical": h.get("cache") or {},
              "reference": {k[len("cache_"):]: v for k, v in queries.items()
                            if k.startswith("cache_")}}
    families: tuple[tuple[str, str, Callable[[str, str, list[str]], Any]], ...] = (
        ("hits", "Answers served from the cache", _counter_family),
        ("misses", "Cacheable requests the cache could not answer", _counter_family),
        ("bytes", "Bytes held by the cache", _gauge_family),
        ("entries", "Answers held by the cache", _gauge_family))
    for name, doc, kind in families:
        family = kind(f"twsbus_cache_{name}", doc, ["cache"])
        for cache, stats in caches.items():
            if stats:
                family.add_metric([cache], stats.get(name, 0))
        yield family


def _counter_family(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _gauge_family(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class Metrics:
    """The daemon's registry: request latency, plus the status at scrape time."""

    def __init__(self, status: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("twsbus_request_duration_seconds",
                                 "Time from a request's arrival to its reply, by op",
                                 ["op"], buckets=BUCKETS, registry=self.registry)
        self.requests = Counter("twsbus_requests", "Requests answered, by op and code "
                                "(0 = a result, else the error code)", ["op", "code"],
                                registry=self.registry)
        self.registry.register(StatusCollector(status, loop))
        self._server: Any = None

    def __repr__(self) -> str:
        where = f"port {self.port}" if self._server is not None else "not serving"
        return f"<Metrics {where}>"

    def observe(self, op: str, seconds: float, code: int) -> None:
        self.latency.labels(op).observe(seconds)
        self.requests.labels(op, str(code)).inc()

    @property
    def port(self) -> int | None:
        return int(self._server.server_port) if self._server is not None else None

    def serve(self, host: str, port: int) -> None:
        self._server, _ = start_http_server(port, host, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
