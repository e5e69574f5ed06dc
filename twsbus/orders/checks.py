"""The checks an order passes before it leaves: IB's required fields, then the configured guard.

``check_order`` raises ``BadRequest`` (400) for an order TWS could not take as meant: no side, no
or a non-positive size, an unknown order type, a missing price for the order type (IB's order
samples and the TWS users' guide: LMT needs ``lmtPrice``, STP needs ``auxPrice``, STP LMT both,
TRAIL a trailing amount, TRAIL LIMIT also a stop price and a limit or limit offset...). Then the
``Guard`` (per-order limits from the configuration) refuses with ``Forbidden`` (403), naming the
limit and the value. Every limit defaults to "no limit".

Notional value = price x quantity x multiplier in the contract's currency (no FX conversion), or
``cashQty`` for a cash-quantity order. The price is the largest of the order's own prices
(``lmtPrice``, ``trailStopPrice``, ``startingPrice``, ``auxPrice`` where it is a trigger price) and
the caller's ``price_hint`` (a current market price), so a limit far from the market cannot slip
past the limit and a sell's proceeds are not understated. When ``max_notional`` is set and no price
is known (a MKT order and no hint), or the multiplier is unknown (a derivative or a contract given
by conId only, and no ``multiplier``), the order is refused: the guard never guesses in the
direction of letting an order through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from twsbus.errors import BadRequest, Forbidden
from twsbus.messages import Contract
from twsbus.orders.model import Order, as_order

#: IB's order types (IB's own OrderType enum, plus MIDPRICE, PEG BEST and the SNAP types).
ORDER_TYPES = frozenset({
    "MKT", "LMT", "STP", "STP LMT", "REL", "TRAIL", "BOX TOP", "FIX PEGGED", "LIT", "LMT + MKT",
    "LOC", "MIDPRICE", "MIT", "MKT PRT", "MOC", "MTL", "PASSV REL", "PEG BENCH", "PEG BEST",
    "PEG MID", "PEG MKT", "PEG PRIM", "PEG STK", "REL + LMT", "REL + MKT", "SNAP MID",
    "SNAP MKT", "SNAP PRIM", "STP PRT", "TRAIL LIMIT", "TRAIL LIT", "TRAIL LMT + MKT",
    "TRAIL MIT", "TRAIL REL + MKT", "VOL", "VWAP",
})
#: Order types that need a limit price; a trigger (stop) price in auxPrice; a trailing amount
#: (auxPrice or trailingPercent); a trail stop price and a limit price or limit offset.
NEEDS_LMT_PRICE = frozenset({"LMT", "STP LMT", "LIT", "LOC", "REL + LMT"})
NEEDS_AUX_PRICE = frozenset({"STP", "STP LMT", "MIT", "LIT", "STP PRT"})
NEEDS_TRAIL = frozenset({"TRAIL", "TRAIL LIMIT", "TRAIL MIT", "TRAIL LIT"})
NEEDS_TRAIL_LIMIT = frozenset({"TRAIL LIMIT", "TRAIL LIT"})
#: Where auxPrice is a price (a trigger) rather than an offset or a trailing amount.
AUX_IS_PRICE = NEEDS_AUX_PRICE
#: Security types for which IB takes a cash quantity (forex, crypto, fractional stocks), and ""
#: for a contract given by conId only (TWS decides).
CASH_QTY_SEC_TYPES = frozenset({"", "CASH", "CRYPTO", "STK"})
#: Security types whose price is per unit of quantity (multiplier 1 when none is given).
UNIT_SEC_TYPES = frozenset({"STK", "CASH", "CRYPTO", "CFD", "FUND", "CMDTY"})

Positive = Annotated[float, Meta(gt=0)]


class Guard(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Per-order limits from the configuration; the defaults impose none."""

    #: The largest totalQuantity (shares, contracts, currency units) one order may have.
    max_quantity: Positive | None = None
    #: The largest notional value of one order, in the contract's currency (see the module doc).
    max_notional: Positive | None = None
    #: Order types that may be sent (empty: all of IB's).
    allowed_order_types: tuple[str, ...] = ()
    #: Accounts orders may name; when set, every order must name one of them.
    allowed_accounts: tuple[str, ...] = ()
    #: Security types that may be traded (empty: all); needs the resolved contract's secType.
    allowed_sec_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.allowed_order_types) - ORDER_TYPES)
        if unknown:
            raise ValueError(f"allowed_order_types: {', '.join(unknown)} not IB order type(s)")

    @property
    def limits(self) -> bool:
        return self != _NO_LIMITS

    def check(self, order: Order, contract: Contract, *, price_hint: float | None = None,
              multiplier: float | None = None) -> None:
        """Forbidden (403) when ``order`` on ``contract`` breaks a limit; ``order`` has passed
        ``check_order``'s rules (it has a side, a size and an order type)."""
        if self.allowed_order_types and order.orderType not in self.allowed_order_types:
            raise Forbidden(f"order type {order.orderType} is not allowed (allowed_order_types: "
                            f"{', '.join(self.allowed_order_types)})")
        if self.allowed_accounts and order.account not in self.allowed_accounts:
            named = f"account {order.account}" if order.account else "an order naming no account"
            raise Forbidden(f"{named} is not allowed (allowed_accounts: "
                            f"{', '.join(self.allowed_accounts)})")
        if self.allowed_sec_types and contract.secType not in self.allowed_sec_types:
            named = (f"secType {_short(contract.secType)}" if contract.secType
                     else "a contract of unknown secType")
            raise Forbidden(f"{named} is not allowed (allowed_sec_types: "
                            f"{', '.join(self.allowed_sec_types)})")
        price = order_price(order, price_hint)
        if self.max_quantity is not None:
            self._check_quantity(order, price)
        if self.max_notional is not None:
            value = notional(order, contract, price, multiplier)
            if value > self.max_notional:
                raise Forbidden(f"notional {_num(value)} exceeds max_notional "
                                f"{_num(self.max_notional)}")

    def _check_quantity(self, order: Order, price: float | None) -> None:
        assert self.max_quantity is not None
        quantity = order.totalQuantity
        if quantity is None:  # a cash-quantity order: its size depends on the price
            if not price:
                raise Forbidden(f"max_quantity {_num(self.max_quantity)} is set and the size of "
                                f"this cashQty order is unknown (no price known to convert it)")
            quantity = (order.cashQty or 0.0) / price
        if quantity > self.max_quantity:
            raise Forbidden(f"quantity {_num(quantity)} exceeds max_quantity "
                            f"{_num(self.max_quantity)}")


_NO_LIMITS = Guard()


def check_order(order: Order | Mapping[str, Any], contract: Contract, guard: Guard | None = None,
                *, price_hint: float | None = None, multiplier: float | None = None) -> Order:
    """The validated order, or BadRequest (malformed, 400) / Forbidden (a guard limit, 403).

    ``contract`` should be the resolved contract (its ``secType`` and ``multiplier`` matter to
    the guard); ``price_hint`` is a current market price of it, used to value orders that carry
    no price; ``multiplier`` overrides the contract's."""
    checked = as_order(order)
    if contract.is_empty():
        raise BadRequest("contract: give a conId or a description (symbol, secType...)")
    _check_basics(checked, contract)
    _check_prices(checked)
    if guard is not None and guard.limits:
        guard.check(checked, contract, price_hint=price_hint, multiplier=multiplier)
    return checked


def _check_basics(order: Order, contract: Contract) -> None:
    if order.action is None:
        raise BadRequest("order.action: required (BUY or SELL)")
    if order.orderType is None:
        raise BadRequest("order.orderType: required (MKT, LMT, STP, STP LMT, TRAIL...)")
    if order.orderType not in ORDER_TYPES:
        hint = (f"; did you mean {order.orderType.upper()!r}?"
                if order.orderType.upper() in ORDER_TYPES else "")
        raise BadRequest(f"order.orderType: {order.orderType!r} is not an IB order type (MKT, "
                         f"LMT, STP, STP LMT, TRAIL, TRAIL LIMIT, MIT, LIT, REL, MOC, LOC...)"
                         f"{hint}")
    if order.totalQuantity is None and order.cashQty is None:
        raise BadRequest("order.totalQuantity: required, a number > 0 (or cashQty for an order "
                         "sized in cash); an order is never sent without a size")
    if order.totalQuantity is not None and order.cashQty is not None:
        raise BadRequest("order: give totalQuantity or cashQty, not both")
    if order.cashQty is not None and contract.secType not in CASH_QTY_SEC_TYPES:
        raise BadRequest(f"order.cashQty: IB takes a cash quantity for forex, crypto and stocks, "
                         f"not for secType {_short(contract.secType)}; give totalQuantity")
    if order.algoParams and not order.algoStrategy:
        raise BadRequest("order.algoParams: need algoStrategy")
    if order.tif == "GTD" and not order.goodTillDate:
        raise BadRequest("order.goodTillDate: required when tif is GTD")


def _check_prices(order: Order) -> None:
    kind = order.orderType
    if kind in NEEDS_LMT_PRICE and order.lmtPrice is None:
        raise BadRequest(f"order.lmtPrice: required for a {kind} order (the limit price)")
    if kind in NEEDS_AUX_PRICE and order.auxPrice is None:
        raise BadRequest(f"order.auxPrice: required for a {kind} order (the trigger price)")
    if kind in NEEDS_TRAIL and (order.auxPrice is None) == (order.trailingPercent is None):
        raise BadRequest(f"order: a {kind} order needs exactly one of auxPrice (trailing amount) "
                         f"and trailingPercent")
    if kind in NEEDS_TRAIL_LIMIT:
        if order.trailStopPrice is None:
            raise BadRequest(f"order.trailStopPrice: required for a {kind} order (the initial "
                             f"stop price)")
        if (order.lmtPrice is None) == (order.lmtPriceOffset is None):
            raise BadRequest(f"order: a {kind} order needs exactly one of lmtPrice and "
                             f"lmtPriceOffset")
    if kind == "VOL" and (order.volatility is None or order.volatilityType is None):
        raise BadRequest("order: a VOL order needs volatility and volatilityType (1 daily, "
                         "2 annual)")


def order_price(order: Order, price_hint: float | None = None) -> float | None:
    """The price an order is valued at: the largest magnitude of its own prices and the hint."""
    prices = [order.lmtPrice, order.trailStopPrice, order.startingPrice, price_hint]
    if order.orderType in AUX_IS_PRICE:
        prices.append(order.auxPrice)
    known = [abs(p) for p in prices if p is not None]
    return max(known) if known else None


def notional(order: Order, contract: Contract, price: float | None,
             multiplier: float | None = None) -> float:
    """Price x quantity x multiplier, or the cash quantity; Forbidden when it cannot be known."""
    if order.cashQty is not None:
        return order.cashQty
    if price is None:
        raise Forbidden(f"max_notional is set and no price is known to value this "
                        f"{order.orderType} order (give lmtPrice, or a market price must be "
                        f"available)")
    factor = multiplier if multiplier is not None else _multiplier(contract)
    return price * (order.totalQuantity or 0.0) * factor


def _multiplier(contract: Contract) -> float:
    if contract.multiplier:
        try:
            value = float(contract.multiplier)
        except ValueError:
            raise BadRequest("contract.multiplier: must be a number") from None
        if value > 0:
            return value
    if contract.secType in UNIT_SEC_TYPES:
        return 1.0
    named = (f"secType {_short(contract.secType)}" if contract.secType
             else "a contract given by conId")
    raise Forbidden(f"max_notional is set and the multiplier of {named} is unknown (give "
                    f"contract.multiplier)")


def _num(value: float) -> str:
    if abs(value) < 1:
        return f"{value:.6g}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _short(text: str) -> str:
    """A caller's string in a message, bounded (contract fields are not length-checked)."""
    return text if len(text) <= 32 else text[:32] + "..."
