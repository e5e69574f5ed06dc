"""The simulator's order book: order ids, live and completed orders, deterministic matching,
executions and commission reports.

Orders are keyed by (clientId, orderId) as in TWS, where order ids belong to the client that
placed them. Matching is deterministic against ``sim.market``: a market order fills at once at
the ask (buy) or bid (sell), a limit order fills at that quote as soon as it is marketable, a
stop becomes a market (or limit) order once the last price crosses its aux price. Orders that
rest are re-checked by one matcher task every ``tick_interval``; it steps an instrument's random
walk itself only when nothing else (a market-data stream) moved it since the last check. Every
state change goes out as openOrder + orderStatus to the placing client and to clientId-0
sessions that asked for auto-binding; fills add execDetails and a commission report.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from twsbus.sim import order_encoding as enc
from twsbus.sim.msgids import ToClient
from twsbus.sim.session import SessionState
from twsbus.sim.wire import UNSET_DOUBLE, UNSET_INTEGER

if TYPE_CHECKING:
    from twsbus.sim.server import Simulator
    from twsbus.sim.session import ClientSession
    from twsbus.sim.universe import Instrument

log = logging.getLogger("twsbus.sim")

SUPPORTED_TYPES = ("MKT", "LMT", "STP", "STP LMT")
#: Statuses of an order that can still fill or be cancelled.
LIVE = frozenset({"PendingSubmit", "ApiPending", "PreSubmitted", "Submitted", "Inactive"})
COMMISSION_PER_FILL = 1.0
FIRST_PERM_ID = 1_000_000_001
EXEC_ID_BASE = 0x6553E9C1


@dataclass(eq=False)
class SimOrder:
    order_id: int
    client_id: int
    perm_id: int
    inst: Instrument
    #: The order's attributes as the client sent them, keyed by ibapi's ``Order`` field names.
    p: dict[str, Any]
    account: str
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


@dataclass
class _Position:
    qty: Decimal = Decimal(0)
    avg_cost: float = 0.0


@dataclass
class ExecFilter:
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
        if self.client_id and o.client_id != self.client_id:
            return False
        if self.account and o.account != self.account:
            return False
        if self.since is not None and fill.time < self.since:
            return False
        if self.last_n_days is not None and fill.time < time.time() - self.last_n_days * 86400:
            return False
        if self.dates and enc.tws_time(200, fill.time)[:8] not in self.dates:
            return False
        if self.symbol and o.inst.symbol.upper() != self.symbol.upper():
            return False
        if self.sec_type and o.inst.sec_type.upper() != self.sec_type.upper():
            return False
        if self.exchange and self.exchange.upper() not in (
                enc.execution_exchange(o.inst), o.p.get("exchange", "").upper()):
            return False
        if self.side and {"BUY": "BOT", "SELL": "SLD"}.get(self.side.upper(),
                                                          self.side.upper()) != fill.side:
            return False
        return True


class OrderBook:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._next_id = 1
        self._next_perm = FIRST_PERM_ID
        self._orders: dict[tuple[int, int], SimOrder] = {}
        self.fills: list[Fill] = []
        self._positions: dict[tuple[str, int], _Position] = {}
        self._auto_bound: set[ClientSession] = set()
        self._seen_steps: dict[int, int] = {}
        self._matcher: asyncio.Task[None] | None = None

    def next_order_id(self) -> int:
        return self._next_id

    # ---- queries ------------------------------------------------------------------------------

    def get(self, client_id: int, order_id: int) -> SimOrder | None:
        return self._orders.get((client_id, order_id))

    def live_orders(self, client_id: int | None = None) -> list[SimOrder]:
        return [o for o in self._orders.values()
                if o.live and (client_id is None or o.client_id == client_id)]

    def completed_orders(self) -> list[SimOrder]:
        done = [o for o in self._orders.values() if not o.live]
        return sorted(done, key=lambda o: o.completed_at or 0.0)

    def executions(self, flt: ExecFilter) -> list[Fill]:
        return [f for f in self.fills if flt.matches(f)]

    def set_auto_bind(self, session: ClientSession, on: bool) -> None:
        if on:
            self._auto_bound.add(session)
        else:
            self._auto_bound.discard(session)

    # ---- placing and modifying ----------------------------------------------------------------

    def place(self, s: ClientSession, order_id: int, inst: Instrument, p: dict[str, Any]) -> None:
        client_id = s.client_id or 0
        self._next_id = max(self._next_id, order_id + 1)
        reason = self._invalid(p)
        if reason:
            s.error(order_id, 201, f"Order rejected - reason:{reason}")
            return
        account = p["account"] or self.sim.config.accounts[0]
        existing = self._orders.get((client_id, order_id))
        if existing is not None:
            self._modify(s, existing, inst, p)
            return
        o = SimOrder(order_id, client_id, self._perm_id(), inst, p, account)
        if p["whatIf"]:
            o.status = "PreSubmitted"
            o.margins = enc.what_if_margins(o, self._fill_reference(o))
            o.commission = COMMISSION_PER_FILL
            s.send(*enc.open_order(s.version, o))
            return
        parent = self._orders.get((client_id, p["parentId"])) if p["parentId"] else None
        if p["parentId"] and parent is None:
            s.error(order_id, 201, "Order rejected - reason:Parent order is not found")
            return
        self._orders[o.key] = o
        if parent is not None:
            o.parent_perm_id = parent.perm_id
        o.status = self._initial_status(o, parent)
        self._publish(o)
        if o.p["transmit"] and parent is not None and parent.status == "Inactive":
            self._transmit_bracket(parent)
        self._try_match(o)

    def _modify(self, s: ClientSession, o: SimOrder, inst: Instrument, p: dict[str, Any]) -> None:
        if inst.con_id != o.inst.con_id:
            s.error(o.order_id, 103, "Duplicate order id")
            return
        if o.status == "Filled":
            s.error(o.order_id, 104, "Can't modify a filled order")
            return
        if not o.live:
            s.error(o.order_id, 103, "Duplicate order id")
            return
        if p["totalQuantity"] < o.filled:
            s.error(o.order_id, 201, "Order rejected - reason:The quantity is below what has "
                                     "already been filled")
            return
        p["parentId"] = o.p["parentId"]
        o.p = p
        o.triggered = False
        if o.status == "Inactive" and p["transmit"]:
            parent = self._orders.get((o.client_id, p["parentId"])) if p["parentId"] else None
            o.status = self._initial_status(o, parent)
        self._publish(o)
        self._try_match(o)

    def _initial_status(self, o: SimOrder, parent: SimOrder | None) -> str:
        if not o.p["transmit"]:
            return "Inactive"  # TWS keeps it with a Transmit button; nothing goes to IB
        if parent is not None and parent.status != "Filled":
            return "PreSubmitted"  # an attached order waits for its parent to fill
        return "Submitted"

    def _transmit_bracket(self, parent: SimOrder) -> None:
        """Transmitting the last child of a bracket transmits the whole bracket."""
        parent.p["transmit"] = True
        parent.status = "Submitted"
        self._publish(parent)
        for child in self._children(parent):
            if child.status == "Inactive":
                child.p["transmit"] = True
                child.status = "PreSubmitted"
                self._publish(child)
        self._try_match(parent)

    def _invalid(self, p: dict[str, Any]) -> str:
        action = str(p["action"]).upper()
        p["action"] = "SELL" if action == "SSHORT" else action
        if p["action"] not in ("BUY", "SELL"):
            return f"Invalid action {action!r}"
        if p["totalQuantity"] <= 0:
            return "Order quantity must be positive"
        order_type = str(p["orderType"]).upper()
        if order_type not in SUPPORTED_TYPES:
            return f"Order type {p['orderType']!r} is not supported by this simulator"
        if order_type in ("LMT", "STP LMT") and p["lmtPrice"] == UNSET_DOUBLE:
            return "Limit price is missing"
        if order_type in ("STP", "STP LMT") and p["auxPrice"] == UNSET_DOUBLE:
            return "Stop price is missing"
        if p["account"] and p["account"] not in self.sim.config.accounts:
            return f"Invalid account code {p['account']}"
        return ""

    def _perm_id(self) -> int:
        perm = self._next_perm
        self._next_perm += 1
        return perm

    # ---- cancelling ---------------------------------------------------------------------------

    def cancel(self, s: ClientSession, order_id: int) -> None:
        o = self._orders.get((s.client_id or 0, order_id))
        if o is None:
            s.error(order_id, 10147,
                    f"OrderId {order_id} that needs to be cancelled is not found.")
        elif o.status == "Filled":
            s.error(order_id, 161, "Cancel attempted when order is not in a cancellable state."
                                   f"  Order permId ={o.perm_id}")
        elif not o.live:
            s.error(order_id, 10148, f"OrderId {order_id} that needs to be cancelled cannot be "
                                     f"cancelled, state: {o.status}.")
        else:
            self._cancel(o)

    def cancel_all(self) -> int:
        live = self.live_orders()
        for o in live:
            if o.live:  # cancelling a parent already took its children along
                self._cancel(o)
        return len(live)

    def _cancel(self, o: SimOrder, reason: str = "") -> None:
        o.status = "Cancelled"
        o.completed_at = time.time()
        o.completed_status = reason or "Cancelled by Trader"
        self._publish(o)
        for s in self._audience(o):
            s.error(o.order_id, 202, f"Order Canceled - reason:{reason}")
        for child in self._children(o):
            if child.live:
                self._cancel(child)

    # ---- matching -----------------------------------------------------------------------------

    def check(self, con_id: int) -> None:
        """Fill whatever resting orders on ``con_id`` the current quote makes marketable."""
        for o in list(self._orders.values()):
            if o.inst.con_id == con_id:
                self._try_match(o)

    def _try_match(self, o: SimOrder) -> None:
        if not o.working:
            return
        price = self._fill_price(o)
        if price is not None:
            self._fill(o, price)
        elif o.working:
            self._ensure_matcher()

    def _fill_price(self, o: SimOrder) -> float | None:
        q = self.sim.market.quote(o.inst.con_id)
        t = o.order_type
        if t in ("STP", "STP LMT") and not o.triggered:
            aux = o.p["auxPrice"]
            if not (q.last >= aux if o.buy else q.last <= aux):
                return None
            o.triggered = True
        touch = q.ask if o.buy else q.bid
        if t in ("MKT", "STP"):
            return touch
        lmt = o.p["lmtPrice"]
        if (o.buy and lmt >= touch) or (not o.buy and lmt <= touch):
            return touch
        return None

    def _fill_reference(self, o: SimOrder) -> float:
        q = self.sim.market.quote(o.inst.con_id)
        return q.ask if o.buy else q.bid

    def _ensure_matcher(self) -> None:
        if self._matcher is None or self._matcher.done():
            self._matcher = self.sim.spawn(self._match_loop())

    async def _match_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sim.config.tick_interval)
            working = sorted({o.inst.con_id for o in self._orders.values() if o.working})
            if not working:
                return
            for con_id in working:
                try:
                    q = self.sim.market.quote(con_id)
                    if self._seen_steps.get(con_id) == q.steps:
                        q = self.sim.market.step(con_id)
                    self._seen_steps[con_id] = q.steps
                    self.check(con_id)
                except Exception:
                    log.exception("order matcher failed on conId %d", con_id)

    # ---- fills --------------------------------------------------------------------------------

    def _fill(self, o: SimOrder, price: float) -> None:
        shares = o.remaining
        now = time.time()
        notional = float(o.filled) * o.avg_price + float(shares) * price
        o.filled += shares
        o.avg_price = round(notional / float(o.filled), 8)  # no float noise on one fill
        o.last_price = price
        o.commission = (o.commission or 0.0) + COMMISSION_PER_FILL
        o.status = "Filled"
        o.completed_at = now
        o.completed_status = "Filled"
        fill = Fill(
            exec_id=f"0000{self.sim.config.seed & 0xFFFF:04x}.{EXEC_ID_BASE + len(self.fills):08x}"
                    ".01.01",
            order=o, time=now, side="BOT" if o.buy else "SLD", shares=shares, price=price,
            cum_qty=o.filled, avg_price=o.avg_price, commission=COMMISSION_PER_FILL,
        )
        fill.realized_pnl = self._realize(o, shares, price, COMMISSION_PER_FILL)
        self.fills.append(fill)
        self._apply_to_accounts(o, shares, price)
        for s in self._audience(o):
            s.send(*enc.exec_details(s.version, -1, fill))
            s.send(*enc.open_order(s.version, o))
            s.send(*enc.order_status(s.version, o))
            s.send(*enc.commission_report(fill))
        self._after_fill(o)

    def _realize(self, o: SimOrder, shares: Decimal, price: float, commission: float) -> float:
        """Realized P&L of the closing part of a fill; opening trades have none (IB sends its
        unset sentinel). As at IB, an opening commission goes into the average cost, so the
        P&L of a round trip is net of both commissions."""
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

    def _apply_to_accounts(self, o: SimOrder, shares: Decimal, price: float) -> None:
        accounts = getattr(self.sim, "accounts", None)
        if accounts is None:
            return
        try:
            accounts.apply_fill(o.account, o.inst, o.p["action"], shares, price,
                                COMMISSION_PER_FILL)
        except Exception:
            log.exception("accounts did not take the fill of order %d", o.order_id)

    def _after_fill(self, o: SimOrder) -> None:
        for child in self._children(o):
            if child.status == "PreSubmitted":
                child.status = "Submitted"
                self._publish(child)
                self._try_match(child)
        group = o.p["ocaGroup"]
        if group:
            for other in list(self._orders.values()):
                if other is not o and other.live and other.p["ocaGroup"] == group \
                        and other.account == o.account:
                    self._cancel(other, "OCA group fill")

    def _children(self, parent: SimOrder) -> list[SimOrder]:
        return [c for c in self._orders.values()
                if c.client_id == parent.client_id and c.p["parentId"] == parent.order_id]

    # ---- delivery -----------------------------------------------------------------------------

    def _audience(self, o: SimOrder) -> list[ClientSession]:
        """The placing client's session(s) and clientId-0 sessions bound with autoOpenOrders."""
        out = [s for s in self.sim.ready_sessions() if s.client_id == o.client_id]
        for s in list(self._auto_bound):
            if s.state is SessionState.CLOSED:
                self._auto_bound.discard(s)
            elif s.state is SessionState.READY and s not in out:
                out.append(s)
        return out

    def _publish(self, o: SimOrder) -> None:
        for s in self._audience(o):
            s.send(*enc.open_order(s.version, o))
            s.send(*enc.order_status(s.version, o))

    def send_open_orders(self, s: ClientSession, orders: list[SimOrder]) -> None:
        for o in orders:
            s.send(*enc.open_order(s.version, o))
            s.send(*enc.order_status(s.version, o))
        s.send(ToClient.OPEN_ORDER_END, 1)
