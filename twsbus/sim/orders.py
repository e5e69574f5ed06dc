"""The simulator's order book: order ids, live and completed orders, executions, and who hears
about them.

Orders are kept by permId; API orders are also found by (clientId, orderId), as in TWS, where an
order id belongs to the client that placed it. The order id rules are TWS's (IB message codes
103, 104 and 105, as IB documents them):

* a placeOrder naming a live order of the same client modifies it, unless the contract or the
  side differ: 105 "Order being modified does not match original order";
* naming a filled order is 104 "Can't modify a filled order"; any other finished order
  (cancelled, rejected) is 103 "Duplicate order id";
* a new order must carry an id greater than every id its client has sent before, in any
  session (TWS remembers them per clientId), else 103. A placeOrder TWS refuses still uses up
  its id.

nextValidId is one past the highest id any client has used. With
``SimConfig.rollback_next_valid_id`` every new connection resets it to 1, as gateways that lost
their settings have been seen to do; the ids stay used, so a client that trusts the rolled-back
number gets 103 (or modifies the live order that holds the id).

Orders entered by hand in TWS (``place_manual``) belong to clientId 0 and carry order id 0 until
an API client binds them: clientId 0's reqOpenOrders binds the open ones, reqAutoOpenOrders(true)
binds each new one as it is placed, and binding gives them negative ids (-1, -2, ...), as TWS
does with "use negative numbers to bind automatic orders". reqAllOpenOrders shows them unbound.

Every state change goes out as openOrder + orderStatus to the placing client, to clientId-0
sessions bound with reqAutoOpenOrders, and (manual orders, once bound) to clientId 0; fills add
execDetails and a commission report. Resting orders keep working while their client is away; it
catches up on reconnecting with reqOpenOrders, reqCompletedOrders and reqExecutions.

``Stats.orders`` counts: placed (new API orders taken), manual, modified (modifications taken),
cancelled (orders that ended cancelled, whoever cancelled them), rejected (placeOrders refused
with any error but 103, and rejections from TWS's side), duplicate_id_errors (103s) and
executions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from twsbus.sim import order_encoding as enc
from twsbus.sim.matching import Matcher
from twsbus.sim.msgids import ToClient
from twsbus.sim.order_model import COMMISSION_PER_FILL, ExecFilter, Fill, Ledger, SimOrder
from twsbus.sim.order_rules import Refusal, refusal
from twsbus.sim.session import SessionState
from twsbus.sim.wire import UNSET_DOUBLE

if TYPE_CHECKING:
    from twsbus.sim.accounts import Accounts
    from twsbus.sim.config import SimConfig, Stats
    from twsbus.sim.market import Market
    from twsbus.sim.session import ClientSession
    from twsbus.sim.universe import Instrument

__all__ = ["COMMISSION_PER_FILL", "ExecFilter", "Fill", "OrderBook", "SimOrder", "UnknownOrder"]

log = logging.getLogger("twsbus.sim")

FIRST_PERM_ID = 1_000_000_001
EXEC_ID_BASE = 0x6553E9C1
DUPLICATE_ORDER_ID = Refusal(103, "Duplicate order id")
FILLED_ORDER = Refusal(104, "Can't modify a filled order")
MODIFY_MISMATCH = Refusal(105, "Order being modified does not match original order")
#: How many refused placeOrders ``history()`` remembers.
REFUSED_KEPT = 1000


class UnknownOrder(LookupError):
    """A control request named an order the book never had."""


class OrderBook:
    """The book over ``market``; ``sessions`` gives the sessions ready to hear about orders,
    ``spawn`` runs the matcher's task, fills go to ``accounts`` and are counted in ``stats``."""

    def __init__(self, config: SimConfig, market: Market, stats: Stats,
                 sessions: Callable[[], list[ClientSession]],
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[Any]],
                 accounts: Accounts | None = None) -> None:
        self.config, self.stats, self.sessions, self.accounts = config, stats, sessions, accounts
        self.matcher = Matcher(self, market, config, spawn)
        self.ledger = Ledger()
        self.fills: list[Fill] = []
        self._next_id = 1
        self._next_perm = FIRST_PERM_ID
        self._next_bound = -1
        self._orders: dict[int, SimOrder] = {}  # by permId, oldest first
        self._by_id: dict[tuple[int, int], SimOrder] = {}  # (clientId, orderId), bound only
        self._max_id: dict[int, int] = {}  # clientId -> the highest order id it has sent
        self._auto_bound: set[ClientSession] = set()
        self._refused: deque[dict[str, Any]] = deque(maxlen=REFUSED_KEPT)

    def __repr__(self) -> str:
        return (f"<OrderBook orders={len(self._orders)} live={len(self.live_orders())} "
                f"fills={len(self.fills)} nextValidId={self._next_id}>")

    # ---- order ids ----------------------------------------------------------------------------

    def next_order_id(self) -> int:
        return self._next_id

    def on_connect(self) -> None:
        """A client connected: a gateway that forgot its ids starts counting at 1 again."""
        if self.config.rollback_next_valid_id:
            self._next_id = 1

    def _use_id(self, client_id: int, order_id: int) -> bool:
        """Record that ``client_id`` sent ``order_id``; True if no lower-or-equal id came before."""
        fresh = order_id > self._max_id.get(client_id, 0)
        self._next_id = max(self._next_id, order_id + 1)
        self._max_id[client_id] = max(self._max_id.get(client_id, 0), order_id)
        return fresh

    def _perm_id(self) -> int:
        perm = self._next_perm
        self._next_perm += 1
        return perm

    def _add(self, o: SimOrder) -> None:
        self._orders[o.perm_id] = o
        if o.order_id:
            self._by_id[o.key] = o

    def _bind(self, o: SimOrder) -> None:
        """Give a manual order an API order id (negative, as TWS binds them)."""
        o.order_id, self._next_bound = self._next_bound, self._next_bound - 1
        self._by_id[o.key] = o

    # ---- queries ------------------------------------------------------------------------------

    def get(self, client_id: int, order_id: int) -> SimOrder | None:
        return self._by_id.get((client_id, order_id))

    def by_perm(self, perm_id: int) -> SimOrder | None:
        return self._orders.get(perm_id)

    def find(self, args: dict[str, Any]) -> SimOrder:
        """The order a control request names: ``{"permId": N}`` or ``{"orderId", "clientId"}``."""
        if "permId" in args:
            o = self.by_perm(int(args["permId"]))
        else:
            o = self.get(int(args.get("clientId", 0)), int(args["orderId"]))
        if o is None:
            raise UnknownOrder(f"no order {args}")
        return o

    def live_orders(self, client_id: int | None = None) -> list[SimOrder]:
        return [o for o in self._orders.values()
                if o.live and (client_id is None or o.client_id == client_id)]

    def working_orders(self, con_id: int | None = None) -> list[SimOrder]:
        return [o for o in self._orders.values()
                if o.working and (con_id is None or o.inst.con_id == con_id)]

    def completed_orders(self, api_only: bool = False) -> list[SimOrder]:
        done = [o for o in self._orders.values()
                if not o.live and not (api_only and o.manual)]
        return sorted(done, key=lambda o: o.completed_at or 0.0)

    def executions(self, flt: ExecFilter) -> list[Fill]:
        return [f for f in self.fills if flt.matches(f)]

    def history(self) -> dict[str, Any]:
        """Every order the book took, oldest first, and the placeOrders it refused."""
        return {"orders": [o.row() for o in self._orders.values()],
                "refused": list(self._refused)}

    def set_auto_bind(self, session: ClientSession, on: bool) -> None:
        if on:
            self._auto_bound.add(session)
        else:
            self._auto_bound.discard(session)

    # ---- placing and modifying ----------------------------------------------------------------

    def place(self, s: ClientSession, order_id: int, inst: Instrument, p: dict[str, Any]) -> None:
        client_id = s.client_id or 0
        existing = self._by_id.get((client_id, order_id))
        fresh = self._use_id(client_id, order_id)
        if existing is not None:
            existing.places += 1
        verdict = refusal(p, self.config.accounts)
        if verdict is not None:
            self._refuse(s, order_id, verdict)
        elif p["whatIf"]:
            self._preview(s, order_id, inst, p)
        elif existing is not None:
            self._modify(s, existing, inst, p)
        elif not fresh:
            self._refuse(s, order_id, DUPLICATE_ORDER_ID)
        else:
            self._place_new(s, order_id, inst, p)

    def _place_new(self, s: ClientSession, order_id: int, inst: Instrument,
                   p: dict[str, Any]) -> None:
        client_id = s.client_id or 0
        parent = self._by_id.get((client_id, p["parentId"])) if p["parentId"] else None
        if p["parentId"] and parent is None:
            self._refuse(s, order_id, Refusal(201, "Order rejected - reason:Parent order is "
                                                   "not found"))
            return
        o = SimOrder(order_id, client_id, self._perm_id(), inst, p,
                     p["account"] or self.config.accounts[0])
        self._add(o)
        self.stats.orders["placed"] += 1
        if parent is not None:
            o.parent_perm_id = parent.perm_id
        o.status = self._initial_status(o, parent)
        self._publish(o)
        if o.p["transmit"] and parent is not None and parent.status == "Inactive":
            self._transmit_bracket(parent)
        self.matcher.try_match(o)

    def _preview(self, s: ClientSession, order_id: int, inst: Instrument,
                 p: dict[str, Any]) -> None:
        """whatIf: the margin impact, as an openOrder; nothing is placed."""
        o = SimOrder(order_id, s.client_id or 0, self._perm_id(), inst, p,
                     p["account"] or self.config.accounts[0], status="PreSubmitted")
        o.margins = enc.what_if_margins(o, self.matcher.reference_price(o))
        o.commission = COMMISSION_PER_FILL
        s.send_row(enc.open_order(s.version, o))

    def _modify(self, s: ClientSession, o: SimOrder, inst: Instrument, p: dict[str, Any]) -> None:
        if o.status == "Filled":
            self._refuse(s, o.order_id, FILLED_ORDER)
        elif not o.live:
            self._refuse(s, o.order_id, DUPLICATE_ORDER_ID)
        elif inst.con_id != o.inst.con_id or p["action"] != o.p["action"]:
            self._refuse(s, o.order_id, MODIFY_MISMATCH)
        elif p["totalQuantity"] < o.filled:
            self._refuse(s, o.order_id, Refusal(201, "Order rejected - reason:The quantity is "
                                                     "below what has already been filled"))
        else:
            p["parentId"] = o.p["parentId"]
            o.p = p
            o.triggered = False
            self.stats.orders["modified"] += 1
            if o.status == "Inactive" and p["transmit"]:
                parent = self._by_id.get((o.client_id, p["parentId"])) if p["parentId"] else None
                o.status = self._initial_status(o, parent)
            self._publish(o)
            self.matcher.try_match(o)

    def _refuse(self, s: ClientSession, order_id: int, verdict: Refusal) -> None:
        self.refuse(s, order_id, verdict.code, verdict.message)

    def refuse(self, s: ClientSession, order_id: int, code: int, message: str) -> None:
        """Answer a placeOrder with an error (its id is used up all the same); the book
        remembers it for ``history()``."""
        self._use_id(s.client_id or 0, order_id)
        s.error(order_id, code, message)
        self.stats.orders["duplicate_id_errors" if code == 103 else "rejected"] += 1
        self._refused.append({"clientId": s.client_id, "orderId": order_id, "code": code,
                              "message": message, "time": time.time()})

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
        self.matcher.try_match(parent)

    def place_manual(self, inst: Instrument, p: dict[str, Any]) -> SimOrder:
        """An order entered by hand in TWS: clientId 0, order id 0 until an API client binds it.
        Raises ValueError with TWS's message when TWS would refuse it."""
        verdict = refusal(p, self.config.accounts)
        if verdict is not None:
            raise ValueError(verdict.message)
        o = SimOrder(0, 0, self._perm_id(), inst, p, p["account"] or self.config.accounts[0],
                     manual=True, status="Submitted")
        self._add(o)
        self.stats.orders["manual"] += 1
        if self._binders():
            self._bind(o)
        self._publish(o)
        self.matcher.try_match(o)
        return o

    # ---- cancelling and rejecting -------------------------------------------------------------

    def cancel(self, s: ClientSession, order_id: int) -> None:
        o = self._by_id.get((s.client_id or 0, order_id))
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

    def cancel_in_tws(self, o: SimOrder) -> None:
        """Cancelled from TWS's own window (or by IB): the API hears status Cancelled and 202."""
        self._require_live(o)
        self._cancel(o)

    def reject(self, o: SimOrder, reason: str) -> None:
        """Rejected by IB or the exchange after it was accepted: error 201, then status
        Cancelled, which IB documents for exactly this ("IB or the destination has rejected
        your order")."""
        self._require_live(o)
        for s in self._audience(o):
            s.error(o.order_id, 201, f"Order rejected - reason:{reason}")
        self.stats.orders["rejected"] += 1
        self._finish(o, "Cancelled", f"Rejected - {reason}")
        for child in self._children(o):
            if child.live:
                self._cancel(child, "Parent order rejected")

    def _cancel(self, o: SimOrder, reason: str = "") -> None:
        self.stats.orders["cancelled"] += 1
        self._finish(o, "Cancelled", reason or "Cancelled by Trader")
        for s in self._audience(o):
            s.error(o.order_id, 202, f"Order Canceled - reason:{reason}")
        for child in self._children(o):
            if child.live:
                self._cancel(child)

    def _finish(self, o: SimOrder, status: str, completed_status: str) -> None:
        o.status = status
        o.completed_at = time.time()
        o.completed_status = completed_status
        self._publish(o)

    @staticmethod
    def _require_live(o: SimOrder) -> None:
        if not o.live:
            raise ValueError(f"order permId {o.perm_id} is {o.status}")

    # ---- executions ---------------------------------------------------------------------------

    def force_fill(self, o: SimOrder, price: float | None = None,
                   quantity: Decimal | None = None) -> Fill:
        """Fill ``quantity`` (default: all that remains) of a live order now, at ``price``
        (default: its limit, else the touch), whatever the quote says."""
        self._require_live(o)
        shares = o.remaining if quantity is None else quantity
        if not 0 < shares <= o.remaining:
            raise ValueError(f"quantity {shares} is not in (0, {o.remaining}]")
        if price is None:
            lmt = o.p["lmtPrice"]
            price = lmt if lmt != UNSET_DOUBLE else self.matcher.reference_price(o)
        return self.execute(o, price, shares)

    def execute(self, o: SimOrder, price: float, shares: Decimal) -> Fill:
        """Book an execution of ``shares`` at ``price`` and tell everyone who follows ``o``."""
        now = time.time()
        notional = float(o.filled) * o.avg_price + float(shares) * price
        o.filled += shares
        o.avg_price = round(notional / float(o.filled), 8)  # no float noise on one fill
        o.last_price = price
        o.commission = (o.commission or 0.0) + COMMISSION_PER_FILL
        done = o.remaining <= 0
        if done:
            o.status, o.completed_at, o.completed_status = "Filled", now, "Filled"
        fill = Fill(
            exec_id=f"0000{self.config.seed & 0xFFFF:04x}.{EXEC_ID_BASE + len(self.fills):08x}"
                    ".01.01",
            order=o, time=now, side="BOT" if o.buy else "SLD", shares=shares, price=price,
            cum_qty=o.filled, avg_price=o.avg_price, commission=COMMISSION_PER_FILL,
        )
        fill.realized_pnl = self.ledger.realize(o, shares, price, COMMISSION_PER_FILL)
        self.fills.append(fill)
        o.executions.append(fill)
        self.stats.orders["executions"] += 1
        self._apply_to_accounts(o, shares, price)
        for s in self._audience(o):
            s.send(*enc.exec_details(s.version, -1, fill, self.config.time_zone))
            s.send_row(enc.open_order(s.version, o))
            s.send(*enc.order_status(s.version, o))
            s.send(*enc.commission_report(fill))
        self._after_execution(o, done)
        return fill

    def _apply_to_accounts(self, o: SimOrder, shares: Decimal, price: float) -> None:
        accounts = self.accounts
        if accounts is None:
            return
        try:
            accounts.apply_fill(o.account, o.inst, o.p["action"], shares, price,
                                COMMISSION_PER_FILL)
        except Exception:
            log.exception("accounts did not take the fill of order %d", o.order_id)

    def _after_execution(self, o: SimOrder, done: bool) -> None:
        if done:
            for child in self._children(o):
                if child.status == "PreSubmitted":
                    child.status = "Submitted"
                    self._publish(child)
                    self.matcher.try_match(child)
        group = o.p["ocaGroup"]
        if group:  # one fill in an OCA group cancels the rest of the group
            for other in list(self._orders.values()):
                if other is not o and other.live and other.p["ocaGroup"] == group \
                        and other.account == o.account:
                    self._cancel(other, "OCA group fill")

    def _children(self, parent: SimOrder) -> list[SimOrder]:
        if not parent.order_id:
            return []
        return [c for c in self._orders.values()
                if c.client_id == parent.client_id and c.p["parentId"] == parent.order_id]

    # ---- delivery -----------------------------------------------------------------------------

    def _binders(self) -> list[ClientSession]:
        """clientId-0 sessions that asked for reqAutoOpenOrders(true) and are still here."""
        for s in list(self._auto_bound):
            if s.state is SessionState.CLOSED:
                self._auto_bound.discard(s)
        return [s for s in self._auto_bound if s.state is SessionState.READY]

    def _audience(self, o: SimOrder) -> list[ClientSession]:
        """The owning client's session (for a manual order: clientId 0, once bound) and the
        clientId-0 sessions bound with reqAutoOpenOrders."""
        owner_hears = not o.manual or o.order_id != 0
        out = [s for s in self.sessions()
               if owner_hears and s.client_id == o.client_id]
        out += [s for s in self._binders() if s not in out]
        return out

    def _publish(self, o: SimOrder) -> None:
        for s in self._audience(o):
            s.send_row(enc.open_order(s.version, o))
            s.send(*enc.order_status(s.version, o))

    def open_orders_of(self, s: ClientSession) -> list[SimOrder]:
        """reqOpenOrders: this client's live orders; from clientId 0 it first binds the open
        manual orders nobody bound yet."""
        client_id = s.client_id or 0
        if client_id == 0:
            for o in self.live_orders():
                if o.manual and not o.order_id:
                    self._bind(o)
        return self.live_orders(client_id)

    def send_open_orders(self, s: ClientSession, orders: list[SimOrder]) -> None:
        for o in orders:
            s.send_row(enc.open_order(s.version, o))
            s.send(*enc.order_status(s.version, o))
        s.send(ToClient.OPEN_ORDER_END, 1)
