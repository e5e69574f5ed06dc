"""The order on the wire: IB's ``Order`` fields, typed, and the place/cancel request bodies.

An order is a ``msgspec.Struct`` under IB's own field names (``action``, ``totalQuantity``,
``lmtPrice``...), so IB's documentation describes it. Every field is optional and ``None`` means
"not given": the TWS boundary (``tws/objects.py``) then leaves IB's own default in place and never
turns an omission into one of IB's "unset" placeholders on a field that matters. Types are strict
(``"abc"`` for a price is a 400 naming ``lmtPrice``), numbers are finite and bounded (IB's unset
values, 1.8e308 and 2**31-1, are out of range), and strings are printable ASCII (what ibapi can
frame). Fields the installed ibapi lacks are refused at the boundary, not here. Order conditions,
combo leg prices, scale and hedge attributes are out of scope: they are unknown fields (400).

``as_order`` validates a JSON object or an already-built ``Order`` (a struct built in Python is not
checked by msgspec), and ``order_fields`` lists the fields the caller gave. The rules that depend on
the order type and the configured limits live in ``checks.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from twsbus.errors import BadRequest
from twsbus.messages import Contract, OrderCancel

#: Bounds that keep every number finite and well clear of IB's unset values (UNSET_DOUBLE is
#: 1.8e308, UNSET_INTEGER 2**31-1, UNSET_DECIMAL 2**127-1) and of float formats TWS may not parse.
MAX_PRICE = 1e12
MAX_QUANTITY = 1e12
MAX_INT = 2**31 - 2
#: The longest wait a request may ask for (the query endpoints use the same bound).
MAX_TIMEOUT = 300.0

_PRINTABLE = "^[ -~]*$"

Text = Annotated[str, Meta(max_length=128, pattern=_PRINTABLE)]
Code = Annotated[str, Meta(max_length=32, pattern=_PRINTABLE)]
Price = Annotated[float, Meta(ge=-MAX_PRICE, le=MAX_PRICE)]
Amount = Annotated[float, Meta(ge=0, le=MAX_PRICE)]
Quantity = Annotated[float, Meta(gt=0, le=MAX_QUANTITY)]
Percent = Annotated[float, Meta(gt=0, lt=100)]
Int = Annotated[int, Meta(ge=-MAX_INT, le=MAX_INT)]
Count = Annotated[int, Meta(ge=0, le=MAX_INT)]
Account = Annotated[str, Meta(min_length=1, max_length=32, pattern="^[A-Za-z0-9_-]+$")]
#: FIX's ClOrdID, also the key of the order journal (a NATS KV key: dots only between tokens).
ClientOrderId = Annotated[str, Meta(min_length=1, max_length=64,
                                    pattern=r"^[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*$")]
#: A strategy tag is one NATS subject token; ``_`` alone is the token of orders with no strategy.
Strategy = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^(?!_$)[A-Za-z0-9_-]+$")]
Timeout = Annotated[float, Meta(gt=0, le=MAX_TIMEOUT)]

Action = Literal["BUY", "SELL", "SSHORT", "SLONG"]  # SSHORT, SLONG: institutional accounts only
Tif = Literal["DAY", "GTC", "IOC", "GTD", "OPG", "FOK", "DTC", "AUC"]


class TagValue(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One algo or smart-combo-routing parameter (IB's ``TagValue``)."""

    tag: Annotated[str, Meta(min_length=1, max_length=64, pattern=_PRINTABLE)]
    value: Text


TagValues = Annotated[list[TagValue], Meta(max_length=32)]


class Order(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True,
            frozen=True):
    """IB's Order, the fields a strategy uses; ``None`` = not given (IB's default applies)."""

    # main fields
    action: Action | None = None
    totalQuantity: Quantity | None = None
    orderType: Code | None = None
    lmtPrice: Price | None = None
    auxPrice: Price | None = None
    cashQty: Quantity | None = None  # a cash amount instead of totalQuantity (FX, crypto, stocks)
    # time in force
    tif: Tif | None = None
    goodAfterTime: Code | None = None  # "20260105 09:30:00 US/Eastern"
    goodTillDate: Code | None = None
    activeStartTime: Code | None = None
    activeStopTime: Code | None = None
    outsideRth: bool | None = None
    # attached orders and groups
    parentId: Count | None = None
    transmit: bool | None = None
    ocaGroup: Text | None = None
    ocaType: Annotated[int, Meta(ge=0, le=3)] | None = None
    autoCancelParent: bool | None = None
    # who and what for
    account: Account | None = None
    orderRef: Text | None = None
    modelCode: Code | None = None
    settlingFirm: Code | None = None
    clearingAccount: Code | None = None
    clearingIntent: Literal["IB", "Away", "PTA"] | None = None
    # execution attributes
    hidden: bool | None = None
    displaySize: Count | None = None
    allOrNone: bool | None = None
    minQty: Annotated[int, Meta(ge=1, le=MAX_INT)] | None = None
    sweepToFill: bool | None = None
    blockOrder: bool | None = None
    notHeld: bool | None = None
    discretionaryAmt: Amount | None = None
    optOutSmartRouting: bool | None = None
    triggerMethod: Literal[0, 1, 2, 3, 4, 7, 8] | None = None
    percentOffset: Price | None = None
    overridePercentageConstraints: bool | None = None
    usePriceMgmtAlgo: bool | None = None
    rule80A: Literal["I", "A", "W", "J", "U", "M", "K", "Y", "N"] | None = None
    whatIf: bool | None = None
    # trailing orders
    trailStopPrice: Price | None = None
    trailingPercent: Percent | None = None
    lmtPriceOffset: Price | None = None
    # adjusted (attached) stops
    triggerPrice: Price | None = None
    adjustedOrderType: Code | None = None
    adjustedStopPrice: Price | None = None
    adjustedStopLimitPrice: Price | None = None
    adjustedTrailingAmount: Price | None = None
    adjustableTrailingUnit: Literal[0, 1] | None = None
    # pegged orders (PEG STK, PEG BENCH, PEG BEST, PEG MID)
    startingPrice: Price | None = None
    stockRefPrice: Price | None = None
    delta: Price | None = None
    stockRangeLower: Price | None = None
    stockRangeUpper: Price | None = None
    referenceContractId: Count | None = None
    peggedChangeAmount: Price | None = None
    isPeggedChangeAmountDecrease: bool | None = None
    referenceChangeAmount: Price | None = None
    referenceExchangeId: Code | None = None
    minTradeQty: Count | None = None  # 10.x
    minCompeteSize: Count | None = None  # 10.x
    competeAgainstBestOffset: Price | None = None  # 10.x (IB's "up to mid" infinity: not in JSON)
    midOffsetAtWhole: Price | None = None  # 10.x
    midOffsetAtHalf: Price | None = None  # 10.x
    # volatility orders
    volatility: Annotated[float, Meta(gt=0, le=1000)] | None = None
    volatilityType: Literal[1, 2] | None = None  # 1 daily, 2 annual
    continuousUpdate: bool | None = None
    referencePriceType: Literal[1, 2] | None = None  # 1 average, 2 bid or ask
    deltaNeutralOrderType: Code | None = None
    deltaNeutralAuxPrice: Price | None = None
    # financial advisors
    faGroup: Text | None = None
    faMethod: Code | None = None
    faPercentage: Code | None = None
    faProfile: Text | None = None  # 9.81 only (10.x folded profiles into faGroup)
    # institutional
    openClose: Literal["O", "C"] | None = None
    origin: Literal[0, 1] | None = None  # 0 customer, 1 firm
    shortSaleSlot: Literal[0, 1, 2] | None = None
    designatedLocation: Code | None = None
    exemptCode: Annotated[int, Meta(ge=-1, le=MAX_INT)] | None = None
    # algos and combo routing
    algoStrategy: Code | None = None
    algoParams: TagValues | None = None
    algoId: Code | None = None
    smartComboRoutingParams: TagValues | None = None
    # regulatory
    extOperator: Code | None = None
    mifid2DecisionMaker: Code | None = None
    mifid2DecisionAlgo: Code | None = None
    mifid2ExecutionTrader: Code | None = None
    mifid2ExecutionAlgo: Code | None = None
    manualOrderIndicator: Literal[0, 1] | None = None  # 10.x
    manualOrderTime: Code | None = None  # 10.x
    customerAccount: Code | None = None  # 10.x
    professionalCustomer: bool | None = None  # 10.x
    advancedErrorOverride: Text | None = None  # 10.x
    # session and venue flags (10.x)
    includeOvernight: bool | None = None
    postOnly: bool | None = None
    allowPreOpen: bool | None = None
    ignoreOpenAuction: bool | None = None
    seekPriceImprovement: bool | None = None


class PlaceOrder(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True,
                 frozen=True):
    """The body of ``tws.req.place_order``."""

    contract: Contract
    order: Order
    clientOrderId: ClientOrderId | None = None
    strategy: Strategy | None = None
    modify: bool = False
    timeout: Timeout | None = None

    def __post_init__(self) -> None:
        if self.modify and self.clientOrderId is None:
            raise ValueError("modify needs the clientOrderId of the order to modify")


class CancelOrder(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True,
                  frozen=True):
    """The body of ``tws.req.cancel_order``: the order by ``clientOrderId`` or by ``orderId``."""

    clientOrderId: ClientOrderId | None = None
    orderId: Int | None = None
    orderCancel: OrderCancel | None = None
    timeout: Timeout | None = None

    def __post_init__(self) -> None:
        if (self.clientOrderId is None) == (self.orderId is None):
            raise ValueError("give exactly one of clientOrderId and orderId")
        if self.orderId == 0:
            raise ValueError("orderId 0 names no order")


def as_order(value: Order | Mapping[str, Any]) -> Order:
    """``value`` validated as an Order (a JSON object, or an ``Order`` built in Python, whose
    constructor checks nothing); BadRequest naming the field otherwise."""
    raw = msgspec.to_builtins(value) if isinstance(value, Order) else value
    if not isinstance(raw, Mapping):
        raise BadRequest("order: must be a JSON object")
    for path, item in _leaves(raw, "order"):
        if isinstance(item, float) and not math.isfinite(item):
            raise BadRequest(f"{path}: must be a finite number")
        if isinstance(item, str) and not (item.isascii() and item.isprintable()):
            raise BadRequest(f"{path}: only printable ASCII characters are sent to TWS")
    try:
        return msgspec.convert(raw, Order)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"order: {str(exc).replace('`$', '`$.order')}") from None


def order_fields(order: Order) -> dict[str, Any]:
    """The fields the caller gave (not None), as set on the struct: IB's names, typed values."""
    return {name: value for name in order.__struct_fields__
            if (value := getattr(order, name)) is not None}


def _leaves(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    if depth > 3:  # an order is two levels deep (algoParams[i].tag); msgspec refuses deeper
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{str(key)[:40]}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value[:64]):
            yield from _leaves(item, f"{path}[{i}]", depth + 1)
    else:
        yield path, value
