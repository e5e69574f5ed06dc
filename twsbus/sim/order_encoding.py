"""Wire layouts of the order messages TWS sends: openOrder, orderStatus, completedOrder,
execDetails and commissionReport, each laid out for the session's negotiated server version.

openOrder and completedOrder share most of their sections but not all of them, nor their order,
so each is assembled from small per-section functions named after what the section carries.
The order state (``SimOrder``, ``Fill``) lives in ``order_model.py``; this module only renders it.
The openOrder and completedOrder rows carry their protobuf forms (``order_protobuf``); both
forms take quantities and times as a version prints them from ``values``.
Server versions below 157 are never negotiated (the simulator's floor), so only the branches
from 157 up are modelled.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from twsbus.sim import order_protobuf
from twsbus.sim.msgids import ToClient
from twsbus.sim.values import qty, tws_time
from twsbus.sim.wire import UNSET_DOUBLE, UNSET_INTEGER

if TYPE_CHECKING:
    from twsbus.sim.order_model import Fill, SimOrder
    from twsbus.sim.universe import Instrument

V_DURATION = 158
V_POST_TO_ATS = 160
V_AUTO_CANCEL_PARENT = 162
V_PEGBEST_PEGMID_OFFSETS = 170
V_FA_PROFILE_DESUPPORT = 177
V_PENDING_PRICE_REVISION = 178
V_CUSTOMER_ACCOUNT = 183
V_PROFESSIONAL_CUSTOMER = 184
V_BOND_ACCRUED_INTEREST = 185
V_INCLUDE_OVERNIGHT = 189
V_CME_TAGGING_IN_OPEN_ORDER = 193
V_FULL_ORDER_PREVIEW = 195
V_SUBMITTER = 198
V_IMBALANCE_ONLY = 199

#: How Java TWS prints Double.MAX_VALUE. Used where a decoder reads a double without treating
#: an empty field as "unset", so the client still ends up with IB's sentinel.
MAX_DOUBLE_TEXT = "1.7976931348623157E308"

Row = list[object]


class ModelRow(list[object]):
    """A text row that can also build its protobuf form from the model it was rendered from
    (``codec`` asks for it from the version the message switched to protobuf)."""

    def __init__(self, items: Row, build: Any) -> None:
        super().__init__(items)
        self.protobuf = build


def _raw_double(value: float) -> object:
    return MAX_DOUBLE_TEXT if value == UNSET_DOUBLE else value


def _is_peg_bench(order_type: str) -> bool:
    return order_type in ("PEG BENCH", "PEGBENCH")


# ---- sections shared by openOrder and completedOrder ---------------------------------------


def _contract(o: SimOrder) -> Row:
    i = o.inst
    return [i.con_id, i.symbol, i.sec_type, i.expiry, i.strike, i.right, i.multiplier,
            o.p.get("exchange") or i.exchange, i.currency, i.local_symbol, i.trading_class]


def _basics(v: int, o: SimOrder) -> Row:
    p = o.p
    return [p["action"], qty(v, p["totalQuantity"]), p["orderType"], p["lmtPrice"],
            p["auxPrice"], p["tif"], p["ocaGroup"], o.account, p["openClose"], p["origin"],
            p["orderRef"]]


def _rth_and_discretion(o: SimOrder) -> Row:
    p = o.p
    return [p["outsideRth"], p["hidden"], p["discretionaryAmt"], p["goodAfterTime"]]


def _allocation(v: int, o: SimOrder) -> Row:
    p = o.p
    row: Row = [p["faGroup"], p["faMethod"], p["faPercentage"]]
    if v < V_FA_PROFILE_DESUPPORT:
        row.append("")  # faProfile
    row.append(p["modelCode"])
    return row


def _terms(o: SimOrder) -> Row:
    p = o.p
    return [p["goodTillDate"], p["rule80A"], p["percentOffset"], p["settlingFirm"],
            p["shortSaleSlot"], p["designatedLocation"], p["exemptCode"]]


def _box_and_range(o: SimOrder) -> Row:
    p = o.p
    return [p["startingPrice"], p["stockRefPrice"], p["delta"], p["stockRangeLower"],
            p["stockRangeUpper"]]


def _volatility(o: SimOrder, open_order: bool) -> Row:
    p = o.p
    row: Row = [p["volatility"], p["volatilityType"], p["deltaNeutralOrderType"],
                p["deltaNeutralAuxPrice"]]
    if p["deltaNeutralOrderType"]:
        row.append(p["deltaNeutralConId"])
        if open_order:
            row += [p["deltaNeutralSettlingFirm"], p["deltaNeutralClearingAccount"],
                    p["deltaNeutralClearingIntent"], p["deltaNeutralOpenClose"]]
        row += [p["deltaNeutralShortSale"], p["deltaNeutralShortSaleSlot"],
                p["deltaNeutralDesignatedLocation"]]
    row += [p["continuousUpdate"], p["referencePriceType"]]
    return row


def _combo_and_routing(o: SimOrder) -> Row:
    params = o.p["smartComboRoutingParams"]
    row: Row = ["", 0, 0, len(params)]  # comboLegsDescrip, combo legs, order combo legs
    for tag, value in params:
        row += [tag, value]
    return row


def _scale(o: SimOrder) -> Row:
    p = o.p
    row: Row = [p["scaleInitLevelSize"], p["scaleSubsLevelSize"], p["scalePriceIncrement"]]
    incr = p["scalePriceIncrement"]
    if incr != UNSET_DOUBLE and incr > 0:
        row += [p["scalePriceAdjustValue"], p["scalePriceAdjustInterval"],
                p["scaleProfitOffset"], p["scaleAutoReset"], p["scaleInitPosition"],
                p["scaleInitFillQty"], p["scaleRandomPercent"]]
    return row


def _hedge(o: SimOrder) -> Row:
    p = o.p
    return [p["hedgeType"], p["hedgeParam"]] if p["hedgeType"] else [""]


def _clearing_to_algo(o: SimOrder) -> Row:
    """clearing account/intent, notHeld, the delta-neutral contract, the algo and solicited."""
    p = o.p
    row: Row = [p["clearingAccount"], p["clearingIntent"], p["notHeld"]]
    dn = p["deltaNeutralContract"]
    row += [True, *dn] if dn else [False]
    row.append(p["algoStrategy"])
    if p["algoStrategy"]:
        row.append(len(p["algoParams"]))
        for tag, value in p["algoParams"]:
            row += [tag, value]
    row.append(p["solicited"])
    return row


def _randomize_bench_conditions(o: SimOrder) -> Row:
    p = o.p
    row: Row = [p["randomizeSize"], p["randomizePrice"]]
    if _is_peg_bench(p["orderType"]):
        row += [p["referenceContractId"], p["isPeggedChangeAmountDecrease"],
                p["peggedChangeAmount"], p["referenceChangeAmount"], p["referenceExchangeId"]]
    conditions: list[list[str]] = p["conditions"]
    row.append(len(conditions))
    for cond in conditions:
        row += cond  # type, connector and its fields, echoed as the client wrote them
    if conditions:
        row += [p["conditionsIgnoreRth"], p["conditionsCancelOrder"]]
    return row


def _peg_best_mid(v: int, o: SimOrder) -> Row:
    if v < V_PEGBEST_PEGMID_OFFSETS:
        return []
    p = o.p
    return [p["minTradeQty"], p["minCompeteSize"], p["competeAgainstBestOffset"],
            p["midOffsetAtWhole"], p["midOffsetAtHalf"]]


def _customer(v: int, o: SimOrder) -> Row:
    row: Row = []
    if v >= V_CUSTOMER_ACCOUNT:
        row.append(o.p["customerAccount"])
    if v >= V_PROFESSIONAL_CUSTOMER:
        row.append(o.p["professionalCustomer"])
    return row


# ---- openOrder -----------------------------------------------------------------------------


def _open_order_middle(o: SimOrder) -> Row:
    """From auctionStrategy to the trigger method: the part openOrder lays out its own way."""
    p = o.p
    return [p["auctionStrategy"], *_box_and_range(o), p["displaySize"], p["blockOrder"],
            p["sweepToFill"], p["allOrNone"], p["minQty"], p["ocaType"],
            False, False, "",  # eTradeOnly, firmQuoteOnly, nbboPriceCap: deprecated
            p["parentId"], p["triggerMethod"]]


def _order_state(v: int, o: SimOrder) -> Row:
    """whatIf, status, margins, commission and warning: what IB calls the OrderState."""
    margins = o.margins or {}
    commission = o.commission if o.commission is not None else UNSET_DOUBLE
    row: Row = [o.p["whatIf"], o.status]
    for key in ("initMarginBefore", "maintMarginBefore", "equityWithLoanBefore",
                "initMarginChange", "maintMarginChange", "equityWithLoanChange",
                "initMarginAfter", "maintMarginAfter", "equityWithLoanAfter"):
        row.append(margins.get(key, ""))
    row += [commission, UNSET_DOUBLE, UNSET_DOUBLE,
            o.inst.currency if commission != UNSET_DOUBLE else ""]
    if v >= V_FULL_ORDER_PREVIEW:
        row.append(o.inst.currency if margins else "")  # marginCurrency
        row += [UNSET_DOUBLE] * 9  # the outside-RTH margin figures
        row += ["", "", 0]  # suggestedSize, rejectReason, allocations
    row.append("")  # warningText
    return row


def _open_order_tail(v: int, o: SimOrder) -> Row:
    p = o.p
    row: Row = [p["adjustedOrderType"], _raw_double(p["triggerPrice"]),
                _raw_double(p["trailStopPrice"]), _raw_double(p["lmtPriceOffset"]),
                _raw_double(p["adjustedStopPrice"]), _raw_double(p["adjustedStopLimitPrice"]),
                _raw_double(p["adjustedTrailingAmount"]), p["adjustableTrailingUnit"],
                p["softDollarTierName"], p["softDollarTierValue"], "",
                _raw_double(p["cashQty"]), p["dontUseAutoPriceForHedge"], p["isOmsContainer"],
                p["discretionaryUpToLimitPrice"], p["usePriceMgmtAlgo"]]
    if v >= V_DURATION:
        row.append(p["duration"])
    if v >= V_POST_TO_ATS:
        row.append(p["postToAts"])
    if v >= V_AUTO_CANCEL_PARENT:
        row.append(p["autoCancelParent"])
    row += _peg_best_mid(v, o)
    row += _customer(v, o)
    if v >= V_BOND_ACCRUED_INTEREST:
        row.append("")  # bondAccruedInterest
    if v >= V_INCLUDE_OVERNIGHT:
        row.append(p["includeOvernight"])
    if v >= V_CME_TAGGING_IN_OPEN_ORDER:
        row += [p["extOperator"], p["manualOrderIndicator"]]
    if v >= V_SUBMITTER:
        row.append("")  # submitter
    if v >= V_IMBALANCE_ONLY:
        row.append(p["imbalanceOnly"])
    return row


def open_order(v: int, o: SimOrder) -> ModelRow:
    p = o.p
    return ModelRow([
        ToClient.OPEN_ORDER, o.order_id, *_contract(o), *_basics(v, o), o.client_id, o.perm_id,
        *_rth_and_discretion(o), "", *_allocation(v, o), *_terms(o), *_open_order_middle(o),
        *_volatility(o, True), p["trailStopPrice"], p["trailingPercent"],
        UNSET_DOUBLE, UNSET_INTEGER,  # basisPoints, basisPointsType
        *_combo_and_routing(o), *_scale(o), *_hedge(o), p["optOutSmartRouting"],
        *_clearing_to_algo(o), *_order_state(v, o), *_randomize_bench_conditions(o),
        *_open_order_tail(v, o),
    ], lambda message: order_protobuf.open_order(v, o, message))


# ---- completedOrder ------------------------------------------------------------------------


def completed_order(v: int, o: SimOrder, zone: str = "US/Eastern") -> ModelRow:
    p = o.p
    middle: Row = [*_box_and_range(o), p["displaySize"], p["sweepToFill"], p["allOrNone"],
                   p["minQty"], p["ocaType"], p["triggerMethod"]]
    tail: Row = [_raw_double(p["trailStopPrice"]), _raw_double(p["lmtPriceOffset"]),
                 _raw_double(p["cashQty"]), p["dontUseAutoPriceForHedge"],
                 p["isOmsContainer"], "",  # autoCancelDate
                 qty(v, o.filled), 0, p["autoCancelParent"], "",  # refFuturesConId, shareholder
                 p["imbalanceOnly"], False, o.parent_perm_id,  # routeMarketableToBbo
                 tws_time(v, o.completed_at or time.time(), zone), o.completed_status]
    row: Row = [
        ToClient.COMPLETED_ORDER, *_contract(o), *_basics(v, o), o.perm_id,
        *_rth_and_discretion(o), *_allocation(v, o), *_terms(o), *middle,
        *_volatility(o, False), p["trailStopPrice"], p["trailingPercent"],
        *_combo_and_routing(o), *_scale(o), *_hedge(o), *_clearing_to_algo(o), o.status,
        *_randomize_bench_conditions(o), *tail, *_peg_best_mid(v, o), *_customer(v, o),
    ]
    if v >= V_SUBMITTER:
        row.append("")
    return ModelRow(row, lambda message: order_protobuf.completed_order(v, o, message, zone))


# ---- status, executions, commissions -------------------------------------------------------


def order_status(v: int, o: SimOrder) -> Row:
    return [ToClient.ORDER_STATUS, o.order_id, o.status, qty(v, o.filled),
            qty(v, o.remaining), o.avg_price, o.perm_id, o.p["parentId"], o.last_price,
            o.client_id, o.why_held, 0.0]  # mktCapPrice: 0 when no cap applies, as TWS sends


def execution_exchange(inst: Instrument) -> str:
    """Where a SMART-routed fill "happened": the listing exchange, ISLAND for NASDAQ."""
    if inst.primary_exchange == "NASDAQ":
        return "ISLAND"
    return inst.primary_exchange or inst.exchange


def exec_details(v: int, req_id: int, fill: Fill, zone: str = "US/Eastern") -> Row:
    o, i = fill.order, fill.order.inst
    exchange = execution_exchange(i)
    row: Row = [
        ToClient.EXECUTION_DATA, req_id, o.order_id,
        i.con_id, i.symbol, i.sec_type, i.expiry, i.strike, i.right, i.multiplier, exchange,
        i.currency, i.local_symbol, i.trading_class,
        fill.exec_id, tws_time(v, fill.time, zone), o.account, exchange, fill.side,
        qty(v, fill.shares), fill.price, o.perm_id, o.client_id, 0,  # liquidation
        qty(v, fill.cum_qty), fill.avg_price, o.p["orderRef"], "", UNSET_DOUBLE,  # evRule/-Mult
        o.p["modelCode"], 2,  # lastLiquidity: 2 = removed liquidity, as a marketable order does
    ]
    if v >= V_PENDING_PRICE_REVISION:
        row.append(False)
    if v >= V_SUBMITTER:
        row.append("")
    return row


def commission_report(fill: Fill) -> Row:
    return [ToClient.COMMISSION_AND_FEES_REPORT, 1, fill.exec_id, fill.commission,
            fill.order.inst.currency, _raw_double(fill.realized_pnl), MAX_DOUBLE_TEXT,
            UNSET_INTEGER]


def what_if_margins(o: SimOrder, price: float) -> dict[str, Any]:
    """Rough Reg-T figures for a whatIf preview: 25% maintenance, 50% initial of the notional."""
    mult = float(o.inst.multiplier or 1)
    notional = float(o.p["totalQuantity"]) * price * mult
    init, maint = notional * 0.5, notional * 0.25
    return {
        "initMarginBefore": "0.0", "maintMarginBefore": "0.0", "equityWithLoanBefore": "1000000.0",
        "initMarginChange": f"{init:.2f}", "maintMarginChange": f"{maint:.2f}",
        "equityWithLoanChange": "0.0", "initMarginAfter": f"{init:.2f}",
        "maintMarginAfter": f"{maint:.2f}", "equityWithLoanAfter": "1000000.0",
    }
