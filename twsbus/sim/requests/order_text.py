"""placeOrder read off the text wire, field by field in the order the client writes it.

Every order ibapi can build is consumed exactly (the request's tail depends on the version and on
the order's own type, combo legs, conditions...). What the simulator acts on, and what it echoes
back in openOrder, is kept in a dict keyed by ibapi's ``Order`` field names. A field that cannot
be read (``lmtPrice`` "abc", ``totalQuantity`` "x") raises ``UnreadableOrder``, which the
request becomes (TWS answers it with error 320 for that order id and the session goes on).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from twsbus.sim.requests.base import Contract, read_contract
from twsbus.sim.wire import UNSET_DOUBLE, UNSET_INTEGER, Fields

V_DURATION = 158
V_POST_TO_ATS = 160
V_AUTO_CANCEL_PARENT = 162
V_ADVANCED_ORDER_REJECT = 166
V_MANUAL_ORDER_TIME = 169
V_PEGBEST_PEGMID_OFFSETS = 170
V_FA_PROFILE_DESUPPORT = 177
V_CUSTOMER_ACCOUNT = 183
V_PROFESSIONAL_CUSTOMER = 184
V_RFQ_FIELDS = 187
V_INCLUDE_OVERNIGHT = 189
V_UNDO_RFQ_FIELDS = 190
V_CME_TAGGING = 192
V_IMBALANCE_ONLY = 199

#: An order condition's fields after its type and connector, by type (IB's layout: the operator
#: and value first, then the contract), by their protobuf names.
CONDITION_FIELDS: dict[int, tuple[str, ...]] = {
    1: ("isMore", "price", "conId", "exchange", "triggerMethod"),  # price
    3: ("isMore", "time"),  # time
    4: ("isMore", "percent"),  # margin cushion
    5: ("secType", "exchange", "symbol"),  # execution
    6: ("isMore", "volume", "conId", "exchange"),  # volume
    7: ("isMore", "changePercent", "conId", "exchange"),  # percent change
}

ERROR_READING_REQUEST = 320

OrderFields = dict[str, Any]


class UnreadableOrder(Exception):
    """A placeOrder that cannot be read: a field that is not a number where one belongs (TWS:
    320, "Error reading request"), or an order condition of an unknown type, after which the
    layout cannot be followed (201)."""

    def __init__(self, message: str, code: int = 201, order_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.order_id = order_id

    @classmethod
    def unparsable(cls, text: str) -> UnreadableOrder:
        return cls("Error reading request. Unable to parse data. "
                   f"java.lang.NumberFormatException: For input string: \"{text}\"",
                   ERROR_READING_REQUEST)


def _dec(f: Fields) -> Decimal:
    """A quantity: an empty field is no size (refused later as zero); text must be a number."""
    text = f.str()
    try:
        value = Decimal(text) if text else Decimal(0)
    except InvalidOperation:
        raise UnreadableOrder.unparsable(text) from None
    if not value.is_finite():
        raise UnreadableOrder.unparsable(text)
    return value


def _dbl(f: Fields) -> float:
    value = f.float(UNSET_DOUBLE)
    if math.isnan(value):
        raise UnreadableOrder.unparsable("NaN")
    return value


def _int(f: Fields) -> int:
    return f.int(UNSET_INTEGER)


def _read(f: Fields, p: OrderFields, reader: Any, *names: str) -> None:
    for name in names:
        p[name] = reader(f)


def _pairs(f: Fields) -> list[tuple[str, str]]:
    return [(f.str(), f.str()) for _ in range(max(0, f.int()))]


# ---- placeOrder, section by section --------------------------------------------------------


def _main(f: Fields, p: OrderFields) -> None:
    p["action"] = f.str()
    p["totalQuantity"] = _dec(f)
    p["orderType"] = f.str()
    _read(f, p, _dbl, "lmtPrice", "auxPrice")
    _read(f, p, Fields.str, "tif", "ocaGroup", "account", "openClose")
    p["origin"] = f.int()
    p["orderRef"] = f.str()
    _read(f, p, Fields.bool, "transmit")
    p["parentId"] = f.int()
    _read(f, p, Fields.bool, "blockOrder", "sweepToFill")
    _read(f, p, _int, "displaySize", "triggerMethod")
    _read(f, p, Fields.bool, "outsideRth", "hidden")


def _combo(f: Fields, p: OrderFields) -> None:
    """BAG orders: combo legs (8 fields each), per-leg prices, smart combo routing params."""
    f.skip(8 * max(0, f.int()))
    f.skip(max(0, f.int()))
    p["smartComboRoutingParams"] = _pairs(f)


def _allocation(f: Fields, v: int, p: OrderFields) -> None:
    f.skip()  # sharesAllocation, deprecated
    p["discretionaryAmt"] = f.float(0.0)
    _read(f, p, Fields.str, "goodAfterTime", "goodTillDate", "faGroup", "faMethod",
          "faPercentage")
    if v < V_FA_PROFILE_DESUPPORT:
        f.skip()  # faProfile
    p["modelCode"] = f.str()


def _short_sale_to_trail(f: Fields, p: OrderFields) -> None:
    p["shortSaleSlot"] = f.int()
    p["designatedLocation"] = f.str()
    _read(f, p, _int, "exemptCode", "ocaType")
    _read(f, p, Fields.str, "rule80A", "settlingFirm")
    p["allOrNone"] = f.bool()
    p["minQty"] = _int(f)
    p["percentOffset"] = _dbl(f)
    f.skip(3)  # eTradeOnly, firmQuoteOnly, nbboPriceCap: deprecated
    p["auctionStrategy"] = f.int()
    _read(f, p, _dbl, "startingPrice", "stockRefPrice", "delta", "stockRangeLower",
          "stockRangeUpper")
    p["overridePercentageConstraints"] = f.bool()
    p["volatility"] = _dbl(f)
    p["volatilityType"] = _int(f)
    p["deltaNeutralOrderType"] = f.str()
    p["deltaNeutralAuxPrice"] = _dbl(f)
    if p["deltaNeutralOrderType"]:
        p["deltaNeutralConId"] = f.int()
        _read(f, p, Fields.str, "deltaNeutralSettlingFirm", "deltaNeutralClearingAccount",
              "deltaNeutralClearingIntent", "deltaNeutralOpenClose")
        p["deltaNeutralShortSale"] = f.bool()
        p["deltaNeutralShortSaleSlot"] = f.int()
        p["deltaNeutralDesignatedLocation"] = f.str()
    p["continuousUpdate"] = f.bool()
    p["referencePriceType"] = _int(f)
    _read(f, p, _dbl, "trailStopPrice", "trailingPercent")


def _scale_to_randomize(f: Fields, p: OrderFields) -> None:
    _read(f, p, _int, "scaleInitLevelSize", "scaleSubsLevelSize")
    p["scalePriceIncrement"] = incr = _dbl(f)
    if incr != UNSET_DOUBLE and incr > 0:
        p["scalePriceAdjustValue"] = _dbl(f)
        p["scalePriceAdjustInterval"] = _int(f)
        p["scaleProfitOffset"] = _dbl(f)
        p["scaleAutoReset"] = f.bool()
        _read(f, p, _int, "scaleInitPosition", "scaleInitFillQty")
        p["scaleRandomPercent"] = f.bool()
    _read(f, p, Fields.str, "scaleTable", "activeStartTime", "activeStopTime", "hedgeType")
    if p["hedgeType"]:
        p["hedgeParam"] = f.str()
    p["optOutSmartRouting"] = f.bool()
    _read(f, p, Fields.str, "clearingAccount", "clearingIntent")
    p["notHeld"] = f.bool()
    if f.bool():
        p["deltaNeutralContract"] = (f.int(), f.float(), f.float())  # conId, delta, price
    p["algoStrategy"] = f.str()
    if p["algoStrategy"]:
        p["algoParams"] = _pairs(f)
    p["algoId"] = f.str()
    p["whatIf"] = f.bool()
    p["orderMiscOptions"] = f.str()
    _read(f, p, Fields.bool, "solicited", "randomizeSize", "randomizePrice")


def _bench_conditions_adjusted(f: Fields, p: OrderFields) -> None:
    if p["orderType"] in ("PEG BENCH", "PEGBENCH"):
        p["referenceContractId"] = f.int()
        p["isPeggedChangeAmountDecrease"] = f.bool()
        _read(f, p, _dbl, "peggedChangeAmount", "referenceChangeAmount")
        p["referenceExchangeId"] = f.str()
    conditions = []
    for _ in range(max(0, f.int())):
        kind = f.str()
        names = CONDITION_FIELDS.get(int(kind) if kind.lstrip("-").isdigit() else -1)
        if names is None:
            raise UnreadableOrder(f"Order rejected - reason:order condition of unknown type "
                                  f"{kind!r}")
        width = 1 + len(names)  # the connector first
        conditions.append([kind, *(f.str() for _ in range(width))])
    p["conditions"] = conditions
    if conditions:
        _read(f, p, Fields.bool, "conditionsIgnoreRth", "conditionsCancelOrder")
    p["adjustedOrderType"] = f.str()
    _read(f, p, _dbl, "triggerPrice", "lmtPriceOffset", "adjustedStopPrice",
          "adjustedStopLimitPrice", "adjustedTrailingAmount")
    p["adjustableTrailingUnit"] = f.int()
    _read(f, p, Fields.str, "extOperator", "softDollarTierName", "softDollarTierValue")
    p["cashQty"] = _dbl(f)
    _read(f, p, Fields.str, "mifid2DecisionMaker", "mifid2DecisionAlgo",
          "mifid2ExecutionTrader", "mifid2ExecutionAlgo")
    _read(f, p, Fields.bool, "dontUseAutoPriceForHedge", "isOmsContainer",
          "discretionaryUpToLimitPrice", "usePriceMgmtAlgo")


def _version_tail(f: Fields, v: int, p: OrderFields, exchange: str) -> None:
    if v >= V_DURATION:
        p["duration"] = _int(f)
    if v >= V_POST_TO_ATS:
        p["postToAts"] = _int(f)
    if v >= V_AUTO_CANCEL_PARENT:
        p["autoCancelParent"] = f.bool()
    if v >= V_ADVANCED_ORDER_REJECT:
        p["advancedErrorOverride"] = f.str()
    if v >= V_MANUAL_ORDER_TIME:
        p["manualOrderTime"] = f.str()
    if v >= V_PEGBEST_PEGMID_OFFSETS:
        mid_offsets = p["orderType"] in ("PEG MID", "PEGMID")
        if exchange == "IBKRATS":
            p["minTradeQty"] = _int(f)
        if p["orderType"] in ("PEG BEST", "PEGBEST"):
            p["minCompeteSize"] = _int(f)
            p["competeAgainstBestOffset"] = offset = _dbl(f)
            mid_offsets = math.isinf(offset) and offset != UNSET_DOUBLE
        if mid_offsets:
            _read(f, p, _dbl, "midOffsetAtWhole", "midOffsetAtHalf")
    if v >= V_CUSTOMER_ACCOUNT:
        p["customerAccount"] = f.str()
    if v >= V_PROFESSIONAL_CUSTOMER:
        p["professionalCustomer"] = f.bool()
    if V_RFQ_FIELDS <= v < V_UNDO_RFQ_FIELDS:
        f.skip(2)
    if v >= V_INCLUDE_OVERNIGHT:
        p["includeOvernight"] = f.bool()
    if v >= V_CME_TAGGING:
        p["manualOrderIndicator"] = _int(f)
    if v >= V_IMBALANCE_ONLY:
        p["imbalanceOnly"] = f.bool()


def order_defaults() -> OrderFields:
    """Every attribute the encoders echo, at ibapi's defaults, for fields a version omits."""
    p: OrderFields = {name: "" for name in (
        "exchange", "tif", "ocaGroup", "account", "openClose", "orderRef", "goodAfterTime",
        "goodTillDate", "faGroup", "faMethod", "faPercentage", "modelCode", "rule80A",
        "settlingFirm", "designatedLocation", "deltaNeutralOrderType", "deltaNeutralSettlingFirm",
        "deltaNeutralClearingAccount", "deltaNeutralClearingIntent", "deltaNeutralOpenClose",
        "deltaNeutralDesignatedLocation", "hedgeType", "hedgeParam", "clearingAccount",
        "clearingIntent", "algoStrategy", "referenceExchangeId", "adjustedOrderType",
        "softDollarTierName", "softDollarTierValue", "customerAccount", "extOperator")}
    p.update({name: False for name in (
        "transmit", "blockOrder", "sweepToFill", "outsideRth", "hidden", "allOrNone",
        "continuousUpdate", "deltaNeutralShortSale", "scaleAutoReset", "scaleRandomPercent",
        "optOutSmartRouting", "notHeld", "whatIf", "solicited", "randomizeSize",
        "randomizePrice", "isPeggedChangeAmountDecrease", "conditionsIgnoreRth",
        "conditionsCancelOrder", "dontUseAutoPriceForHedge", "isOmsContainer",
        "discretionaryUpToLimitPrice", "usePriceMgmtAlgo", "autoCancelParent",
        "professionalCustomer", "includeOvernight", "imbalanceOnly")})
    p.update({name: UNSET_DOUBLE for name in (
        "lmtPrice", "auxPrice", "percentOffset", "startingPrice", "stockRefPrice", "delta",
        "stockRangeLower", "stockRangeUpper", "volatility", "deltaNeutralAuxPrice",
        "trailStopPrice", "trailingPercent", "scalePriceIncrement", "scalePriceAdjustValue",
        "scaleProfitOffset", "peggedChangeAmount", "referenceChangeAmount", "triggerPrice",
        "lmtPriceOffset", "adjustedStopPrice", "adjustedStopLimitPrice",
        "adjustedTrailingAmount", "cashQty", "competeAgainstBestOffset", "midOffsetAtWhole",
        "midOffsetAtHalf")})
    p.update({name: UNSET_INTEGER for name in (
        "displaySize", "triggerMethod", "minQty", "volatilityType", "referencePriceType",
        "scaleInitLevelSize", "scaleSubsLevelSize", "scalePriceAdjustInterval",
        "scaleInitPosition", "scaleInitFillQty", "duration", "postToAts", "minTradeQty",
        "minCompeteSize", "manualOrderIndicator")})
    p.update(origin=0, parentId=0, shortSaleSlot=0, exemptCode=-1, ocaType=0,
             auctionStrategy=0, deltaNeutralConId=0, deltaNeutralShortSaleSlot=0,
             referenceContractId=0, adjustableTrailingUnit=0, discretionaryAmt=0.0,
             totalQuantity=Decimal(0), action="", orderType="", smartComboRoutingParams=[],
             algoParams=[], conditions=[], deltaNeutralContract=None)
    return p


def parse_place_order(f: Fields, v: int) -> tuple[int, Contract, OrderFields]:
    """(orderId, contract, order fields) of a placeOrder request at server version v.
    Raises UnreadableOrder (with the order id, when that much could be read)."""
    order_id = -1
    try:
        order_id = f.int()
        contract = read_contract(f)
        contract = msgspec.structs.replace(contract, secIdType=f.str(), secId=f.str())
        p = order_defaults()
        p["exchange"] = contract.exchange
        _main(f, p)
        if contract.secType.upper() == "BAG":
            _combo(f, p)
        _allocation(f, v, p)
        _short_sale_to_trail(f, p)
        _scale_to_randomize(f, p)
        _bench_conditions_adjusted(f, p)
        _version_tail(f, v, p, contract.exchange)
    except UnreadableOrder as exc:
        exc.order_id = order_id
        raise
    except (ValueError, OverflowError) as exc:  # Fields.int / .float on text not a number
        unreadable = UnreadableOrder.unparsable(_offending_text(exc))
        unreadable.order_id = order_id
        raise unreadable from exc
    return order_id, contract, p


def _offending_text(exc: ArithmeticError | ValueError) -> str:
    """The field text a failed int() / float() choked on (Python quotes it last)."""
    found = re.search(r"'(.*)'$", str(exc))
    return found.group(1) if found else str(exc)
