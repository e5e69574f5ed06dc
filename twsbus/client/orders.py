"""Orders from the client: placing with an identity, the order handle, and the order-event feed.

``OrderLink`` owns the order side of the wire for one ``Client``: ``tws.req.place_order`` and
``tws.req.cancel_order`` (sent again after a NATS timeout or while no daemon answers, with the same
``clientOrderId``: the daemon's journal makes a repeated place a no-op answered ``duplicate``),
``tws.req.orders`` (the journal's view) and JetStream ordered consumers on the order stream.

``OrderHandle`` is one order as a strategy holds it: its identity, its last known state (from the
daemon's answers and from the events it has read), ``filled()`` / ``done()``, ``events()``,
``modify()`` and ``cancel()``. ``OrderFeed`` reads the order stream (``bus.orders(...)`` and
``OrderHandle.events()``): it replays from a stream sequence, a time or the start, then follows
live through one nats-py ordered consumer, which re-creates itself from the last sequence it
delivered when it misses heartbeats or a message, so the seam has no gap; the feed also drops
anything at or below the last stream sequence it yielded, so nothing comes twice. Its buffer is
nats-py's pending queue (``pending_msgs_limit``), kept small by the consumer's flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api

from twsbus.client.contracts import ContractLike, to_contract
from twsbus.client.feed import Feed
from twsbus.errors import BadRequest, Conflict, NotConnected, Timeout, TwsBusError
from twsbus.messages import Contract
from twsbus.orders.events import FINAL, UNKNOWN, OrderEvent, OrderRecord, PlaceReply
from twsbus.orders.journal import names
from twsbus.orders.model import CancelOrder, Order, PlaceOrder, as_order, order_fields
from twsbus.subjects import Surface, token

log = logging.getLogger("twsbus.client")

#: How many times a place, modify or cancel is sent before its error is raised.
ATTEMPTS = 3
#: The daemon's own default wait for a place's first answer, and NATS's margin over it.
DESK_TIMEOUT = 10.0
_MARGIN = 2.0
#: The ordered consumer's idle heartbeat: two missed in a row and it re-creates itself.
HEARTBEAT = 2.0

#: Where a feed starts: a stream sequence, a time, ``None`` (all the stream keeps) or ``"new"``.
Since = int | datetime.datetime | Literal["new"] | None
Ask = Callable[[str, bytes, float], Awaitable[Any]]

_decode_event = msgspec.json.Decoder(OrderEvent).decode


def new_client_order_id(strategy: str | None = None) -> str:
    """A fresh, unique ``clientOrderId``: ``<strategy or 'tb'>-<20 hex digits>`` (a KV key)."""
    return f"{strategy or 'tb'}-{uuid.uuid4().hex[:20]}"


class OrderNotFilled(TwsBusError):
    """``OrderHandle.filled()``: the order ended (Cancelled, ApiCancelled, Inactive) without a
    full fill. Client-side only. ``order`` is the handle, with its ``filledQuantity`` and the last
    error TWS sent about it (``order.error``)."""

    code = 409

    def __init__(self, message: str, *, order: OrderHandle) -> None:
        super().__init__(message)
        self.order = order


class OrderUpdate(msgspec.Struct, frozen=True):
    """One item of ``bus.orders(...)``: the event and where it sits in the order stream. Keep
    ``stream_seq`` and resume with ``bus.orders(..., since=stream_seq + 1)``."""

    stream_seq: int
    subject: str
    event: OrderEvent


class OrderLink:
    """The order side of the wire for one Client (the handle and the feeds talk to this)."""

    def __init__(self, nc: NATS, surface: Surface, ask: Ask) -> None:
        self.nc = nc
        self.surface = surface
        self.ask = ask
        self.stream = names(surface.prefix)[0]
        self.retries = 0  # requests sent again after a NATS timeout or no responders
        self.feeds: set[OrderFeed] = set()

    # ---- requests -------------------------------------------------------------------------

    async def place(self, contract: ContractLike, order: Order | Mapping[str, Any], *,
                    strategy: str | None = None, clientOrderId: str | None = None,
                    timeout: float | None = None, attempts: int = ATTEMPTS) -> OrderHandle:
        typed = as_order(order)
        request = _checked(PlaceOrder(
            contract=to_contract(contract), order=typed, strategy=strategy, timeout=timeout,
            clientOrderId=clientOrderId or new_client_order_id(strategy)))
        reply, sent = await self.send_place(request, attempts)
        handle = OrderHandle(self, request.contract, typed, reply, strategy=strategy,
                             timeout=timeout)
        handle.attempts = sent
        return handle

    async def send_place(self, request: PlaceOrder, attempts: int = ATTEMPTS,
                         ) -> tuple[PlaceReply, int]:
        """The daemon's answer, and how many times the request was sent."""
        raw, sent = await self._retrying("place_order", request, attempts)
        return msgspec.convert(raw, PlaceReply), sent

    async def send_cancel(self, request: CancelOrder, attempts: int = ATTEMPTS,
                          ) -> PlaceReply | None:
        """The daemon's answer; None when a cancel sent again found the order final (an
        earlier send cancelled it, or it ended meanwhile)."""
        raw, _ = await self._retrying("cancel_order", request, attempts, settled=Conflict)
        return None if raw is None else msgspec.convert(raw, PlaceReply)

    async def records(self, *, account: str | None = None, strategy: str | None = None,
                      all: bool = False) -> list[OrderRecord]:
        body = {k: v for k, v in (("account", account), ("strategy", strategy)) if v}
        raw = await self.ask(self.surface.subject("orders_request"),
                             msgspec.json.encode({**body, "all": all}), 5.0)
        return msgspec.convert(raw or [], list[OrderRecord])

    async def _retrying(self, op: str, request: PlaceOrder | CancelOrder, attempts: int,
                        settled: type[TwsBusError] | None = None) -> tuple[Any, int]:
        """Send until answered; only a lost request or reply is sent again (the daemon's own
        refusals are raised at once). ``settled``: the error that, answered to a request sent
        again, means an earlier send did the work (a cancel's 409): answered as None."""
        subject, body = self.surface.query_subject(op), msgspec.json.encode(request)
        wait = (request.timeout or DESK_TIMEOUT) + _MARGIN
        client_order_id = request.clientOrderId
        for attempt in range(1, max(attempts, 1) + 1):
            try:
                return await self.ask(subject, body, wait), attempt
            except TwsBusError as exc:
                if settled is not None and attempt > 1 and isinstance(exc, settled):
                    return None, attempt
                if not isinstance(exc, (Timeout, NotConnected)):
                    raise
                cause = exc.__cause__
                lost = isinstance(cause, (nats.errors.TimeoutError,
                                          nats.errors.NoRespondersError))
                if not lost or attempt >= attempts:
                    if lost and client_order_id:
                        exc.message = (f"{exc.message}; the outcome of {client_order_id} is not "
                                       "known: send it again with the same clientOrderId, or "
                                       f"ask bus.order({client_order_id!r})")
                        exc.args = (exc.message,)
                    raise
                self.retries += 1
                log.warning("%s: %s; sending it again (attempt %d of %d)", subject, exc,
                            attempt + 1, attempts)
                if isinstance(cause, nats.errors.NoRespondersError):
                    await asyncio.sleep(0.5 * attempt)  # a daemon restarting: give it a moment
        raise AssertionError("unreachable")

    # ---- the order stream ---------------------------------------------------------------------

    def feed(self, subject: str, since: Since = None,
             match: Callable[[OrderEvent], bool] | None = None) -> OrderFeed:
        return OrderFeed(self, subject, since, match)

    def subject(self, account: str | None, strategy: str | None, order_id: str = "*") -> str:
        """The order-event subject for an account and a strategy (``*`` for any)."""
        return self.surface.subject(
            "order_events", account=token(account, "account") if account else "*",
            strategy=token(strategy, "strategy") if strategy else "*", orderId=order_id)

    async def consume(self, subject: str, since: Since) -> tuple[Any, int]:
        """An ordered push consumer on ``subject`` and the first stream sequence wanted."""
        js = self.nc.jetstream(timeout=5)
        try:
            start = await self._start_seq(js, subject, since)
            policy = (api.DeliverPolicy.ALL if start <= 1 else
                      api.DeliverPolicy.BY_START_SEQUENCE)
            config = api.ConsumerConfig(opt_start_seq=start if start > 1 else None)
            sub = await js.subscribe(subject, stream=self.stream, ordered_consumer=True,
                                     deliver_policy=policy, config=config,
                                     idle_heartbeat=HEARTBEAT)
        except (TimeoutError, nats.errors.Error) as exc:
            raise self._js_error(exc) from exc
        return sub, start

    async def _start_seq(self, js: Any, subject: str, since: Since) -> int:
        # nats-py's ordered consumer restarts from a sequence, so a time or "new" is turned into
        # one here, once (a restart would otherwise replay from the start or be refused).
        if since is None:
            return 1
        if since == "new":
            info = await js.stream_info(self.stream)
            return int(info.state.last_seq) + 1
        if isinstance(since, datetime.datetime):
            when = since.astimezone(datetime.UTC)
            probe = await js.add_consumer(self.stream, api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_TIME, opt_start_time=when,
                filter_subject=subject, ack_policy=api.AckPolicy.NONE, mem_storage=True,
                inactive_threshold=10.0))
            try:
                return int(probe.delivered.stream_seq) + 1
            finally:
                try:
                    await js.delete_consumer(self.stream, probe.name)
                except nats.errors.Error as exc:  # it expires by itself anyway
                    log.debug("could not delete consumer %s: %r", probe.name, exc)
        if isinstance(since, int) and not isinstance(since, bool) and since >= 0:
            return max(since, 1)
        raise ValueError(f"since: a stream sequence (int >= 0), a datetime, 'new' or None, "
                         f"not {since!r}")

    def _js_error(self, exc: BaseException) -> TwsBusError:
        if isinstance(exc, nats.js.errors.NotFoundError):
            return NotConnected(f"the order stream {self.stream} does not exist: no twsbus "
                                "daemon with JetStream has run on this prefix")
        if isinstance(exc, (nats.errors.NoRespondersError,
                            nats.js.errors.ServiceUnavailableError)):
            return NotConnected("JetStream does not answer on this NATS server (orders need "
                                "nats-server -js)")
        if isinstance(exc, (nats.errors.TimeoutError, asyncio.TimeoutError)):
            return Timeout("JetStream did not answer in time")
        return NotConnected(f"JetStream: {exc!r}")

    async def close(self) -> None:
        for feed in list(self.feeds):
            await feed.aclose()


class OrderFeed(Feed[OrderUpdate]):
    """Order events from the stream, replayed from ``since`` and then followed live.

    ``async for update in feed`` yields ``OrderUpdate``s (the stream sequence, the subject and
    the ``OrderEvent``); ``async with feed:`` keeps the consumer open across several loops.
    ``last_seq`` is the stream sequence of the last update yielded."""

    def __init__(self, link: OrderLink, subject: str, since: Since,
                 match: Callable[[OrderEvent], bool] | None = None) -> None:
        self._link = link
        self.subject = subject
        self.since = since
        self._match = match
        self._sub: Any = None
        self._opening: asyncio.Future[None] | None = None
        self._ended: asyncio.Future[None] | None = None  # done when the feed is closed
        self._getting: asyncio.Future[Any] | None = None
        self._floor = 1
        self._held = False
        self.closed = False
        self.last_seq = 0
        self.delivered = 0
        self.undecodable = 0

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self._sub is not None else "new"
        return (f"<OrderFeed {self.subject} {state} since={self.since!r} "
                f"last_seq={self.last_seq} delivered={self.delivered}>")

    async def open(self) -> None:
        """Create the consumer (idempotent)."""
        if self.closed:
            raise StopAsyncIteration
        if self._opening is not None:
            await asyncio.shield(self._opening)
            return
        loop = asyncio.get_running_loop()
        self._opening, self._ended = loop.create_future(), loop.create_future()
        try:
            self._sub, self._floor = await self._link.consume(self.subject, self.since)
            self._link.feeds.add(self)
            self._opening.set_result(None)
        except BaseException as exc:
            self._opening.set_exception(exc)
            self._opening.exception()  # retrieved: other waiters see it, nobody else must
            raise

    async def next(self) -> OrderUpdate:
        """The next update; StopAsyncIteration once closed."""
        await self.open()
        while True:
            msg = await self._receive()
            seq = msg.metadata.sequence.stream
            if seq < self._floor or seq <= self.last_seq:
                continue  # before the start (a consumer restarted early), or seen already
            self.last_seq = seq
            try:
                event = _decode_event(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.undecodable += 1
                log.warning("%s seq %d is not an order event: %s", msg.subject, seq, exc)
                continue
            if self._match is not None and not self._match(event):
                continue
            self.delivered += 1
            return OrderUpdate(seq, msg.subject, event)

    async def _receive(self) -> Any:
        """The consumer's next message, or StopAsyncIteration as soon as the feed is closed. The
        pending read outlives a cancelled ``next()``, so a message is never taken and lost."""
        if self.closed or self._sub is None or self._ended is None:
            raise StopAsyncIteration
        if self._getting is None:
            self._getting = asyncio.ensure_future(self._sub.next_msg(timeout=None))
        getting = self._getting
        await asyncio.wait({getting, self._ended}, return_when=asyncio.FIRST_COMPLETED)
        if self.closed or not getting.done():
            raise StopAsyncIteration  # closed meanwhile (aclose cancels the read)
        self._getting = None
        try:
            return getting.result()
        except (nats.errors.ConnectionClosedError, asyncio.CancelledError):
            await self.aclose()
            raise NotConnected("the NATS connection is closed") from None

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)
        self._link.feeds.discard(self)
        if self._getting is not None:
            self._getting.cancel()
            with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
                await self._getting
            self._getting = None
        sub, self._sub = self._sub, None
        if sub is None:
            return
        consumer = getattr(sub, "_consumer", None)
        try:
            await sub.unsubscribe()
            if consumer:  # ephemeral: it would expire by itself, this is sooner
                await self._link.nc.jetstream(timeout=2).delete_consumer(self._link.stream,
                                                                        consumer)
        except (TimeoutError, nats.errors.Error) as exc:
            log.debug("order feed %s: close: %r", self.subject, exc)


class OrderHandle:
    """One order placed through twsbus (``await bus.place(...)`` or ``await bus.order(id)``).

    Its state (``status``, ``filledQuantity``, ``remaining``, ``avgFillPrice``, ``permId``) is the
    last the daemon answered or the handle read from the order's events. ``duplicate`` is the
    daemon's word that it knew the ``clientOrderId`` already (this call placed nothing new)."""

    def __init__(self, link: OrderLink, contract: Contract, order: Order, reply: PlaceReply, *,
                 strategy: str | None = None, timeout: float | None = None) -> None:
        self._link = link
        self.contract = contract
        self.order = order
        self.timeout = timeout
        self.clientOrderId: str = reply.clientOrderId or ""
        self.orderId: int | None = reply.orderId
        self.strategy = reply.strategy or strategy
        self.account = reply.account
        self.subject = reply.subject
        self.permId: int | None = None
        self.status = "PendingSubmit"
        self.filledQuantity = 0.0
        self.remaining: float | None = None
        self.avgFillPrice: float | None = None
        self.duplicate = False
        self.warnings: list[dict[str, Any]] = []
        self.error: tuple[int, str] | None = None  # the last error TWS sent about the order
        self.reason: str | None = None
        self.attempts = 1  # how many times the place was sent (after NATS timeouts)
        self._seq = 0
        self._apply_reply(reply)

    def __repr__(self) -> str:
        o = self.order
        what = " ".join(str(v) for v in (o.action, o.totalQuantity, o.orderType,
                                         o.lmtPrice or o.auxPrice) if v is not None)
        return (f"<OrderHandle {self.clientOrderId} orderId={self.orderId} {what} "
                f"{self.status} filled={self.filledQuantity:g}>")

    @property
    def final(self) -> bool:
        """Filled, Cancelled, ApiCancelled or Inactive: nothing more will happen to it."""
        return self.status in FINAL

    def _apply_reply(self, reply: PlaceReply) -> None:
        self.orderId = reply.orderId if reply.orderId is not None else self.orderId
        self.permId = reply.permId or self.permId
        self.account = reply.account or self.account
        self.subject = reply.subject or self.subject
        self.duplicate = reply.duplicate
        self.warnings = list(reply.warnings or [])
        self.reason = reply.reason
        self._set_status(reply.status, reply.filled, reply.remaining, reply.avgFillPrice)

    def _apply(self, event: OrderEvent) -> None:
        if event.seq and event.seq <= self._seq:
            return  # already folded in (a replay from the first event)
        self._seq = max(self._seq, event.seq)
        self.permId = event.permId or self.permId
        if event.type == "error" and event.code is not None:
            self.error = (event.code, event.message or "")
        elif event.type == "status" and event.status:
            self.reason = event.reason or self.reason
            self._set_status(event.status, event.filled, event.remaining, event.avgFillPrice)

    def _set_status(self, status: str, filled: float | None, remaining: float | None,
                    avg: float | None) -> None:
        if self.final and status not in FINAL:
            return  # a late echo of an earlier state
        self.status = status
        if filled is not None:
            self.filledQuantity = max(self.filledQuantity, float(filled))
        if remaining is not None:
            self.remaining = float(remaining)
        if avg:
            self.avgFillPrice = float(avg)

    # ---- following it -----------------------------------------------------------------------

    async def events(self) -> AsyncGenerator[OrderEvent, None]:
        """Every event of this order from the order stream, from its first, then live (it does
        not end by itself: ``break`` when done). The handle's state follows what it yields."""
        if not self.subject:
            raise NotConnected(f"the daemon gave no subject for {self.clientOrderId}")
        mine = self.clientOrderId
        feed = self._link.feed(self.subject, None,
                               lambda ev: ev.clientOrderId in (None, mine))
        async with feed:
            async for update in feed:
                self._apply(update.event)
                yield update.event

    async def done(self) -> OrderHandle:
        """Wait until the order is final (Filled, Cancelled, ApiCancelled, Inactive)."""
        if not self.final:
            async for _ in self._until_final():
                pass
        return self

    async def filled(self) -> OrderHandle:
        """Wait until the order is Filled; OrderNotFilled if it ends any other way."""
        await self.done()
        if self.status != "Filled":
            detail = self.error[1] if self.error else self.reason
            why = f" ({detail})" if detail else ""
            raise OrderNotFilled(f"order {self.clientOrderId} ended {self.status} with "
                                 f"{self.filledQuantity:g} filled{why}", order=self)
        return self

    async def _until_final(self) -> AsyncIterator[OrderEvent]:
        events = self.events()
        try:
            async for event in events:
                yield event
                if self.final:
                    return
        finally:
            await events.aclose()

    # ---- changing it --------------------------------------------------------------------------

    async def modify(self, *, timeout: float | None = None, **fields: Any) -> PlaceReply:
        """Send the order again with ``fields`` changed (IB's names; ``None`` removes one):
        ``await order.modify(lmtPrice=191.5, totalQuantity=200)``. 409 when it is final."""
        merged = order_fields(self.order) | fields
        order = as_order({k: v for k, v in msgspec.to_builtins(merged).items() if v is not None})
        request = _checked(PlaceOrder(
            contract=self.contract, order=order, clientOrderId=self.clientOrderId,
            strategy=self.strategy, modify=True, timeout=timeout or self.timeout))
        reply, _ = await self._link.send_place(request)
        self.order = order
        self._apply_reply(reply)
        return reply

    async def cancel(self, *, timeout: float | None = None) -> PlaceReply:
        """Cancel it; answers its state once final (or when ``timeout`` passes). 409 when it
        was final already."""
        request = CancelOrder(clientOrderId=self.clientOrderId, timeout=timeout or self.timeout)
        reply = await self._link.send_cancel(request) or await self._refresh()
        self._apply_reply(reply)
        return reply

    async def _refresh(self) -> PlaceReply:
        for record in await self._link.records(account=self.account or None,
                                               strategy=self.strategy, all=True):
            if record.clientOrderId == self.clientOrderId:
                return PlaceReply.of(record)
        raise TwsBusError(f"order {self.clientOrderId} is no longer in the journal")


def handle_of(link: OrderLink, record: OrderRecord) -> OrderHandle:
    """A handle on an order the journal knows (placed by this process or another one)."""
    try:
        contract = msgspec.convert((record.request or {}).get("contract") or {}, Contract)
    except msgspec.ValidationError:
        contract = Contract()
    if contract == Contract() and record.contract:  # not placed here: TWS's contract, by conId
        contract = Contract(conId=int(record.contract.get("conId") or 0))
    return OrderHandle(link, contract, _last_order(record), PlaceReply.of(record),
                       strategy=record.strategy)


def _last_order(record: OrderRecord) -> Order:
    """The order as last sent: the place request's fields, with the values TWS last reported
    for them (a modify changes them; ``record.order`` is IB's whole Order from openOrder)."""
    sent = dict((record.request or {}).get("order") or {})
    current = {k: record.order[k] for k in sent if record.order and k in record.order}
    for fields in (sent | current, sent):
        try:
            return as_order(fields)
        except BadRequest:
            continue
    return Order()


def _checked(request: PlaceOrder) -> PlaceOrder:
    """The request as the daemon will decode it: a bad clientOrderId, strategy or timeout is a
    BadRequest here, before anything is sent (a struct built in Python is not validated)."""
    try:
        return msgspec.json.decode(msgspec.json.encode(request), type=PlaceOrder)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"place_order: {exc}") from None


__all__ = [
    "UNKNOWN",
    "OrderEvent",
    "OrderFeed",
    "OrderHandle",
    "OrderLink",
    "OrderNotFilled",
    "OrderRecord",
    "OrderUpdate",
    "PlaceReply",
    "Since",
    "new_client_order_id",
]
