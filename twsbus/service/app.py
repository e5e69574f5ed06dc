"""The daemon: one TWS session, one NATS connection, and the task group that owns every task.

``Daemon.run`` connects to NATS (reconnecting forever), registers the ``twsbus`` micro service
with an endpoint per query in subjects.yaml plus ``status``, starts the TWS session, and publishes
``tws.status`` on every change and every ``status_interval`` seconds. ``Daemon.stop`` shuts down in
order: stop taking requests, answer or fail those in flight, cancel TWS requests, disconnect from
TWS, drain NATS.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, Service, ServiceConfig

from twsbus import __version__
from twsbus.config import Config
from twsbus.errors import NotConnected
from twsbus.logs import redact
from twsbus.messages import (
    Budget,
    LeasesReply,
    LeasesRequest,
    Pacing,
    SnapshotRequest,
    Status,
    SubscriptionInfo,
    TwsErrorEvent,
    TwsLink,
)
from twsbus.service import bodies, systemd
from twsbus.service.endpoints import Requests
from twsbus.service.histcache import AnswerCache
from twsbus.service.histpacing import REPLY_HEADERS, HistoricalPacer
from twsbus.service.leases import LeaseRegistry
from twsbus.service.metrics import Metrics
from twsbus.service.natslink import LinkFailed, NatsLink, find_twins
from twsbus.service.natsmon import NatsMonitor
from twsbus.service.natsout import NatsOut
from twsbus.service.orders import OrderDesk
from twsbus.service.publisher import Publisher
from twsbus.service.queries import QueryExecutor
from twsbus.service.resolver import ContractResolver
from twsbus.service.router import Router
from twsbus.subjects import Surface, surface
from twsbus.tws.callbacks import Event
from twsbus.tws.codes import is_connection_level
from twsbus.tws.session import TwsSession, TwsState, wire_of

log = logging.getLogger("twsbus")


def new_epoch() -> str:
    """Changes every daemon start, so subscribers can tell a restart from a gap."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


class Daemon:
    def __init__(self, config: Config, *, surface_: Surface | None = None) -> None:
        self.config = config
        self.surface = surface_ or surface(config.prefix)
        self.epoch = new_epoch()
        self.router = Router(self._on_unrouted_error)
        self.session = TwsSession(config.tws(), self.router.route, self._on_tws_state)
        self.queries = QueryExecutor(self.surface, self.session, self.router,
                                     config.query_timeout)
        self.pacer = HistoricalPacer(config.hist_rules()) if config.hist_pacing else None
        self.queries.pacer = self.pacer
        if config.hist_cache_bytes:
            self.queries.hist_cache = AnswerCache(config.hist_cache_bytes, config.hist_cache_age)
        if config.ref_cache_bytes:
            self.queries.ref_cache = AnswerCache(config.ref_cache_bytes, config.ref_cache_age)
        self.publisher = Publisher(self.epoch)
        self.resolver = ContractResolver(self.queries)
        self.queries.qualify = self.resolver.qualify
        self.queries.contract_info = self.resolver.resolve
        self.leases = LeaseRegistry(
            self.surface, self.session, self.router, self.publisher, self.resolver.resolve,
            epoch=self.epoch, ttl=config.lease_ttl, ttl_max=config.lease_ttl_max,
            linger=config.linger, max_lines=config.max_lines, max_depth=config.max_depth,
            max_tbt=config.max_tbt, max_scanner=config.max_scanner)
        self.leases.pacer = self.pacer
        self.leases.pacer_timeout = config.query_timeout
        self.queries.upstream_in_use = self.leases.method_in_use
        self.desk = OrderDesk(self.surface, self.session, self.router, epoch=self.epoch,
                              client_id=config.client_id, guard=config.order_guard,
                              settings=config.journal(), timeout=config.query_timeout,
                              resolve=self.resolver.resolve)
        self.nc: NATS | None = None
        self.link = NatsLink(
            self._nats_options, self.surface.subject("status_request"), on_up=self._nats_up,
            on_down=self._nats_down, interval=config.watchdog_interval,
            timeout=config.watchdog_timeout, failures=config.watchdog_failures,
            redact=redact)
        self._twin_checked = False
        self.monitor = (NatsMonitor(config.nats_monitor_url, config.status_interval)
                        if config.nats_monitor_url else None)
        self.service: Service | None = None
        self.requests = Requests(self._max_payload, reply_prefixes=tuple(
            p.strip() for p in config.reply_prefixes.split(",") if p.strip()))
        self.metrics: Metrics | None = None
        self.dropped: dict[str, int] = {"nats_publish": 0}
        self.tws_errors = 0
        self._stop = asyncio.Event()
        self._status_changed = asyncio.Event()
        self.started = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Daemon epoch={self.epoch} tws={self.session.state.name}>"

    # ---- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        self._start_metrics()
        try:
            await self._run()
        finally:
            if self.metrics is not None:
                self.metrics.close()

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                link = tg.create_task(self.link.run(), name="nats-link")
                # NATS first: a twin must be found before TWS is touched.
                await _first(_either(self.link.up, self._stop), link)
                if self._stop.is_set():  # SIGTERM before NATS was ever reached
                    await self.link.close()
                    link.cancel()
                    return
                tg.create_task(self.session.run(), name="tws-session")
                background = [
                    tg.create_task(self._publish_status_forever(), name="status"),
                    tg.create_task(self.leases.run(), name="leases"),
                    tg.create_task(self.desk.run(), name="orders"),
                    tg.create_task(systemd.keep_alive(self._ready, self._one_line),
                                   name="systemd"),
                ]
                if self.config.watchlist:
                    background.append(tg.create_task(self._watch(), name="watchlist"))
                if self.monitor is not None:
                    background.append(tg.create_task(self.monitor.run(), name="nats-monitor"))
                if self.pacer is not None:
                    background.append(tg.create_task(self.pacer.run(), name="hist-pacing"))
                self.started.set()
                log.info("twsbus %s serving %s.* on %s", self.epoch, self.surface.prefix,
                         redact(self.config.nats))
                await _first(self._stop.wait(), link)
                for task in background:
                    task.cancel()
                await self._shutdown()
        except* (LinkFailed, TwinFound) as group:
            raise group.exceptions[0] from None

    def stop(self) -> None:
        self._stop.set()

    def _start_metrics(self) -> None:
        if self.config.metrics_port:
            self.metrics = Metrics(self.status, asyncio.get_running_loop())
            self.requests.observe = self.metrics.observe
            try:
                self.metrics.serve(self.config.metrics_host, self.config.metrics_port)
            except OSError as exc:  # metrics are not worth refusing to serve TWS for
                log.error("metrics: cannot listen on %s:%d: %s", self.config.metrics_host,
                          self.config.metrics_port, exc.strerror or exc)

    def _ready(self) -> bool:
        return self.link.connected and self.session.state is TwsState.READY

    def _one_line(self) -> str:
        return (f"TWS {self.session.state.value}, NATS "
                f"{'connected' if self.link.connected else 'disconnected'}")

    async def _shutdown(self) -> None:
        log.info("twsbus: shutting down")
        systemd.notify("STOPPING=1")
        if self.service is not None:
            await self.service.stop()  # stop taking requests
        await self.requests.drain(timeout=5.0)  # answer or fail those in flight
        self.queries.fail_all(NotConnected("twsbus is shutting down"))
        self.leases.close_all("twsbus is shutting down")  # cancels TWS subscriptions
        self.publisher.flush()
        await self.session.flush(timeout=5.0)  # the cancels leave at the pacing rate
        await self.session.close()
        await self._publish_status()
        await self.link.close()

    def _nats_options(self) -> dict[str, Any]:
        cfg = self.config
        options: dict[str, Any] = {
            "servers": [s.strip() for s in cfg.nats.split(",")],
            "name": f"twsbus-{self.epoch}",
            "max_reconnect_attempts": -1,  # the default gives up after ~2 minutes
            "reconnect_time_wait": 1,
            "pending_size": cfg.nats_pending_bytes,
            "allow_reconnect": True,
            "disconnected_cb": self._on_nats_disconnected,
            "reconnected_cb": self._on_nats_reconnected,
        }
        options.update(cfg.nats_auth())  # credentials and TLS (config.py)
        return options

    async def _nats_up(self, nc: NATS) -> None:
        """A (new) NATS connection: check for a twin once, then serve on it."""
        if not self._twin_checked:
            twins = await find_twins(nc, self.surface.service["name"], self.surface.prefix)
            if twins:
                meta = twins[0].get("metadata") or {}
                raise TwinFound(
                    f"another twsbus already serves {self.surface.prefix}.* on this NATS "
                    f"(id {twins[0].get('id')}, epoch {meta.get('epoch')}, host "
                    f"{meta.get('host')}, pid {meta.get('pid')}); stop it or use another "
                    f"--prefix")
            self._twin_checked = True
        self.nc = nc
        self.publisher.attach(NatsOut(nc))
        await self.desk.attach(nc)
        self.service = await self._start_service()
        self.requests.bind(self.service)  # true micro stats (endpoints.py)
        self._status_changed.set()

    def _nats_down(self) -> None:
        self.publisher.attach(None)
        self.desk.detach()
        self.service = None
        self._status_changed.set()

    async def _start_service(self) -> Service:
        assert self.nc is not None
        meta = self.surface.service
        service = await add_service(self.nc, ServiceConfig(
            name=meta["name"], version=__version__, description=meta["description"],
            metadata={"prefix": self.surface.prefix, "epoch": self.epoch,
                      "host": socket.gethostname(), "pid": str(os.getpid())},
            stats_handler=lambda endpoint: {"epoch": self.epoch},
        ))
        self.requests.guard_discovery(service)  # at once: no discovery reply goes anywhere
        await service.add_endpoint(EndpointConfig(
            name="status", subject=self.surface.subject("status_request"),
            handler=self.requests.handler(lambda _: self._status_reply()),
        ))
        desk_work = {"place_order": self.desk.place, "cancel_order": self.desk.cancel}
        for op in self.surface.queries:
            await service.add_endpoint(EndpointConfig(
                name=op, subject=self.surface.query_subject(op),
                handler=with_reply_headers(
                    self.requests.handler(desk_work.get(op) or self._query_work(op))),
            ))
        await service.add_endpoint(EndpointConfig(
            name="orders", subject=self.surface.subject("orders_request"),
            handler=self.requests.handler(self.desk.orders),
        ))
        for kind in self.leases.kinds:
            await service.add_endpoint(EndpointConfig(
                name=f"sub_{kind}", subject=self.surface.subject("subscribe", kind=kind),
                handler=with_reply_headers(self.requests.handler(self._subscribe_work(kind))),
            ))
        for name, work in (("renew", self._renew), ("unsubscribe", self._unsubscribe),
                           ("snapshot", self._snapshot)):
            await service.add_endpoint(EndpointConfig(
                name=name, subject=self.surface.subject(name),
                handler=self.requests.handler(work),
            ))
        return service

    def _subscribe_work(self, kind: str) -> Any:
        async def work(body: bytes) -> Any:
            return await self.leases.subscribe(kind, body)

        return work

    async def _renew(self, body: bytes) -> LeasesReply:
        request = bodies.decode(body, LeasesRequest, "lease.renew")
        renewed, unknown = self.leases.renew(request.leases)
        return LeasesReply(renewed=renewed, unknown=unknown)

    async def _unsubscribe(self, body: bytes) -> LeasesReply:
        released, unknown = self.leases.release(bodies.decode(body, LeasesRequest, "unsub").leases)
        return LeasesReply(released=released, unknown=unknown)

    async def _snapshot(self, body: bytes) -> dict[str, Any]:
        return self.leases.snapshot(bodies.decode(body, SnapshotRequest, "snapshot").subject)

    async def _watch(self) -> None:
        """Start the config's watchlist once TWS is ready (and again never: held streams are
        re-requested by the registry after reconnects)."""
        for item in self.config.watchlist:
            while True:
                await self.session.wait_ready()
                try:
                    await self.leases.watch(item.kind, {**item.params,
                                                        "contract": item.contract})
                    break
                except NotConnected:
                    await asyncio.sleep(1)
                except Exception as exc:
                    log.error("watchlist %s %s: %s", item.kind, item.contract, exc)
                    break

    def _query_work(self, op: str) -> Any:
        async def work(body: bytes) -> Any:
            return await self.queries.reply(op, body)

        return work

    def _max_payload(self) -> int:
        return int(self.nc.max_payload) if self.nc is not None else 1024 * 1024

    # ---- TWS and NATS events --------------------------------------------------------------

    def _on_tws_state(self, state: TwsState) -> None:
        log.info("TWS state: %s", state.value)
        if state is TwsState.READY:
            self.leases.tws_ready()
            self.desk.tws_ready()
        else:
            self.queries.fail_all(NotConnected(f"TWS connection {state.value}"))
            self.leases.tws_lost(f"TWS connection {state.value}")
            self.desk.tws_lost(f"TWS connection {state.value}")
        self._status_changed.set()

    def _on_unrouted_error(self, event: Event) -> None:
        if event.key is not None and self.desk.owns(event.key):
            return  # an order's error: published on the order's subject by the desk
        code, message = event.data["code"], event.data["message"]
        self.tws_errors += 1
        level = logging.INFO if is_connection_level(code) or code >= 2100 else logging.WARNING
        log.log(level, "TWS %d: %s", code, message,
                extra={"code": code, "reqId": event.key})
        self.publish(self.surface.subject("errors"), TwsErrorEvent(
            code=code, message=message, reqId=event.key if event.key is not None else -1,
            ts=time.time_ns(), epoch=self.epoch))
        if is_connection_level(code):
            self.leases.farm_event(code, message)
            self.desk.farm_event(code)
            self._status_changed.set()

    async def _on_nats_disconnected(self) -> None:
        if self._stop.is_set():
            log.info("NATS disconnected (shutting down)")
        else:
            log.warning("NATS disconnected; reconnecting")

    async def _on_nats_reconnected(self) -> None:
        log.info("NATS reconnected")
        self._status_changed.set()

    # ---- publishing -----------------------------------------------------------------------

    def publish(self, subject: str, message: Any) -> None:
        """Fire-and-forget publish from synchronous code; a failure is counted, not raised."""
        nc = self.nc
        if nc is None or nc.is_closed:
            self.dropped["nats_publish"] += 1
            return
        data = message if isinstance(message, bytes) else msgspec.json.encode(message)
        task = asyncio.get_running_loop().create_task(self._publish(subject, data))
        task.add_done_callback(_consume)

    async def _publish(self, subject: str, data: bytes) -> None:
        assert self.nc is not None
        try:
            await self.nc.publish(subject, data)
        except Exception:
            self.dropped["nats_publish"] += 1

    def status(self) -> Status:
        s = self.session
        out, sent = self.publisher.statistics(), s.sender.statistics()
        return Status(
            epoch=self.epoch,
            tws=TwsLink(state=s.state.value, serverVersion=s.server_version,
                        wire=wire_of(s.server_version),
                        accounts=s.accounts, since=s.since, host=s.config.host,
                        port=s.config.port, clientId=s.config.client_id,
                        lastError=s.last_error, reconnects=s.reconnects,
                        nextRetryIn=s.next_retry_in, probes=s.probes),
            lines=Budget(used=self.leases.lines_used, max=self.config.max_lines),
            depth=Budget(used=self.leases.depth_used, max=self.config.max_depth),
            tbt=Budget(used=self.leases.used("tbt"), max=self.config.max_tbt),
            scanner=Budget(used=self.leases.used("scanner"), max=self.config.max_scanner),
            subscriptions=[
                SubscriptionInfo(kind=st.kind.name, subject=st.subject, leases=len(st.leases),
                                 state=st.health.value, conId=st.con_id,
                                 lingering=self.leases.lingering_for(st))
                for st in self.leases.streams.values()],
            pacing=Pacing(queued=sent.current, rate=s.config.pacing_rate, peak=sent.peak,
                          sent=sent.sent, withdrawn=sent.withdrawn),
            dropped={**self.dropped, "tws_decode_errors": s.decode_errors,
                     "publish_buffer": out.dropped, "publish_failed": out.failed,
                     "tws_queue_refused": sent.refused, "tws_queue_discarded": sent.discarded},
            historical=self._historical(),
            queries={"in_flight": self.queries.in_flight, "coalesced": self.queries.coalesced,
                     **self._reference_cache(),
                     "withdrawn": self.queries.withdrawn,
                     "refused_replies": self.requests.refused_replies,
                     "answered": self.requests.answered, "failed": self.requests.failed},
            nats={"connected": self.link.connected,
                  "reconnects": int(self.nc.stats.get("reconnects", 0)) if self.nc else 0,
                  "restarts": self.link.restarts, "watchdog_missed": self.link.missed,
                  "own_slow_consumers": self.link.slow_consumers,
                  **(self.monitor.stats() if self.monitor else {"slow_consumers": None})},
            orders=self.desk.stats(),
        )

    def _historical(self) -> dict[str, Any]:
        """IB's historical limits as kept here (window use, queue, waits) and the cache."""
        out = self.pacer.stats() if self.pacer is not None else {"pacing": False}
        cache = self.queries.hist_cache
        return {**out, "cache": cache.stats() if cache is not None else {}}

    def _reference_cache(self) -> dict[str, int]:
        """Contract details and option chain parameters kept (``ref_cache_*``)."""
        cache = self.queries.ref_cache
        if cache is None:
            return {}
        return {f"cache_{k}": int(v) for k, v in cache.stats().items() if k != "max_age"}

    async def _status_reply(self) -> Status:
        return self.status()

    async def _publish_status(self) -> None:
        self.publish(self.surface.subject("status"), self.status())

    async def _publish_status_forever(self) -> None:
        while True:
            await self._publish_status()
            self._status_changed.clear()
            try:
                await asyncio.wait_for(self._status_changed.wait(), self.config.status_interval)
            except TimeoutError:
                pass


def with_reply_headers(handle: Callable[[Request], Awaitable[None]],
                       ) -> Callable[[Request], Awaitable[None]]:
    """Let the work behind ``handle`` put headers on its reply: a fresh ``REPLY_HEADERS`` dict
    per request (the request's task inherits it), merged into whatever reply is sent."""
    async def wrapped(request: Request) -> None:
        meta: dict[str, str] = {}
        respond = request.respond

        async def respond_with(data: bytes = b"", headers: dict[str, str] | None = None) -> None:
            await respond(data, headers={**meta, **(headers or {})} or None)

        request.respond = respond_with  # type: ignore[method-assign]
        token = REPLY_HEADERS.set(meta)
        try:
            await handle(request)
        finally:
            REPLY_HEADERS.reset(token)

    return wrapped


class TwinFound(Exception):
    """Another daemon already serves this prefix on this NATS (its queries, leases and orders
    would be split between the two at random)."""


async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
    waits = {asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def _first(aw: Awaitable[Any], task: asyncio.Task[Any]) -> None:
    """Wait for ``aw``, unless ``task`` ends first (its exception then propagates)."""
    waiter = asyncio.ensure_future(aw)
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
