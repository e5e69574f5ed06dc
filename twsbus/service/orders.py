"""The order desk: placing, modifying and cancelling orders, and every order event kept.

``OrderDesk`` serves ``place_order``, ``cancel_order`` and ``orders`` (the journal's view, and
with ``"events": true`` the order stream's history: orderhistory.py). A place
is checked (``orders.checks``: types, required fields, the configured guard), journalled under its
``clientOrderId`` *before* it is sent (an atomic create in the JetStream KV bucket, so a retry or a
concurrent duplicate places nothing and answers the order's state with ``"duplicate": true``),
then sent with an order id the daemon owns, never one it journalled before.

Every order callback of the account (the router shows them all to the desk, whoever asked) goes
through the ``OrderBook`` and out as events on ``tws.orders.<account>.<strategy>.<orderId>``
(into the JetStream stream, which republishes them there), in TWS's order: one writer task
sends them one by one and retries while NATS is away, with a bounded backlog whose overflow is
counted and logged, never silent.

After every (re)connect to TWS, and after 1101/1102, the desk reconciles: it asks TWS for all open
orders, completed orders and executions (each up to its End; a timeout is a failure and is tried
again, never read as "no orders"), publishes what it had missed with ``reconciled: true``,
settles orders TWS never received, and only then reports the orders ``ok`` on
``tws.orders.status``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from twsbus.errors import (
    BadRequest,
    Conflict,
    NotConnected,
    NotFound,
    from_tws,
)
from twsbus.messages import Contract
from twsbus.orders import CancelOrder, Guard, Order, PlaceOrder, check_order, order_fields
from twsbus.orders.book import CALLBACKS, OrderBook, order_token, strategy_token
from twsbus.orders.events import (
    UNKNOWN,
    OrderEvent,
    OrderEventsReply,
    OrderRecord,
    OrdersRequest,
    PlaceReply,
)
from twsbus.orders.journal import Journal, JournalSettings, Unavailable
from twsbus.orders.writer import EventWriter
from twsbus.service import bodies
from twsbus.service.orderhistory import read_events
from twsbus.service.orderreconcile import DeskState, Reconciler
from twsbus.service.router import Router
from twsbus.service.upstream import Upstream
from twsbus.subjects import Surface, token
from twsbus.tws.callbacks import Event
from twsbus.tws.codes import NOT_ORDER_FAILURES, RESTORED, is_informational
from twsbus.tws.pacing import Ticket

log = logging.getLogger("twsbus.orders")
audit = logging.getLogger("twsbus.audit")

#: After a first non-final status (Submitted), how long a place waits for more (a market
#: order's fill comes right behind it) before answering.
SETTLE = 0.3
#: Errors about an order that do not fail it: acknowledgements and warnings.
_ENDS = ("openOrderEnd", "completedOrdersEnd", "execDetailsEnd")

_encode = msgspec.json.Encoder().encode


class OrderDesk(Reconciler):
    ops = ("place_order", "cancel_order")

    def __init__(self, surface: Surface, session: Upstream, router: Router, *, epoch: str,
                 client_id: int, guard: Guard | None = None,
                 settings: JournalSettings | None = None, timeout: float = 10.0,
                 resolve: Callable[[Contract], Awaitable[dict[str, Any]]] | None = None,
                 backlog: int = 100_000, reconcile_timeout: float = 15.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.surface = surface
        self.session = session
        self.guard = guard or Guard()
        self.settings = settings or JournalSettings()
        self.timeout = timeout
        self.resolve = resolve
        self.reconcile_timeout = reconcile_timeout
        self.book = OrderBook(client_id=client_id, epoch=epoch, clock=clock,
                              subject=self._subject, default_account=self._default_account)
        self.journal: Journal | None = None
        self.state = DeskState.STARTING
        self.reason = "waiting for NATS"
        self._loaded = False
        self.writer = EventWriter(lambda: self.journal, backlog)
        self._changed: dict[str, asyncio.Event] = {}
        self._errors: dict[str, list[tuple[int, str]]] = {}
        self._ends: dict[str, asyncio.Future[None]] = {}
        #: What was sent for an order and not yet answered (its pacing ticket), and the
        #: orders whose request the link took down with it before it was written.
        self._tickets: dict[str, Ticket] = {}
        self._unsent: dict[str, str] = {}
        #: Callbacks TWS sent about each order (repeats included), for waiters.
        self._acks: dict[str, int] = {}
        self._ok = asyncio.Event()  # reconciled since the last connect
        self._reconcile_wanted = asyncio.Event()
        self._reconciling = False
        self._place_lock = asyncio.Lock()
        self.reconciliations = 0
        self.reconciled_events = 0
        router.observe(CALLBACKS + _ENDS, self._on_event)

    def __repr__(self) -> str:
        return f"<OrderDesk {self.state} {self.book!r} {self.writer!r}>"

    def stats(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "orders": len(self.book.records),
                "live": len(self.book.live()), "backlog": self.writer.backlog,
                "dropped": self.writer.dropped, "reconciliations": self.reconciliations,
                "reconciled_events": self.reconciled_events,
                "published": self.journal.published if self.journal else 0}

    # ---- NATS side ----------------------------------------------------------------------------

    async def attach(self, nc: Any) -> None:
        """A (new) NATS connection: open the stream and the journal (load it once)."""
        try:
            self.journal = await Journal.open(nc, self.surface.prefix, self.settings)
        except Unavailable as exc:
            self.journal = None
            self._set_state(DeskState.UNAVAILABLE, str(exc))
            log.warning("orders: %s", exc)
            return
        if not self._loaded:
            self.book.load(await self.journal.load())
            self._loaded = True
            self.session.reserve_ids(self.book.highest_order_id())
            log.info("orders: %d in the journal, %d live", len(self.book.records),
                     len(self.book.live()))
        if self.state in (DeskState.STARTING, DeskState.UNAVAILABLE):
            self._set_state(DeskState.STALE, "waiting for TWS")
        if self.session.ready:
            self._reconcile_wanted.set()

    def detach(self) -> None:
        self.journal = None

    async def run(self) -> None:
        """The writer and the reconciler (the daemon's task group owns this)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.writer.run(), name="orders-writer")
            tg.create_task(self._reconcile_forever(), name="orders-reconcile")

    # ---- TWS side -------------------------------------------------------------------------------

    def tws_ready(self) -> None:
        self._ok.clear()  # until the reconciliation this asks for is done
        self._reconcile_wanted.set()

    def tws_lost(self, reason: str) -> None:
        """A request still in the pacing queue when the link went never reached TWS: its caller
        is told so (503, place it again; a new order leaves the journal). An order written to
        the link but not yet acknowledged has an unknown fate until reconciliation."""
        self._ok.clear()
        for key, ticket in list(self._tickets.items()):
            if not ticket.written:
                self._unsent[key] = f"not sent: the TWS link dropped ({reason}) before it left"
                record = self.book.get(key)
                if record is not None and record.permId is None and not record.seq:
                    self._forget(record)
                changed = self._changed.get(key)
                if changed is not None:
                    changed.set()
        self._tickets.clear()
        for record in self.book.live():
            if record.ours and record.permId is None and record.status == "PendingSubmit":
                self._emit(self.book.unknown(record, f"TWS link lost after the send ({reason})"))
        if self.journal is not None:
            self._set_state(DeskState.STALE, reason)

    def farm_event(self, code: int) -> None:
        if code in RESTORED:  # connectivity restored: what happened meanwhile is unknown
            self._reconcile_wanted.set()

    def _on_event(self, event: Event) -> None:
        name = event.name
        if name in _ENDS:
            waiter = self._ends.get(name if event.key is None else f"{name}:{event.key}")
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        data = event.data
        if name == "error":
            if event.key is None:
                return
            data = {"id": event.key, **data}
            record = self.book.by_order_id(event.key)
            if record is not None:
                self._errors.setdefault(record.key, []).append((data["code"], data["message"]))
        self._emit(self.book.apply(name, data, self._reconciling))
        touched = self.book.touched
        if touched is not None and touched.clientId == self.book.client_id and \
                touched.orderId:  # an id TWS knows is never handed out again
            self.session.reserve_ids(touched.orderId)
        if touched is not None:  # TWS answered about it, news or not: a waiter may go on
            self._acks[touched.key] = self._acks.get(touched.key, 0) + 1
            changed = self._changed.get(touched.key)
            if changed is not None:
                changed.set()

    def _emit(self, changes: list[tuple[OrderRecord, OrderEvent]]) -> None:
        for record, event in changes:
            if self._reconciling:
                self.reconciled_events += 1
            _audit(record, event)
            self.writer.put(record, event)
            changed = self._changed.get(record.key)
            if changed is not None:
                changed.set()

    # ---- endpoints ------------------------------------------------------------------------------

    async def place(self, body: bytes) -> PlaceReply:
        request = bodies.decode(body, PlaceOrder, "place_order")
        self._require_journal()
        if request.modify:
            return await self._modify(request)
        account = self._account(request)
        contract = request.contract
        order = check_order(request.order, contract, self.guard,
                            multiplier=await self._multiplier(contract))
        original = _request_signature(request, account)
        async with self._place_lock:
            known = self.book.get(request.clientOrderId) if request.clientOrderId else None
            if known is not None:
                return self._duplicate(known, original)
            await self._wait_reconciled(request.timeout, "the order was not sent")
            order_id = self.session.next_id()
            record = OrderRecord(
                key=request.clientOrderId or f"auto-{secrets.token_hex(8)}",
                clientOrderId=request.clientOrderId, orderId=order_id,
                clientId=self.book.client_id, account=account, strategy=request.strategy,
                ours=True, remaining=order.totalQuantity, contract=msgspec.to_builtins(contract),
                order=order_fields(order) | {"account": account}, request=original,
                created=self.book.clock())
            if record.clientOrderId is None:
                record.clientOrderId = record.key
            self.book.add(record)
            assert self.journal is not None
            try:
                created = await self.journal.create(record)
            except Exception as exc:
                self.book.records.pop(record.key, None)
                raise NotConnected(f"the order journal cannot be written ({exc!r}): the "
                                   "order was not sent") from None
            if not created:  # another daemon (or an earlier life of this one) journalled it
                self.book.records.pop(record.key, None)
                raise Conflict(f"clientOrderId {record.key} is in the journal already; ask "
                               "tws.req.orders for its state")
            self._send(record, order, contract)
        return await self._answer(record, request.timeout)

    async def _modify(self, request: PlaceOrder) -> PlaceReply:
        assert request.clientOrderId is not None
        record = self.book.get(request.clientOrderId)
        if record is None or not record.ours:
            raise NotFound(f"no order of ours with clientOrderId {request.clientOrderId}")
        if record.final:
            raise Conflict(f"order {record.clientOrderId} is {record.status}: it cannot be "
                           "modified")
        account = self._account(request)
        if account != record.account:
            raise BadRequest(f"order {record.clientOrderId} belongs to account {record.account}")
        order = check_order(request.order, request.contract, self.guard,
                            multiplier=await self._multiplier(request.contract))
        await self._wait_reconciled(request.timeout, "the modify was not sent")
        record.order = order_fields(order) | {"account": account}
        self._send(record, order, request.contract)
        return await self._answer(record, request.timeout, modify=True)

    async def cancel(self, body: bytes) -> PlaceReply:
        request = bodies.decode(body, CancelOrder, "cancel_order")
        if request.clientOrderId is not None:
            record = self.book.get(request.clientOrderId)
        else:
            assert request.orderId is not None
            record = self.book.by_order_id(request.orderId)
        if record is None:
            which = request.clientOrderId or request.orderId
            raise NotFound(f"no order {which} of this daemon's client id is known")
        if record.final:
            raise Conflict(f"order {record.clientOrderId or record.orderId} is {record.status}: "
                           "there is nothing to cancel")
        await self._wait_reconciled(request.timeout, "the cancel was not sent")
        args: dict[str, Any] = {}
        if request.orderCancel is not None:
            args["orderCancel"] = request.orderCancel
        audit.info("CANCEL key=%s orderId=%s", record.key, record.orderId)
        self._errors.pop(record.key, None)
        self._tickets[record.key] = self.session.call("cancelOrder", record.orderId, args)
        return await self._answer(record, request.timeout, wait_final=True)

    async def orders(self, body: bytes) -> list[OrderRecord] | OrderEventsReply:
        """The journal's records, or with ``events`` the order stream's (orderhistory.py)."""
        request = bodies.decode(body, OrdersRequest, "orders")
        if request.events:
            return await read_events(self.journal, self.surface, request)
        if request.orderId is not None or request.since is not None:
            raise BadRequest("orderId, since: for events (\"events\": true)")
        chosen = [r for r in self.book.records.values()
                  if (request.all or not r.final)
                  and (request.account is None or r.account == request.account)
                  and (request.strategy is None or r.strategy == request.strategy)]
        chosen.sort(key=lambda r: r.updated, reverse=True)
        return chosen[:request.limit or 500]

    # ---- helpers ------------------------------------------------------------------------------

    def _forget(self, record: OrderRecord) -> None:
        """A new order that never left: out of the book and the journal, so that placing it
        again (same clientOrderId) places it."""
        self.book.remove(record)
        journal = self.journal
        if journal is not None:
            task = asyncio.get_running_loop().create_task(journal.delete(record.key))
            task.add_done_callback(_log_failure)

    def owns(self, order_id: int) -> bool:
        """Is ``order_id`` one of this client's orders (its errors are order events)?"""
        return self.book.by_order_id(order_id) is not None

    def _require_journal(self) -> None:
        if self.journal is None:
            raise NotConnected(f"orders are unavailable: {self.reason}")

    def _account(self, request: PlaceOrder) -> str:
        if request.order.account:
            return request.order.account
        accounts = self.session.accounts
        if len(accounts) == 1:
            return str(accounts[0])
        raise BadRequest(f"order.account: name the account (one of {', '.join(accounts)})")

    async def _multiplier(self, contract: Contract) -> float | None:
        """The contract's multiplier, when the guard needs it and the contract does not say."""
        if not self.guard.max_notional or contract.multiplier or self.resolve is None:
            return None
        if contract.secType in ("STK", "CASH", "CRYPTO", "ETF"):
            return None
        details = await self.resolve(contract)
        value = details.get("multiplier") or 1
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    def _duplicate(self, record: OrderRecord, request: dict[str, Any]) -> PlaceReply:
        if record.request is not None and record.request != request:
            raise Conflict(f"clientOrderId {record.key} names another order already (placed "
                           "with a different contract, order or strategy)")
        return PlaceReply.of(record, duplicate=True)

    def _send(self, record: OrderRecord, order: Order, contract: Contract) -> None:
        audit.info("SEND placeOrder key=%s orderId=%s account=%s strategy=%s order=%s",
                   record.key, record.orderId, record.account, record.strategy,
                   _encode(order).decode())
        self._errors.pop(record.key, None)
        self._unsent.pop(record.key, None)
        self._tickets[record.key] = self.session.call(
            "placeOrder", record.orderId, {"contract": contract, "order": order})

    async def _answer(self, record: OrderRecord, timeout: float | None, *,
                      modify: bool = False, wait_final: bool = False) -> PlaceReply:
        """Wait until TWS has said something about the order, then answer where it stands; a
        timeout answers the state as it is (the order is not failed: events follow)."""
        changed = self._changed.setdefault(record.key, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        start_acks = self._acks.get(record.key, 0)
        settle_at: float | None = None
        try:
            while True:
                unsent = self._unsent.pop(record.key, None)
                if unsent is not None:
                    raise NotConnected(f"{unsent}; send it again (same clientOrderId)")
                failures = [(c, m) for c, m in self._errors.get(record.key) or []
                            if c not in NOT_ORDER_FAILURES and not is_informational(c)]
                refused = record.status in ("PendingSubmit", UNKNOWN) or (
                    record.final and not record.filled)
                if failures and (modify or refused):  # TWS refused the order (or the modify)
                    code, message = failures[-1]
                    self._errors.pop(record.key, None)
                    raise from_tws(code, message)
                if record.final or record.status == UNKNOWN:
                    break
                if self._acks.get(record.key, 0) > start_acks and not wait_final:
                    settle_at = settle_at or loop.time() + SETTLE
                wake = min(deadline, settle_at) if settle_at else deadline
                if loop.time() >= wake:
                    break
                changed.clear()
                try:
                    async with asyncio.timeout_at(wake):
                        await changed.wait()
                except TimeoutError:
                    pass
        finally:
            self._changed.pop(record.key, None)
            self._tickets.pop(record.key, None)
        warnings = [{"code": c, "message": m} for c, m in self._errors.pop(record.key, [])]
        return PlaceReply.of(record, warnings=warnings or None)

    def _subject(self, record: OrderRecord) -> str:
        return self.surface.subject(
            "order_events", account=token(record.account or "_", "account"),
            strategy=strategy_token(record), orderId=order_token(record))

    def _default_account(self) -> str:
        accounts = self.session.accounts
        return str(accounts[0]) if len(accounts) == 1 else ""

    def _set_state(self, state: str, reason: str) -> None:
        if state == DeskState.OK:
            self._ok.set()
        else:
            self._ok.clear()
        if state == self.state and reason == self.reason:
            return
        self.state, self.reason = state, reason
        log.info("orders: %s (%s)", state, reason)

    async def _wait_reconciled(self, timeout: float | None, what: str) -> None:
        """Orders go out only while the desk knows the account's orders (reconciled since the
        last connect): before that an order id or a duplicate could not be ruled out. A place
        made just as TWS comes back waits for it, up to its own timeout."""
        if not self.session.ready:
            raise NotConnected(f"TWS is {self.session.state.value}: {what}")
        try:
            async with asyncio.timeout(timeout or self.timeout):
                await self._ok.wait()
        except TimeoutError:
            raise NotConnected(f"orders are {self.state} ({self.reason}): {what}") from None
        if not self.session.ready:
            raise NotConnected(f"TWS is {self.session.state.value}: {what}")


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("orders: journal update failed: %r", task.exception())


def _request_signature(request: PlaceOrder, account: str) -> dict[str, Any]:
    plain: dict[str, Any] = msgspec.to_builtins(request)
    plain.pop("timeout", None)
    plain.setdefault("order", {})["account"] = account
    return plain


def _audit(record: OrderRecord, event: OrderEvent) -> None:
    audit.info("EVENT %s key=%s orderId=%s permId=%s seq=%d status=%s filled=%s%s%s",
               event.type, record.key, record.orderId, record.permId, event.seq,
               record.status, record.filled,
               " reconciled" if event.reconciled else "",
               f" code={event.code}" if event.code is not None else "")


__all__ = ["DeskState", "OrderDesk"]
