"""Wire types: the msgspec structs that cross the NATS boundary.

IB's field names are kept where IB defines the object (``conId``, ``secType``...), so IB's own
documentation describes them. Request argument structs for the query endpoints are not written
here: ``subjects.py`` builds them from ``subjects.yaml`` out of the types below.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Contract(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A contract by conId or by description, in IB's vocabulary."""

    conId: int = 0
    symbol: str = ""
    secType: str = ""
    lastTradeDateOrContractMonth: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primaryExchange: str = ""
    currency: str = ""
    localSymbol: str = ""
    tradingClass: str = ""
    includeExpired: bool = False
    secIdType: str = ""
    secId: str = ""
    description: str = ""
    issuerId: str = ""

    def is_empty(self) -> bool:
        return not (self.conId or self.symbol or self.localSymbol or self.secId)


class TagValue(msgspec.Struct, forbid_unknown_fields=True):
    tag: str
    value: str


class ExecFilter(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """IB's ExecutionFilter."""

    clientId: int = 0
    acctCode: str = ""
    time: str = ""
    symbol: str = ""
    secType: str = ""
    exchange: str = ""
    side: str = ""


class ScannerSubscription(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """IB's ScannerSubscription; a field left None stays at ibapi's "unset"."""

    instrument: str = ""
    locationCode: str = ""
    scanCode: str = ""
    numberOfRows: int | None = None
    abovePrice: float | None = None
    belowPrice: float | None = None
    aboveVolume: int | None = None
    marketCapAbove: float | None = None
    marketCapBelow: float | None = None
    stockTypeFilter: str = ""


class OrderCancel(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    manualOrderCancelTime: str = ""
    extOperator: str = ""
    manualOrderIndicator: int | None = None


class LeasesRequest(msgspec.Struct, forbid_unknown_fields=True):
    leases: list[str]


class LeasesReply(msgspec.Struct, omit_defaults=True):
    renewed: list[str] | None = None
    released: list[str] | None = None
    unknown: list[str] = msgspec.field(default_factory=list)


class SnapshotRequest(msgspec.Struct, forbid_unknown_fields=True):
    subject: str


class OkReply(msgspec.Struct):
    ok: bool = True


class TwsLink(msgspec.Struct, omit_defaults=True):
    """The TWS link as status shows it (its state is ``tws.session.TwsState``'s value)."""

    state: str
    serverVersion: int | None = None
    #: ``text`` (server version up to 200) or ``protobuf`` (from 201: binary message ids,
    #: protobuf bodies message by message); absent before a version is negotiated.
    wire: str | None = None
    accounts: list[str] = msgspec.field(default_factory=list)
    since: int = 0  # ns since the epoch of the last state change
    host: str = ""
    port: int = 0
    clientId: int = 0
    lastError: str | None = None
    reconnects: int = 0
    #: Seconds until the next connect attempt, while reconnecting.
    nextRetryIn: float | None = None
    probes: int = 0


class Budget(msgspec.Struct):
    used: int
    max: int


class Pacing(msgspec.Struct):
    queued: int
    rate: float
    peak: int = 0
    sent: int = 0
    #: Requests taken back unsent because their caller had given up.
    withdrawn: int = 0


class SubscriptionInfo(msgspec.Struct, omit_defaults=True):
    kind: str
    subject: str
    leases: int
    state: str
    conId: int | None = None
    #: With no lease left: seconds until its TWS request is cancelled (a new lease keeps it).
    lingering: float | None = None


class Status(msgspec.Struct):
    epoch: str
    tws: TwsLink
    lines: Budget
    depth: Budget
    pacing: Pacing
    #: Tick-by-tick and scanner subscriptions open at once (TWS allows few of each).
    tbt: Budget = msgspec.field(default_factory=lambda: Budget(used=0, max=0))
    scanner: Budget = msgspec.field(default_factory=lambda: Budget(used=0, max=0))
    subscriptions: list[SubscriptionInfo] = msgspec.field(default_factory=list)
    dropped: dict[str, int] = msgspec.field(default_factory=dict)
    queries: dict[str, int] = msgspec.field(default_factory=dict)
    nats: dict[str, Any] = msgspec.field(default_factory=dict)
    orders: dict[str, Any] = msgspec.field(default_factory=dict)
    #: IB's historical-data limits as the daemon keeps them (window use, queue, waits).
    historical: dict[str, Any] = msgspec.field(default_factory=dict)


class TwsErrorEvent(msgspec.Struct, omit_defaults=True):
    """Published on ``tws.errors``: warnings and link-level codes that belong to no request."""

    code: int
    message: str
    reqId: int = -1
    ts: int = 0
    epoch: str = ""
