"""Order messages on the wire: the events on ``tws.orders.<account>.<strategy>.<orderId>``, the
journal record kept per order, and the replies of the order endpoints.

Every event names its order three ways (``clientOrderId``, ``orderId``, ``permId``: whichever are
known), carries a per-order ``seq`` (+1 per event, from 1), the daemon's receive time ``ts`` (ns)
and its ``epoch``, and ``reconciled: true`` when the daemon learnt of it by asking TWS after an
outage rather than as it happened. The rest are IB's own fields, flat, by ``type``:

- ``order`` (openOrder / completedOrder): ``contract``, ``order``, ``orderState``
- ``status`` (orderStatus): ``status``, ``filled``, ``remaining``, ``avgFillPrice``,
  ``lastFillPrice``, ``whyHeld``, ``mktCapPrice``, ``parentId``, ``clientId``; and, for the status
  ``Unknown`` the daemon itself reports, a ``reason``
- ``exec`` (execDetails): ``contract``, ``execution``
- ``commission`` (commissionReport): ``commissionReport``
- ``error`` (an error TWS sent about the order): ``code``, ``message``, ``advancedOrderRejectJson``
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

EventType = Literal["order", "status", "exec", "commission", "error"]

#: Statuses after which nothing more happens to an order.
FINAL = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
#: The daemon's own status for an order sent just before the TWS link dropped: TWS may or may not
#: have it; reconciliation after the reconnect settles it.
UNKNOWN = "Unknown"


class OrderEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: EventType
    orderId: int | None = None
    permId: int | None = None
    clientOrderId: str | None = None
    account: str = ""
    strategy: str | None = None
    seq: int = 0
    ts: int = 0
    epoch: str = ""
    #: Always present on the wire (True/False); None only before the book stamps the event.
    reconciled: bool | None = None
    # order
    contract: dict[str, Any] | None = None
    order: dict[str, Any] | None = None
    orderState: dict[str, Any] | None = None
    # status
    status: str | None = None
    filled: float | None = None
    remaining: float | None = None
    avgFillPrice: float | None = None
    lastFillPrice: float | None = None
    whyHeld: str | None = None
    mktCapPrice: float | None = None
    parentId: int | None = None
    clientId: int | None = None
    reason: str | None = None
    # exec / commission
    execution: dict[str, Any] | None = None
    commissionReport: dict[str, Any] | None = None
    # error
    code: int | None = None
    message: str | None = None
    advancedOrderRejectJson: str | None = None


class OrderRecord(msgspec.Struct, kw_only=True):
    """What the journal keeps per order (one KV entry under ``key``), and what the order
    endpoints answer."""

    key: str
    clientOrderId: str | None = None
    orderId: int | None = None
    clientId: int | None = None
    permId: int | None = None
    account: str = ""
    strategy: str | None = None
    #: Placed through this daemon (False: another API client's, or a manual TWS order).
    ours: bool = False
    status: str = "PendingSubmit"
    filled: float = 0.0
    remaining: float | None = None
    avgFillPrice: float | None = None
    lastFillPrice: float | None = None
    contract: dict[str, Any] | None = None
    order: dict[str, Any] | None = None
    #: The place request as received (ours only), so a duplicate can be told from a clash.
    request: dict[str, Any] | None = None
    created: int = 0
    updated: int = 0
    seq: int = 0
    execIds: list[str] = msgspec.field(default_factory=list)
    commissions: list[str] = msgspec.field(default_factory=list)
    #: What was last published, so a repeat of the same openOrder / orderStatus is not.
    lastOrder: str = ""
    lastStatus: str = ""
    subject: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL


class PlaceReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The answer of ``place_order`` / ``cancel_order``: where the order stands now."""

    clientOrderId: str | None
    orderId: int | None
    permId: int | None = None
    status: str
    filled: float = 0.0
    remaining: float | None = None
    avgFillPrice: float | None = None
    account: str = ""
    strategy: str | None = None
    subject: str = ""
    duplicate: bool = False
    reason: str | None = None
    warnings: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, record: OrderRecord, **extra: Any) -> PlaceReply:
        return cls(clientOrderId=record.clientOrderId, orderId=record.orderId,
                   permId=record.permId, status=record.status, filled=record.filled,
                   remaining=record.remaining, avgFillPrice=record.avgFillPrice,
                   account=record.account, strategy=record.strategy, subject=record.subject,
                   **extra)


class OrdersRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body of ``tws.req.orders``: the journal's view of orders, no TWS round trip; with
    ``events``, the order stream's events instead (``OrderEventsReply``)."""

    account: str | None = None
    strategy: str | None = None
    #: Orders in a final state too (as far as the journal keeps them).
    all: bool = False
    #: At most this many: records, the most recently updated first (a reply must fit NATS
    #: max_payload: a record is about 1 KB), or events, in stream order.
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    timeout: float | None = None
    #: The order stream's events (of ``account``, ``strategy``, ``orderId``: the tokens of
    #: ``tws.orders.<account>.<strategy>.<orderId>``), from ``since``: a stream sequence, an
    #: ISO 8601 time, ``"new"`` (nothing yet: the reply's ``last_seq`` is where live starts) or
    #: none (all the stream keeps).
    events: bool = False
    orderId: str | Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    since: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | str | None = None


class StoredEvent(msgspec.Struct, frozen=True):
    """One event of the order stream: its stream sequence, its public subject, the event."""

    seq: int
    subject: str
    event: msgspec.Raw


class OrderEventsReply(msgspec.Struct, frozen=True):
    """The answer of ``tws.req.orders`` with ``events``: the matching events in stream order;
    every matching event up to ``last_seq`` (the stream's last sequence when the read began) is
    here or, with ``more``, on a later page (ask again from the last one's ``seq`` + 1)."""

    events: list[StoredEvent]
    last_seq: int
    more: bool
