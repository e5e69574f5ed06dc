"""What the simulator holds about one order and one execution: ``SimOrder``, ``Fill``, the
execution filter of reqExecutions, and the realized-P&L ledger behind commission reports.

These are plain records; the rules that change them live in ``orders.py`` (the book) and
``matching.py`` (when and how much fills). ``row()`` renders each as the JSON the control
endpoint's ``GET /orders`` serves, so tests can compare what TWS did with what a client saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from twsbus.sim import order_encoding as enc
from twsbus.sim.values import tws_time
from twsbus.sim.wire import UNSET_DOUBLE, UNSET_INTEGER

if TYPE_CHECKING:
    from twsbus.sim.universe import Instrument

#: Statuses of an order that can still fill or be cancelled.
LIVE = frozenset({"PendingSubmit", "ApiPending", "PreSubmitted", "Submitted", "Inactive"})
COMMISSION_PER_FILL = 1.0


def number(value: Decimal | float) -> int | float:
    """A quantity or price for JSON: whole numbers stay whole."""
    as_float = float(value)
    return int(as_float) if as_float.is_integer() else as_float


def price_or_none(value: float) -> float | None:
    return None if value == UNSET_DOUBLE else value


@dataclass(eq=False)
class SimOrder:
    order_id: int
    client_id: int
    perm_id: int
    inst: Instrument
    #: The order's attributes as the client sent them, keyed by ibapi's ``Order`` field names.
    p: dict[str, Any]
    account: str
    #: Entered by hand in TWS (``POST /orders/manual``), not by an API client.
    manual: bool = False
    status: str = "PendingSubmit"
    filled: Decimal = Decimal(0)
    avg_price: float = 0.0
    last_price: float = 0.0
    why_held: str = ""
    triggered: bool = False
    commission: float | None = None
    margins: dict[str, Any] | None = None
    parent_perm_id: int = UNSET_INTEGER
    completed_at: float | None = None
    completed_status: str = ""
    #: placeOrder messages that named this order: the one that placed it, then modifications.
    places: int = 1
    executions: list[Fill] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"<SimOrder permId={self.perm_id} clientId={self.client_id} "
                f"orderId={self.order_id} {self.p['action']} {self.p['totalQuantity']} "
                f"{self.inst.symbol} {self.order_type} {self.status}>")

    @property
    def key(self) -> tuple[int, int]:
        return (self.client_id, self.order_id)

    @property
    def buy(self) -> bool:
        return self.p["action"] == "BUY"

    @property
    def order_type(self) -> str:
        return str(self.p["orderType"]).upper()

    @property
    def remaining(self) -> Decimal:
        """What was left unfilled; a cancelled order keeps reporting it, as TWS does."""
        return self.p["totalQuantity"] - self.filled

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def working(self) -> bool:
        """Transmitted, not held behind a parent, not done: the matcher looks at it."""
        return self.status == "Submitted"

    def row(self) -> dict[str, Any]:
        p, i = self.p, self.inst
        return {
            "permId": self.perm_id, "clientId": self.client_id, "orderId": self.order_id,
            "manual": self.manual, "account": self.account, "conId": i.con_id,
            "symbol": i.symbol, "secType": i.sec_type, "action": p["action"],
            "totalQuantity": number(p["totalQuantity"]), "orderType": p["orderType"],
            "lmtPrice": price_or_none(p["lmtPrice"]), "auxPrice": price_or_none(p["auxPrice"]),
            "tif": p["tif"], "orderRef": p["orderRef"], "parentId": p["parentId"],
            "status": self.status, "completedStatus": self.completed_status,
            "filled": number(self.filled), "remaining": number(self.remaining),
            "avgFillPrice": self.avg_price, "places": self.places,
            "executions": [f.row() for f in self.executions],
        }


@dataclass(eq=False)
class Fill:
    exec_id: str
    order: SimOrder
    time: float
    side: str  # BOT / SLD
    shares: Decimal
    price: float
    cum_qty: Decimal
    avg_price: float
    commission: float
    realized_pnl: float = UNSET_DOUBLE

    def __repr__(self) -> str:
        return f"<Fill {self.exec_id} {self.side} {self.shares}@{self.price}>"

    def row(self) -> dict[str, Any]:
        return {"execId": self.exec_id, "shares": number(self.shares), "price": self.price,
                "time": self.time, "cumQty": number(self.cum_qty), "avgPrice": self.avg_price,
                "commission": self.commission}


@dataclass
class ExecFilter:
    """reqExecutions' ExecutionFilter: an empty (or zero) criterion matches everything."""

    client_id: int = 0
    account: str = ""
    since: float | None = None
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""
    #: From server version 200: fills of the last N days, or of these YYYYMMDD dates.
    last_n_days: int | None = None
    dates: set[str] = field(default_factory=set)

    def matches(self, fill: Fill) -> bool:
        o = fill.order
        checks = (
            not self.client_id or o.client_id == self.client_id,
            not self.account or o.account == self.account,
            self.since is None or fill.time >= self.since,
            self.last_n_days is None or fill.time >= time.time() - self.last_n_days * 86400,
            not self.dates or tws_time(200, fill.time)[:8] in self.dates,
            not self.symbol or o.inst.symbol.upper() == self.symbol.upper(),
            not self.sec_type or o.inst.sec_type.upper() == self.sec_type.upper(),
            not self.exchange or self.exchange.upper() in (
                enc.execution_exchange(o.inst), o.p.get("exchange", "").upper()),
            not self.side or fill.side == {"BUY": "BOT", "SELL": "SLD"}.get(
                self.side.upper(), self.side.upper()),
        )
        return all(checks)


@dataclass
class _Position:
    qty: Decimal = Decimal(0)
    avg_cost: float = 0.0


class Ledger:
    """Positions per (account, conId) as the commission reports see them: realized P&L of the
    closing part of each fill."""

    def __init__(self) -> None:
        self._positions: dict[tuple[str, int], _Position] = {}

    def realize(self, o: SimOrder, shares: Decimal, price: float, commission: float) -> float:
        """Realized P&L of a fill; opening trades have none (IB sends its unset sentinel). As at
        IB, an opening commission goes into the average cost, so the P&L of a round trip is net
        of both commissions."""
        pos = self._positions.setdefault((o.account, o.inst.con_id), _Position())
        mult = float(o.inst.multiplier or 1)
        signed = shares if o.buy else -shares
        realized = UNSET_DOUBLE
        if pos.qty and (pos.qty > 0) != (signed > 0):
            closed = min(abs(signed), abs(pos.qty))
            direction = 1.0 if pos.qty > 0 else -1.0
            realized = (price * mult - pos.avg_cost) * float(closed) * direction - commission
            commission = 0.0
            pos.qty += closed if signed > 0 else -closed
            signed -= closed if signed > 0 else -closed
        if signed:
            total = pos.qty + signed
            pos.avg_cost = (float(pos.qty) * pos.avg_cost + float(signed) * price * mult
                            + commission) / float(total)
            pos.qty = total
        elif not pos.qty:
            pos.avg_cost = 0.0
        return realized
