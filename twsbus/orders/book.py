"""The order book: every order of the account, and what each TWS callback means for it.

``OrderBook.apply(name, data, reconciled)`` takes one order callback (openOrder, orderStatus,
completedOrder, execDetails, commissionReport, or an error about an order) and answers the events
to publish, each stamped with its order's next ``seq``. It is pure: no NATS, no TWS, a clock
passed in, so tests drive it with plain dicts.

Orders are found by ``permId`` (TWS's own identity, unique across clients), then by
``(clientId, orderId)`` (order ids are per client), then by ``execId`` (commission reports carry
nothing else). An order the book does not know yet (another API client's, a manual TWS order) is
added as it is first seen, under the key ``perm-<permId>``; the daemon's own orders are keyed by
their ``clientOrderId``. Repeats carry no news and are not published: TWS sends the same
openOrder and orderStatus several times, and an execution or a commission once per execId is
enough. An execution is published once whatever path it came by (live, or a reconciliation's
reqExecutions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from twsbus.orders.events import FINAL, UNKNOWN, OrderEvent, OrderRecord

log = logging.getLogger("twsbus.orders")

NO_STRATEGY = "_"


class OrderBook:
    def __init__(self, *, client_id: int, epoch: str, clock: Callable[[], int],
                 subject: Callable[[OrderRecord], str],
                 default_account: Callable[[], str] = lambda: "") -> None:
        self.client_id = client_id
        self.epoch = epoch
        self.clock = clock
        self.subject = subject
        self.default_account = default_account
        self.records: dict[str, OrderRecord] = {}
        self._by_perm: dict[int, OrderRecord] = {}
        self._by_id: dict[tuple[int, int], OrderRecord] = {}
        self._by_exec: dict[str, OrderRecord] = {}
        #: The order the last ``apply`` was about (news or not): TWS acknowledged something.
        self.touched: OrderRecord | None = None

    def __repr__(self) -> str:
        live = sum(1 for r in self.records.values() if not r.final)
        return f"<OrderBook orders={len(self.records)} live={live}>"

    # ---- the records ------------------------------------------------------------------------

    def load(self, records: Iterable[OrderRecord]) -> None:
        """The journal's records, after a daemon restart."""
        for record in records:
            self._index(record)

    def add(self, record: OrderRecord) -> None:
        """An order of ours, journalled before it is sent."""
        record.subject = record.subject or self.subject(record)
        self._index(record)

    def remove(self, record: OrderRecord) -> None:
        """An order that never reached TWS and was never published: as if never placed."""
        self.records.pop(record.key, None)
        if record.orderId is not None and record.clientId is not None:
            self._by_id.pop((record.clientId, record.orderId), None)

    def get(self, key: str) -> OrderRecord | None:
        return self.records.get(key)

    def by_order_id(self, order_id: int, client_id: int | None = None) -> OrderRecord | None:
        return self._by_id.get((self.client_id if client_id is None else client_id, order_id))

    def highest_order_id(self) -> int:
        return max((r.orderId or 0 for r in self.records.values()
                    if r.clientId == self.client_id), default=0)

    def live(self) -> list[OrderRecord]:
        return [r for r in self.records.values() if not r.final]

    def _index(self, record: OrderRecord) -> None:
        self.records[record.key] = record
        if record.permId:
            self._by_perm[record.permId] = record
        if record.orderId is not None and record.clientId is not None:
            self._by_id[(record.clientId, record.orderId)] = record
        for exec_id in record.execIds:
            self._by_exec[exec_id] = record

    def _find(self, perm_id: int | None, client_id: int | None, order_id: int | None,
              ) -> OrderRecord | None:
        if perm_id and perm_id in self._by_perm:
            return self._by_perm[perm_id]
        if client_id is not None and order_id is not None:
            record = self._by_id.get((client_id, order_id))
            if record is not None and (not perm_id or not record.permId):
                return record
        return None

    def _find_or_add(self, perm_id: int | None, client_id: int | None, order_id: int | None,
                     account: str) -> OrderRecord | None:
        record = self._find(perm_id, client_id, order_id)
        if record is None:
            if not perm_id:
                return None  # nothing to key it by (TWS always sends a permId with an order)
            record = OrderRecord(key=f"perm-{perm_id}", permId=perm_id, clientId=client_id,
                                 orderId=order_id, account=account or self.default_account(),
                                 created=self.clock())
            record.subject = self.subject(record)
            log.info("order %s of client %s seen for the first time", perm_id, client_id)
        changed = False
        if perm_id and not record.permId:
            record.permId, changed = perm_id, True
        if order_id is not None and record.orderId in (None, 0) and order_id != 0:
            record.orderId, changed = order_id, True
        if client_id is not None and record.clientId is None:
            record.clientId, changed = client_id, True
        if account and not record.account:
            record.account, changed = account, True
        if changed or record.key not in self.records:
            self._index(record)
        self.touched = record
        return record

    # ---- callbacks in, events out -----------------------------------------------------------

    def apply(self, name: str, data: dict[str, Any], reconciled: bool = False,
              ) -> list[tuple[OrderRecord, OrderEvent]]:
        handler = _HANDLERS.get(name)
        if handler is None:
            return []
        self.touched = None
        out: list[tuple[OrderRecord, OrderEvent]] = []
        for record, event in handler(self, data):
            event.reconciled = reconciled
            out.append((record, self._stamp(record, event)))
        return out

    def unknown(self, record: OrderRecord, reason: str) -> list[tuple[OrderRecord, OrderEvent]]:
        """The link dropped after the send, before TWS acknowledged: the outcome is not known."""
        record.status = UNKNOWN
        record.lastStatus = UNKNOWN
        return [(record, self._stamp(record, OrderEvent(type="status", status=UNKNOWN,
                                                        reason=reason)))]

    def settle_missing(self, record: OrderRecord, reason: str,
                       ) -> list[tuple[OrderRecord, OrderEvent]]:
        """Reconciliation found no trace of the order at TWS: it was never placed."""
        record.status = "Inactive"
        record.lastStatus = "Inactive"
        event = OrderEvent(type="status", status="Inactive", reason=reason, reconciled=True,
                           filled=record.filled, remaining=record.remaining)
        return [(record, self._stamp(record, event))]

    def _stamp(self, record: OrderRecord, event: OrderEvent) -> OrderEvent:
        record.seq += 1
        record.updated = now = self.clock()
        event.seq = record.seq
        event.ts = now
        event.epoch = self.epoch
        event.orderId = record.orderId
        event.permId = record.permId
        event.clientOrderId = record.clientOrderId
        event.account = record.account
        event.strategy = record.strategy
        event.reconciled = bool(event.reconciled)
        return event

    def _open_order(self, data: dict[str, Any]) -> list[tuple[OrderRecord, OrderEvent]]:
        order = data.get("order") or {}
        state = data.get("orderState") or {}
        record = self._find_or_add(_int(order.get("permId")), _int(order.get("clientId")),
                                   _int(data.get("orderId", order.get("orderId"))),
                                   str(order.get("account") or ""))
        if record is None:
            return []
        record.contract = _slim(data.get("contract"), CONTRACT_KEPT) or record.contract
        record.order = _slim(order, ORDER_KEPT)
        out: list[tuple[OrderRecord, OrderEvent]] = []
        signature = _signature(state.get("status"), order.get("totalQuantity"),
                               order.get("lmtPrice"), order.get("auxPrice"),
                               order.get("orderType"), order.get("tif"))
        if signature != record.lastOrder:
            record.lastOrder = signature
            out.append((record, OrderEvent(type="order", contract=data.get("contract"),
                                           order=order, orderState=state)))
        status = state.get("status")
        # completedOrder carries the final state and no orderStatus follows it (openOrder's is
        # followed by one, with the fill).
        if status and status != record.status and data.get("_completed"):
            out.extend(self._status(record, {
                "status": status, "filled": order.get("filledQuantity", record.filled),
                "remaining": 0 if status == "Filled" else record.remaining,
                "avgFillPrice": record.avgFillPrice}))
        return out

    def _completed_order(self, data: dict[str, Any]) -> list[tuple[OrderRecord, OrderEvent]]:
        return self._open_order({**data, "_completed": True})

    def _order_status(self, data: dict[str, Any]) -> list[tuple[OrderRecord, OrderEvent]]:
        record = self._find_or_add(_int(data.get("permId")), _int(data.get("clientId")),
                                   _int(data.get("orderId")), "")
        if record is None:
            return []
        return self._status(record, data)

    def _status(self, record: OrderRecord, data: dict[str, Any],
                ) -> list[tuple[OrderRecord, OrderEvent]]:
        status = str(data.get("status") or "")
        if record.final and status not in FINAL:
            return []  # a late echo of an earlier state
        signature = _signature(status, data.get("filled"), data.get("remaining"),
                               data.get("avgFillPrice"))
        if signature == record.lastStatus:
            return []
        record.lastStatus = signature
        record.status = status
        record.filled = float(data.get("filled") or 0.0)
        if data.get("remaining") is not None:
            record.remaining = float(data["remaining"])
        if data.get("avgFillPrice"):
            record.avgFillPrice = float(data["avgFillPrice"])
        if data.get("lastFillPrice"):
            record.lastFillPrice = float(data["lastFillPrice"])
        event = OrderEvent(type="status", status=status, filled=record.filled,
                           remaining=record.remaining, avgFillPrice=data.get("avgFillPrice"),
                           lastFillPrice=data.get("lastFillPrice"),
                           whyHeld=data.get("whyHeld") or None,
                           mktCapPrice=data.get("mktCapPrice"),
                           parentId=data.get("parentId") or None,
                           clientId=_int(data.get("clientId")))
        return [(record, event)]

    def _exec_details(self, data: dict[str, Any]) -> list[tuple[OrderRecord, OrderEvent]]:
        execution = data.get("execution") or {}
        exec_id = str(execution.get("execId") or "")
        if not exec_id or exec_id in self._by_exec:
            return []
        record = self._find_or_add(_int(execution.get("permId")),
                                   _int(execution.get("clientId")),
                                   _int(execution.get("orderId")),
                                   str(execution.get("acctNumber") or ""))
        if record is None:
            return []
        record.execIds.append(exec_id)
        self._by_exec[exec_id] = record
        record.contract = record.contract or _slim(data.get("contract"), CONTRACT_KEPT)
        return [(record, OrderEvent(type="exec", contract=data.get("contract"),
                                    execution=execution))]

    def _commission(self, data: dict[str, Any]) -> list[tuple[OrderRecord, OrderEvent]]:
        report = data.get("commissionReport") or {}
        exec_id = str(report.get("execId") or "")
        record = self._by_exec.get(exec_id)
        if record is None or exec_id in record.commissions:
            return []
        record.commissions.append(exec_id)
        return [(record, OrderEvent(type="commission", commissionReport=report))]

    def _error(self, data: dict[str, Any]) -> list[tuple[OrderRecord, OrderEvent]]:
        record = self._by_id.get((self.client_id, _int(data.get("id")) or -1))
        if record is None:
            return []
        return [(record, OrderEvent(type="error", code=data.get("code"),
                                    message=data.get("message"),
                                    advancedOrderRejectJson=data.get("advancedOrderRejectJson")
                                    or None))]


_HANDLERS: dict[str, Callable[[OrderBook, dict[str, Any]],
                              list[tuple[OrderRecord, OrderEvent]]]] = {
    "openOrder": OrderBook._open_order,
    "completedOrder": OrderBook._completed_order,
    "orderStatus": OrderBook._order_status,
    "execDetails": OrderBook._exec_details,
    "commissionReport": OrderBook._commission,
    "error": OrderBook._error,
}

#: The callbacks the book wants to see, whoever else they are routed to.
CALLBACKS = tuple(_HANDLERS)


#: What a journal record keeps of TWS's contract and order (the events carry them whole).
CONTRACT_KEPT = ("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right",
                 "multiplier", "exchange", "primaryExchange", "currency", "localSymbol",
                 "tradingClass")
ORDER_KEPT = ("action", "totalQuantity", "orderType", "lmtPrice", "auxPrice", "tif", "account",
              "orderRef", "parentId", "ocaGroup", "outsideRth", "trailStopPrice",
              "trailingPercent", "cashQty", "goodTillDate", "goodAfterTime", "permId",
              "clientId", "filledQuantity")


def _slim(value: dict[str, Any] | None, kept: tuple[str, ...]) -> dict[str, Any] | None:
    if not value:
        return None
    return {k: value[k] for k in kept if value.get(k) not in (None, "")}


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _signature(*values: Any) -> str:
    return msgspec.json.encode(values).decode()


def strategy_token(record: OrderRecord) -> str:
    return record.strategy or NO_STRATEGY


def order_token(record: OrderRecord) -> str:
    """The last subject token: the order id, or ``p<permId>`` for an order TWS gave no id
    (a manual order no API client has bound)."""
    if record.orderId:
        return str(record.orderId)
    return f"p{record.permId}" if record.permId else "0"
