"""Orders from the client: placing with an identity, the order handle, and the order-event feed.

``OrderLink`` owns the order side of the wire for one ``Client``: ``tws.req.place_order`` and
``tws.req.cancel_order`` (sent again after a NATS timeout or while no daemon answers, with the same
``clientOrderId``: the daemon's journal makes a repeated place a no-op answered ``duplicate``),
``tws.req.orders`` (the journal's view) and the order-event feeds (``orderfeed.py``).

``OrderHandle`` is one order as a strategy holds it: its identity, its last known state (from the
daemon's answers and from the events it has read), ``filled()`` / ``done()``, ``events()``
(an ``OrderFeed`` on the order's subject, from its first event), ``modify()`` and ``cancel()``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from twsbus.client.contracts import ContractLike, to_contract
from twsbus.client.orderfeed import OrderFeed, OrderUpdate, Since
from twsbus.errors import BadRequest, Conflict, NotConnected, Timeout, TwsBusError
from twsbus.messages import Contract
from twsbus.orders.events import FINAL, UNKNOWN, OrderEvent, OrderRecord, PlaceReply
from twsbus.orders.model import CancelOrder, Order, PlaceOrder, as_order, order_fields
from twsbus.subjects import Surface, token

log = logging.getLogger("twsbus.client")

#: How many times a place, modify or cancel is sent before its error is raised.
ATTEMPTS = 3
#: The daemon's own default wait for a place's first answer, and NATS's margin over it.
DESK_TIMEOUT = 10.0
_MARGIN = 2.0
Ask = Callable[[str, bytes, float], Awaitable[Any]]


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


class OrderLink:
    """The order side of the wire for one Client (the handle and the feeds talk to this)."""

    def __init__(self, nc: NATS, surface: Surface, ask: Ask) -> None:
        self.nc = nc
        self.surface = surface
        self.ask = ask
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
        feed = OrderFeed(self.nc, self.ask, self.surface.subject("orders_request"), subject,
                         since, match, on_close=self.feeds.discard)
        self.feeds.add(feed)
        return feed

    def subject(self, account: str | None, strategy: str | None, order_id: str = "*") -> str:
        """The order-event subject for an account and a strategy (``*`` for any)."""
        return self.surface.subject(
            "order_events", account=token(account, "account") if account else "*",
            strategy=token(strategy, "strategy") if strategy else "*", orderId=order_id)

    async def close(self) -> None:
        for feed in list(self.feeds):
            await feed.aclose()


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
