"""The lease registry: reference counts over shared streams, linger, expiry, budgets, recovery.

``subscribe`` resolves the contract (cached contract details), finds or starts the stream for the
key, and hands out a lease with a ttl. The first lease on a key starts the TWS request; a lease
that is released or not renewed in time drops its reference; a stream with none left lingers for
``linger`` seconds (a quick re-subscribe reuses it) and is then cancelled upstream. Market-data
lines, depth requests, tick-by-tick and scanner subscriptions are counted as TWS counts them and
refused with 429 past the budget, before anything is sent; ``hist_bars`` streams are sent under IB's
historical-data limits, in turn with historical queries (``histpacing``). When TWS comes back
after a loss, every stream still held is requested again with a new id (``hist_bars`` ones as the
limits allow); subscribers see ``stale`` then ``ok`` on the same subject, seq continuing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from twsbus.errors import (
    BadRequest,
    BudgetExhausted,
    Conflict,
    NotConnected,
    NotFound,
    TwsBusError,
    from_tws,
)
from twsbus.messages import Contract
from twsbus.service import bodies
from twsbus.service.histpacing import HistoricalPacer, Pending
from twsbus.service.kinds import make_kinds
from twsbus.service.publisher import Publisher
from twsbus.service.router import Router
from twsbus.service.streams import Health, Kind, Stream, StreamState
from twsbus.service.upstream import Clock, Upstream
from twsbus.subjects import Surface, template_fields, token
from twsbus.tws.codes import FARM_DOWN, FARM_UP, NOT_REQUEST_FAILURES, IbCode, is_informational
from twsbus.tws.ticks import volume_scale

log = logging.getLogger("twsbus.leases")

Resolver = Callable[[Contract], Awaitable[dict[str, Any]]]

#: How long a paced re-request after a reconnect may wait for IB's historical limits.
MAX_REQUEST_WAIT = 3600.0
#: How long a new stream's first subscriber waits after TWS's first data for the rest of it.
IMAGE_SETTLE = 0.02
#: Farm codes and the kinds they concern (None: every kind).
_FARMS = {"market": ("ticks", "tbt", "bars", "depth"), "history": ("hist_bars", "scanner")}


@dataclass
class Lease:
    id: str
    stream: Stream
    ttl: float
    expires: float


class SubscribeReply(msgspec.Struct, omit_defaults=True):
    lease: str
    subject: str
    ttl: float
    epoch: str
    seq: int
    state: str
    image: dict[str, Any]
    conId: int | None = None
    reason: str | None = None


class LeaseRegistry:
    def __init__(self, surface: Surface, session: Upstream, router: Router,
                 publisher: Publisher, resolver: Resolver, *, epoch: str, ttl: float = 30.0,
                 ttl_max: float = 300.0, linger: float = 5.0, max_lines: int = 100,
                 max_depth: int = 3, max_tbt: int = 3, max_scanner: int = 10,
                 confirm_window: float = 1.0, clock: Clock = time.monotonic) -> None:
        self.surface = surface
        self.session = session
        self.router = router
        self.publisher = publisher
        self.resolve = resolver
        self.epoch = epoch
        self.ttl = ttl
        self.ttl_max = ttl_max
        self.linger = linger
        self.max_lines = max_lines
        self.max_depth = max_depth
        self.max_tbt, self.max_scanner = max_tbt, max_scanner
        self.confirm_window = confirm_window
        #: IB's historical-data limits (``histpacing``): ``hist_bars`` streams wait their turn
        #: for at most ``pacer_timeout`` seconds (429 with retry_after past it).
        self.pacer: HistoricalPacer | None = None
        self.pacer_timeout = 10.0
        self.clock = clock
        self.kinds: dict[str, Kind] = make_kinds(publisher, surface.subscriptions)
        self.request_types = {name: kind.spec.request_type for name, kind in self.kinds.items()}
        self.streams: dict[tuple[Any, ...], Stream] = {}
        self.leases: dict[str, Lease] = {}
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()  # paced re-requests after a reconnect
        self.expired = 0
        self.refused = 0

    def __repr__(self) -> str:
        return (f"<LeaseRegistry streams={len(self.streams)} leases={len(self.leases)} "
                f"lines={self.lines_used}/{self.max_lines}>")

    # ---- budgets ------------------------------------------------------------------------------

    @property
    def lines_used(self) -> int:
        return sum(s.kind.lines for s in self.streams.values())

    @property
    def depth_used(self) -> int:
        return sum(s.kind.depth for s in self.streams.values())

    def method_in_use(self, method: str) -> bool:
        """Is an id-less TWS subscription (reqPositions...) held by a stream? Queries must then
        not cancel it after their answer."""
        return any(s.kind.method == method and not s.kind.keyed for s in self.streams.values())

    @property
    def tbt_used(self) -> int:
        return sum(s.kind.tbt for s in self.streams.values())

    def _check_budget(self, kind: Kind) -> None:
        for attr, limit, what in (("lines", self.max_lines, "market-data lines"),
                                  ("depth", self.max_depth, "market-depth requests"),
                                  ("tbt", self.max_tbt, "tick-by-tick subscriptions"),
                                  ("scanner", self.max_scanner, "scanner subscriptions")):
            cost: int = getattr(kind, attr)
            while cost and self.used(attr) + cost > limit:
                if self._evict_lingering(attr):
                    continue
                self.refused += 1
                holders = sorted(self.streams.values(), key=lambda s: -len(s.leases))
                top = ", ".join(f"{s.subject} ({len(s.leases)} leases)" for s in holders
                                if getattr(s.kind, attr))[:400]
                raise BudgetExhausted(f"{what} budget exhausted: {self.used(attr)}/{limit} "
                                      f"in use by {top}")

    def used(self, attr: str) -> int:  # of one budget: lines, depth, tbt, scanner
        return sum(getattr(s.kind, attr) for s in self.streams.values())

    def lingering_for(self, stream: Stream) -> float | None:
        """Seconds until a stream with no lease left is cancelled upstream (None: it has
        leases, or is not live)."""
        if stream.state is not StreamState.LINGERING:
            return None
        return round(max(0.0, stream.linger_until - self.clock()), 3)

    def _evict_lingering(self, attr: str) -> bool:
        """Free a budget unit held only by a lingering stream, oldest linger first."""
        lingering = sorted((s for s in self.streams.values()
                            if s.state is StreamState.LINGERING and getattr(s.kind, attr)),
                           key=lambda s: s.linger_until)
        if not lingering:
            return False
        self._close(lingering[0], "evicted while lingering to make room")
        return True

    # ---- subscribe / renew / release -----------------------------------------------------------

    async def subscribe(self, kind_name: str, body: bytes) -> SubscribeReply:
        kind = self.kinds.get(kind_name)
        if kind is None:
            raise NotFound(f"unknown subscription kind {kind_name!r}; kinds: "
                           f"{', '.join(self.kinds)}")
        request: Any = bodies.decode(body, self.request_types[kind_name], f"sub.{kind_name}")
        ttl = float(request.ttl if request.ttl is not None else self.ttl)
        if not 0 < ttl <= self.ttl_max:
            raise BadRequest(f"ttl must be in (0, {self.ttl_max:g}] seconds")
        params = await self._params(kind, request)
        return await self._attach(kind, params, ttl)

    async def _params(self, kind: Kind, request: Any) -> dict[str, Any]:
        params = {name: getattr(request, name) for name in kind.params}
        for name in template_fields(self.surface.subscriptions[kind.name].data):
            if params.get(name):  # checked before anything happens (no contract lookup)
                token(params[name], name)
        if kind.needs_contract:
            if request.contract is None or request.contract.is_empty():
                raise BadRequest(f"{kind.name}: a contract is required")
            contract = await self.resolve(request.contract)
            params["conId"] = contract["conId"]
            params["secType"], params["currency"] = contract.get("secType"), \
                contract.get("currency")
            params["contract"] = Contract(conId=contract["conId"],
                                          exchange=request.contract.exchange or
                                          contract.get("exchange") or "SMART")
        if "account" in params and not params["account"]:
            accounts = self.session.accounts
            if len(accounts) != 1:
                raise BadRequest(f"{kind.name}: name the account (one of {accounts})")
            params["account"] = accounts[0]
        return params

    async def _attach(self, kind: Kind, params: dict[str, Any], ttl: float, *,
                      permanent: bool = False) -> SubscribeReply:
        """Find or start the stream and lease it (``permanent``: hold it with no lease, for the
        watchlist; the reply's ``lease`` is then empty)."""
        subject = self._subject(kind, params)
        key = (kind.name, subject)
        async with self._lock:
            stream = self.streams.get(key)
            if stream is None:
                if not self.session.ready:
                    raise NotConnected(f"TWS is {self.session.state.value}")
                self._check_budget(kind)
                stream = Stream(kind, key, subject, dict(params),
                                self.publisher.outbox(subject, kind.type_name, kind.conflate,
                                                      kind.collect))
                stream.owner = self
                self.streams[key] = stream
                fresh = True
            else:
                self._check_agreement(stream, params)
                fresh = False
                if kind.merge_params(stream, params) and self.session.ready:
                    self._restart_upstream(stream)
            if permanent:
                stream.permanent = True
                if stream.state is StreamState.LINGERING:
                    stream.state = StreamState.LIVE
                lease = None
            else:
                lease = self._new_lease(stream, ttl)
        if fresh:
            try:
                await self._start(stream)
            except BaseException:
                if lease is not None:
                    self._drop_lease(lease.id)
                stream.permanent = False
                self._close(stream, "refused", cancel=False)
                raise
        return SubscribeReply(
            lease=lease.id if lease is not None else "", subject=subject, ttl=ttl, epoch=self.epoch,
            seq=stream.box.seq, state=stream.health.value, image=dict(stream.image),
            conId=stream.con_id, reason=stream.reason if stream.health is not Health.OK
            else None)

    def _check_agreement(self, stream: Stream, params: dict[str, Any]) -> None:
        for name, value in params.items():
            if name == "contract" or name in stream.kind.mergeable or name in \
                    stream.kind.key_params:
                continue
            if stream.params.get(name) != value:
                raise Conflict(f"{stream.subject} is live with {name}={stream.params.get(name)!r}"
                               f"; this subscription asks {value!r}")

    def _subject(self, kind: Kind, params: dict[str, Any]) -> str:
        return self.surface.data_subject(kind.name, **params)

    def _new_lease(self, stream: Stream, ttl: float) -> Lease:
        # 192 random bits: a lease id is its holder's only proof of ownership (renew and
        # release take any id), so it must be unguessable and is never published.
        lease = Lease(secrets.token_urlsafe(24), stream, ttl, self.clock() + ttl)
        self.leases[lease.id] = lease
        stream.leases.add(lease.id)
        if stream.state is StreamState.LINGERING:
            stream.state = StreamState.LIVE
        return lease

    def renew(self, ids: list[str]) -> tuple[list[str], list[str]]:
        now = self.clock()
        renewed: list[str] = []
        unknown: list[str] = []
        for lease_id in ids:
            lease = self.leases.get(lease_id)
            if lease is None:
                unknown.append(lease_id)
            else:
                lease.expires = now + lease.ttl
                renewed.append(lease_id)
        return renewed, unknown

    def release(self, ids: list[str]) -> tuple[list[str], list[str]]:
        released: list[str] = []
        unknown: list[str] = []
        for lease_id in ids:
            (released if self._drop_lease(lease_id) else unknown).append(lease_id)
        return released, unknown

    def _drop_lease(self, lease_id: str) -> bool:
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return False
        stream = lease.stream
        stream.leases.discard(lease_id)
        if not stream.held and stream.state is not StreamState.CLOSED:
            stream.state = StreamState.LINGERING
            stream.linger_until = self.clock() + self.linger
        return True

    def snapshot(self, subject: str) -> dict[str, Any]:
        for stream in self.streams.values():
            if stream.subject == subject:
                return {"subject": subject, "seq": stream.box.seq, "epoch": self.epoch,
                        "state": stream.health.value, "image": dict(stream.image)}
        raise NotFound(f"no live subscription publishes {subject}")

    # ---- upstream ---------------------------------------------------------------------------

    async def _start(self, stream: Stream) -> None:
        """Send the TWS request and wait (briefly) for TWS to accept or refuse it, so that a
        refusal fails this subscribe with TWS's code and the reply carries a first image."""
        turn = await self._hist_turn(stream, self.pacer_timeout)
        stream.waiter = asyncio.get_running_loop().create_future()
        try:
            self._request_upstream(stream)
            await asyncio.wait_for(asyncio.shield(stream.waiter), self.confirm_window)
            await asyncio.sleep(IMAGE_SETTLE)  # the rest of TWS's first burst (a whole book)
        except TimeoutError:
            pass  # no answer yet (no ticks outside market hours): accepted until TWS says no
        finally:
            stream.waiter = None
            if turn is not None and self.pacer is not None:
                self.pacer.release(turn)  # answered (or given its chance): no longer open
        if stream.health is Health.STALE and stream.state is not StreamState.CLOSED:
            stream.set_health(Health.OK, "subscribed", self.publisher)

    async def _hist_turn(self, stream: Stream, timeout: float) -> Pending | None:
        """A turn under IB's historical limits for a paced kind (None for the others)."""
        if self.pacer is None or not stream.kind.paced:
            return None
        return await self.pacer.turn(stream.kind.name, stream.kind.request(stream), timeout)

    async def _request_paced(self, stream: Stream) -> None:
        """Ask again (after a reconnect) once IB's historical limits allow it."""
        turn = None
        try:
            turn = await self._hist_turn(stream, MAX_REQUEST_WAIT)
            if stream.state is not StreamState.CLOSED and self.session.ready:
                self._request_upstream(stream)
        except TwsBusError as exc:
            log.warning("could not re-request %s: %s", stream.subject, exc)
        finally:
            if turn is not None and self.pacer is not None:
                self.pacer.release(turn)

    def _request_upstream(self, stream: Stream) -> None:
        kind = stream.kind
        stream.volume_scale = volume_scale(self.session.server_version,
                                           stream.params.get("secType"),
                                           stream.params.get("currency"))
        if kind.keyed:
            stream.req_id = self.session.next_id()
            self.router.bind(stream.req_id, stream)
        else:
            # reqPositions / reqAccountUpdates carry no id: callbacks come by name. Asking
            # again while another stream holds it only makes TWS resend its current state.
            stream.req_id = -1
            self.router.listen(kind.unkeyed, stream)
        self.session.call(kind.method, stream.req_id if kind.keyed else None,
                          kind.request(stream))

    def _restart_upstream(self, stream: Stream) -> None:
        """Ask again with the merged parameters (a wider genericTickList, more depth rows)."""
        self._cancel_upstream(stream)
        self._request_upstream(stream)

    def _cancel_upstream(self, stream: Stream) -> None:
        kind = stream.kind
        if kind.keyed and stream.req_id is not None:
            self.router.unbind(stream.req_id, stream)
            if self.session.ready:
                method, args = kind.cancel(stream)
                self._call_quietly(method, stream.req_id, args)
        elif not kind.keyed:
            self.router.unlisten(kind.unkeyed, stream)
            others = [s for s in self.streams.values() if s is not stream and
                      s.kind.method == kind.method]
            if not others and self.session.ready:
                method, args = kind.cancel(stream)
                self._call_quietly(method, None, args)
        stream.req_id = None

    def _call_quietly(self, method: str, key: int | None, args: dict[str, Any]) -> None:
        try:
            self.session.call(method, key, args)
        except TwsBusError as exc:
            log.warning("could not send %s: %s", method, exc)

    def _close(self, stream: Stream, reason: str, cancel: bool = True) -> None:
        if cancel:
            self._cancel_upstream(stream)
        elif stream.req_id is not None and stream.kind.keyed:
            self.router.unbind(stream.req_id, stream)
        else:
            self.router.unlisten(stream.kind.unkeyed, stream)
        stream.state = StreamState.CLOSED
        stream.set_health(Health.CLOSED, reason, self.publisher)
        for lease_id in list(stream.leases):
            self.leases.pop(lease_id, None)
        stream.leases.clear()
        self.streams.pop(stream.key, None)
        self.publisher.flush_soon()

    # ---- the stream's owner side: answers and errors from TWS ----------------------------------

    def stream_answered(self, stream: Stream, complete: bool) -> None:
        """TWS sent data for the stream; ``complete`` once its initial state is all in."""
        waiter = stream.waiter
        if complete and waiter is not None and not waiter.done():
            waiter.set_result(None)
        if stream.health is not Health.OK and stream.health is not Health.CLOSED:
            stream.set_health(Health.OK, "data flowing", self.publisher)

    def stream_error(self, stream: Stream, code: int, message: str) -> None:
        if is_informational(code) or code in NOT_REQUEST_FAILURES:
            return
        err = from_tws(code, message)
        waiter = stream.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)  # the subscribe fails with TWS's code
            return
        log.warning("TWS ended %s: %d %s", stream.subject, code, message)
        self._close(stream, f"TWS {code}: {message}", cancel=False)

    # ---- connection and farm events -------------------------------------------------------------

    def tws_lost(self, reason: str) -> None:
        for stream in self.streams.values():
            if stream.kind.keyed and stream.req_id is not None:
                self.router.unbind(stream.req_id, stream)
            stream.req_id = None
            stream.set_health(Health.STALE, reason, self.publisher)
            if stream.waiter is not None and not stream.waiter.done():
                stream.waiter.set_exception(NotConnected(reason))

    def tws_ready(self) -> None:
        """Re-request every stream with a new id; health turns ok with the first data."""
        for stream in list(self.streams.values()):
            if not stream.kind.keyed:
                self.router.unlisten(stream.kind.unkeyed, stream)
            if stream.kind.paced and self.pacer is not None:
                task = asyncio.get_running_loop().create_task(self._request_paced(stream))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                continue
            try:
                self._request_upstream(stream)
            except TwsBusError as exc:
                log.warning("could not re-request %s: %s", stream.subject, exc)
        self.publisher.flush_soon()

    def farm_event(self, code: int, message: str) -> None:
        if code in FARM_DOWN:
            farm, health = FARM_DOWN[code], Health.STALE
        elif code in FARM_UP:
            farm, health = FARM_UP[code], Health.OK
        else:
            return
        kinds = _FARMS[farm] if farm else None
        for stream in self.streams.values():
            if kinds is None or stream.kind.name in kinds:
                stream.set_health(health, f"TWS {code}: {message}", self.publisher)
        if code == IbCode.RESTORED_DATA_LOST:  # restored, data lost: TWS dropped our subscriptions
            self.tws_ready()
        self.publisher.flush_soon()

    def close_all(self, reason: str) -> None:
        """Shutdown: cancel every TWS subscription and tell subscribers the stream closed."""
        for task in self._pending:
            task.cancel()
        for stream in list(self.streams.values()):
            self._close(stream, reason)

    # ---- time ---------------------------------------------------------------------------

    def sweep(self) -> None:
        """Expire leases past their ttl and end lingers past their deadline."""
        now = self.clock()
        for lease in [lease for lease in self.leases.values() if lease.expires <= now]:
            self.expired += 1
            self._drop_lease(lease.id)
        for stream in list(self.streams.values()):
            if stream.state is StreamState.LINGERING and stream.linger_until <= now:
                log.info("cancelling %s after its linger", stream.subject)
                self._close(stream, "no subscribers")
                self.publisher.forget(stream.subject)

    async def run(self, period: float = 0.25) -> None:
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def watch(self, kind_name: str, params: dict[str, Any]) -> Awaitable[Any]:
        """Hold a subscription with no lease (config watchlist)."""
        async def hold() -> None:
            kind = self.kinds[kind_name]
            full = {name: params.get(name, default) for name, default in kind.params.items()}
            if kind.needs_contract:
                full["contract"] = Contract(**params["contract"])
            request = msgspec.convert(full | {"ttl": None}, self.request_types[kind_name])
            resolved = await self._params(kind, request)
            await self._attach(kind, resolved, self.ttl_max, permanent=True)

        return hold()
