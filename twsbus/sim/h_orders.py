"""Order requests: placeOrder (new and modify), cancelOrder, reqOpenOrders, reqAllOpenOrders,
reqAutoOpenOrders, reqCompletedOrders, reqExecutions and reqGlobalCancel.

This module owns reading those requests off the wire, per server version. placeOrder is read in
full, field by field in the order the client writes it, so every order ibapi can build is
consumed exactly (its tail depends on the version and on the order's own type, combo legs,
conditions...). What the simulator acts on, and what it echoes back in openOrder, is kept in
a dict keyed by ibapi's ``Order`` field names; the book is ``orders.py``, matching is
``matching.py``. A field that cannot be read (``lmtPrice`` "abc", ``totalQuantity`` "x") is
answered as TWS's reader answers it, with error 320 for that order id, and the session goes on.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from twsbus.sim.contracts import NO_SECURITY_DEFINITION, read_contract
from twsbus.sim.msgids import FromClient, ToClient
from twsbus.sim.order_encoding import commission_report, completed_order, exec_details
from twsbus.sim.order_model import ExecFilter
from twsbus.sim.registry import handles
from twsbus.sim.session import ClientSession
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
V_PARAMETRIZED_DAYS_OF_EXECUTIONS = 200

#: Fields after the type of each order condition (connector first): price, time, margin,
#: execution, volume, percent change.
CONDITION_FIELDS = {1: 6, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5}

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
        width = CONDITION_FIELDS.get(int(kind) if kind.lstrip("-").isdigit() else -1)
        if width is None:
            raise UnreadableOrder(f"Order rejected - reason:order condition of unknown type "
                                  f"{kind!r}")
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


def parse_place_order(f: Fields, v: int) -> tuple[int, dict[str, Any], OrderFields]:
    """(orderId, contract spec, order fields) of a placeOrder request at server version v.
    Raises UnreadableOrder (with the order id, when that much could be read)."""
    order_id = -1
    try:
        order_id = f.int()
        spec = read_contract(f)
        spec["secIdType"], spec["secId"] = f.str(), f.str()
        p = order_defaults()
        p["exchange"] = spec["exchange"]
        _main(f, p)
        if spec["secType"].upper() == "BAG":
            _combo(f, p)
        _allocation(f, v, p)
        _short_sale_to_trail(f, p)
        _scale_to_randomize(f, p)
        _bench_conditions_adjusted(f, p)
        _version_tail(f, v, p, spec["exchange"])
    except UnreadableOrder as exc:
        exc.order_id = order_id
        raise
    except (ValueError, OverflowError) as exc:  # Fields.int / .float on text not a number
        unreadable = UnreadableOrder.unparsable(_offending_text(exc))
        unreadable.order_id = order_id
        raise unreadable from exc
    return order_id, spec, p


def _offending_text(exc: ArithmeticError | ValueError) -> str:
    """The field text a failed int() / float() choked on (Python quotes it last)."""
    found = re.search(r"'(.*)'$", str(exc))
    return found.group(1) if found else str(exc)


# ---- handlers ------------------------------------------------------------------------------


@handles(FromClient.PLACE_ORDER)
def place_order(s: ClientSession, f: Fields) -> None:
    try:
        order_id, spec, p = parse_place_order(f, s.version)
    except UnreadableOrder as exc:
        s.sim.orders.refuse(s, exc.order_id, exc.code, str(exc))
        return
    found = s.sim.universe.find(spec)
    if len(found) != 1:
        s.sim.orders.refuse(s, order_id, NO_SECURITY_DEFINITION, (
            f"The contract description specified for {spec.get('symbol')} is ambiguous"
            if found else "No security definition has been found for the request"))
        return
    s.sim.orders.place(s, order_id, found[0], p)


@handles(FromClient.CANCEL_ORDER)
def cancel_order(s: ClientSession, f: Fields) -> None:
    if s.version < V_CME_TAGGING:
        f.skip()  # version
    order_id = f.int()
    # manualOrderCancelTime (169+), RFQ fields (187-189), extOperator + manualOrderIndicator
    # (192+) follow; the simulator has no use for them.
    s.sim.orders.cancel(s, order_id)


@handles(FromClient.REQ_GLOBAL_CANCEL)
def global_cancel(s: ClientSession, f: Fields) -> None:
    s.sim.orders.cancel_all()


@handles(FromClient.REQ_OPEN_ORDERS)
def open_orders(s: ClientSession, f: Fields) -> None:
    book = s.sim.orders
    book.send_open_orders(s, book.open_orders_of(s))


@handles(FromClient.REQ_ALL_OPEN_ORDERS)
def all_open_orders(s: ClientSession, f: Fields) -> None:
    book = s.sim.orders
    book.send_open_orders(s, book.live_orders())


@handles(FromClient.REQ_AUTO_OPEN_ORDERS)
def auto_open_orders(s: ClientSession, f: Fields) -> None:
    f.skip()  # version
    bind = f.bool()
    if s.client_id == 0:  # TWS binds only clientId 0 (the one that may take over TWS orders)
        s.sim.orders.set_auto_bind(s, bind)
    elif bind:
        s.error(-1, 327, "Only API connections with clientId set to 0 can set the auto bind "
                         "TWS orders property.")


@handles(FromClient.REQ_COMPLETED_ORDERS)
def completed_orders(s: ClientSession, f: Fields) -> None:
    api_only = f.bool()  # leave out orders entered by hand in TWS
    for o in s.sim.orders.completed_orders(api_only):
        s.send_row(completed_order(s.version, o, s.sim.config.time_zone))
    s.send(ToClient.COMPLETED_ORDERS_END)


def _filter_time(text: str) -> float | None:
    """An ExecutionFilter time: "yyyymmdd hh:mm:ss [zone]" or UTC "yyyymmdd-hh:mm:ss[Z]"."""
    text = text.strip()
    if not text:
        return None
    try:
        if "-" in text[:9]:
            stamp = datetime.strptime(text[:17], "%Y%m%d-%H:%M:%S")
            return stamp.replace(tzinfo=ZoneInfo("UTC")).timestamp()
        parts = text.split()
        zone = ZoneInfo(parts[2]) if len(parts) > 2 else ZoneInfo("US/Eastern")
        return datetime.strptime(" ".join(parts[:2]), "%Y%m%d %H:%M:%S").replace(
            tzinfo=zone).timestamp()
    except (ValueError, KeyError):
        return None


@handles(FromClient.REQ_EXECUTIONS)
def executions(s: ClientSession, f: Fields) -> None:
    f.skip()  # version
    req_id = f.int()
    flt = ExecFilter(client_id=f.int(), account=f.str(), since=_filter_time(f.str()),
                     symbol=f.str(), sec_type=f.str(), exchange=f.str(), side=f.str())
    if s.version >= V_PARAMETRIZED_DAYS_OF_EXECUTIONS:
        days = f.int(UNSET_INTEGER)
        flt.last_n_days = None if days == UNSET_INTEGER else days
        flt.dates = {f.str() for _ in range(max(0, f.int()))}
    for fill in s.sim.orders.executions(flt):
        s.send(*exec_details(s.version, req_id, fill, s.sim.config.time_zone))
        s.send(*commission_report(fill))
    s.send(ToClient.EXECUTION_DATA_END, 1, req_id)
