"""Order replies as one line per order, for ``twsbus req`` on a terminal.

``place_order``/``cancel_order`` answer a ``PlaceReply``, ``orders`` the journal's records, and
``open_orders``/``all_open_orders``/``completed_orders`` TWS's order objects; each is read into
``OrderLine`` (the fields a person looks at; the rest is ignored) and printed as
``<clientOrderId>  #<orderId>  <status>  BUY 100 AAPL LMT 189.5  filled 0/100  <account>
<strategy>``. Anything else, or a shape that does not fit, is printed as JSON by the caller.
"""

from __future__ import annotations

from typing import Any

import msgspec

from twsbus.subjects import Pattern, Surface

#: Callbacks whose answers are orders (queries collecting them print concisely).
_ORDER_CALLBACKS = frozenset({"openOrder", "completedOrder"})
#: IB's "unset" double (Double.MAX_VALUE) and anything near it: no price.
_UNSET = 1e300


def order_ops(surface: Surface) -> frozenset[str]:
    """The ops whose answers are orders: the order desk's, the journal's view, and the queries
    that collect TWS's order callbacks."""
    ops = {op for op, spec in surface.queries.items()
           if spec.pattern is Pattern.ORDER or _ORDER_CALLBACKS & set(spec.callbacks)}
    ops.add(surface.subject("orders_request").rsplit(".", 1)[-1])
    return frozenset(ops)


class _Contract(msgspec.Struct):
    conId: int = 0
    symbol: str = ""
    localSymbol: str = ""
    secType: str = ""


class _Order(msgspec.Struct):
    action: str = ""
    totalQuantity: float | None = None
    orderType: str = ""
    lmtPrice: float | None = None
    auxPrice: float | None = None


class _State(msgspec.Struct):
    status: str = ""


class OrderLine(msgspec.Struct):
    clientOrderId: str | None = None
    orderId: int | None = None
    permId: int | None = None
    status: str | None = None
    filled: float | None = None
    remaining: float | None = None
    avgFillPrice: float | None = None
    account: str | None = None
    strategy: str | None = None
    duplicate: bool = False
    reason: str | None = None
    contract: _Contract | None = None
    order: _Order | None = None
    orderState: _State | None = None

    def __str__(self) -> str:
        order = self.order or _Order()
        status = self.status or (self.orderState.status if self.orderState else "") or "?"
        parts = [self.clientOrderId or "-", f"#{self.orderId if self.orderId else '-'}",
                 status]
        what = " ".join(x for x in (order.action, _num(order.totalQuantity), self._symbol(),
                                    order.orderType, _price(order.lmtPrice),
                                    _price(order.auxPrice, "stop ")) if x)
        if what:
            parts.append(what)
        if self.filled is not None:
            total = order.totalQuantity or (
                self.filled + self.remaining if self.remaining is not None else None)
            fill = f"filled {_num(self.filled)}/{_num(total) or '?'}"
            if self.filled and self.avgFillPrice:
                fill += f" @ {_num(self.avgFillPrice)}"
            parts.append(fill)
        parts += [x for x in (self.account, self.strategy) if x]
        if self.duplicate:
            parts.append("(duplicate: nothing placed)")
        if self.reason:
            parts.append(f"({self.reason})")
        return "  ".join(parts)

    def _symbol(self) -> str:
        c = self.contract
        if c is None:
            return ""
        return c.localSymbol or c.symbol or (f"conId {c.conId}" if c.conId else "")


def brief_orders(body: Any) -> list[str] | None:
    """One line per order in ``body`` (an order or a list of them), or None when it is not."""
    rows = body if isinstance(body, list) else [body]
    if not all(isinstance(r, dict) for r in rows):
        return None
    try:
        lines = msgspec.convert(rows, list[OrderLine], strict=False)
    except msgspec.ValidationError:
        return None
    if not lines:
        return ["(no orders)"]
    return [str(line) for line in lines]


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:g}" if value != int(value) else str(int(value))


def _price(value: float | None, label: str = "") -> str:
    if value is None or not value or abs(value) >= _UNSET:
        return ""
    return f"{label}{_num(value)}"
