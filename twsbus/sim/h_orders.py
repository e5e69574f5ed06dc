"""Order requests: placeOrder (new and modify), cancelOrder, reqOpenOrders, reqAllOpenOrders,
reqAutoOpenOrders, reqCompletedOrders, reqExecutions and reqGlobalCancel.

The requests arrive typed (``requests.orders``; placeOrder's order is a dict keyed by ibapi's
``Order`` field names, what the simulator acts on and echoes back in openOrder). A placeOrder
whose fields could not be read is refused as TWS's reader refuses it (error 320 for that order
id), and the session goes on. The book is ``orders.py``, matching is ``matching.py``.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from twsbus.sim.contracts import NO_SECURITY_DEFINITION
from twsbus.sim.msgids import FromClient, ToClient
from twsbus.sim.order_encoding import commission_report, completed_order, exec_details
from twsbus.sim.order_model import ExecFilter
from twsbus.sim.requests import orders as rq
from twsbus.sim.session import ClientSession
from twsbus.sim.wire import UNSET_INTEGER

# ---- handlers ------------------------------------------------------------------------------


def place_order(s: ClientSession, r: rq.PlaceOrder | rq.UnreadablePlaceOrder) -> None:
    if isinstance(r, rq.UnreadablePlaceOrder):
        s.sim.orders.refuse(s, r.orderId, r.code, r.message)
        return
    found = s.sim.universe.find(r.contract.spec())
    if len(found) != 1:
        s.sim.orders.refuse(s, r.orderId, NO_SECURITY_DEFINITION, (
            f"The contract description specified for {r.contract.symbol} is ambiguous"
            if found else "No security definition has been found for the request"))
        return
    s.sim.orders.place(s, r.orderId, found[0], r.order)


def cancel_order(s: ClientSession, r: rq.CancelOrder) -> None:
    s.sim.orders.cancel(s, r.orderId)


def global_cancel(s: ClientSession, r: rq.ReqGlobalCancel) -> None:
    s.sim.orders.cancel_all()


def open_orders(s: ClientSession, r: rq.ReqOpenOrders) -> None:
    book = s.sim.orders
    book.send_open_orders(s, book.open_orders_of(s))


def all_open_orders(s: ClientSession, r: rq.ReqAllOpenOrders) -> None:
    book = s.sim.orders
    book.send_open_orders(s, book.live_orders())


def auto_open_orders(s: ClientSession, r: rq.ReqAutoOpenOrders) -> None:
    bind = r.bAutoBind
    if s.client_id == 0:  # TWS binds only clientId 0 (the one that may take over TWS orders)
        s.sim.orders.set_auto_bind(s, bind)
    elif bind:
        s.error(-1, 327, "Only API connections with clientId set to 0 can set the auto bind "
                         "TWS orders property.")


def completed_orders(s: ClientSession, r: rq.ReqCompletedOrders) -> None:
    # apiOnly: leave out orders entered by hand in TWS
    for o in s.sim.orders.completed_orders(r.apiOnly):
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


def executions(s: ClientSession, r: rq.ReqExecutions) -> None:
    req_id, x = r.reqId, r.execFilter
    flt = ExecFilter(client_id=x.clientId, account=x.acctCode, since=_filter_time(x.time),
                     symbol=x.symbol, sec_type=x.secType, exchange=x.exchange, side=x.side)
    flt.last_n_days = None if x.lastNDays == UNSET_INTEGER else x.lastNDays
    flt.dates = set(x.specificDates)
    for fill in s.sim.orders.executions(flt):
        s.send(*exec_details(s.version, req_id, fill, s.sim.config.time_zone))
        s.send(*commission_report(fill))
    s.send(ToClient.EXECUTION_DATA_END, 1, req_id)


HANDLERS = {
    FromClient.PLACE_ORDER: place_order,
    FromClient.CANCEL_ORDER: cancel_order,
    FromClient.REQ_GLOBAL_CANCEL: global_cancel,
    FromClient.REQ_OPEN_ORDERS: open_orders,
    FromClient.REQ_ALL_OPEN_ORDERS: all_open_orders,
    FromClient.REQ_AUTO_OPEN_ORDERS: auto_open_orders,
    FromClient.REQ_COMPLETED_ORDERS: completed_orders,
    FromClient.REQ_EXECUTIONS: executions,
}
