"""Helpers the order tests share: contracts and orders built with ibapi's own classes, the quote
set by hand, and waits on what IB's client received or the simulator holds.

Works under ibapi 10.x and 9.81 alike (their cancel signatures and commission callbacks differ).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import waiting
from ibapi.contract import Contract
from ibapi.order import Order
from ibapi.wrapper import EWrapper
from ibrecorder import IBClient

from twsbus.testing import SimulatorThread

T = TypeVar("T")

AAPL, MSFT, IBM, TSLA, NVDA = 265598, 272093, 8314, 76792991, 4815747
ACCOUNT = "DU1234567"
IBAPI_10 = hasattr(EWrapper, "commissionAndFeesReport")
COMMISSION_CB = "commissionAndFeesReport" if IBAPI_10 else "commissionReport"
MAX_CLIENT_VERSION = 200 if IBAPI_10 else 157


def stock(symbol: str = "AAPL") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def make_order(action: str, quantity: Any, order_type: str, lmt: Any = None,
               aux: Any = None, **attrs: Any) -> Order:
    o = Order()
    o.action, o.orderType = action, order_type
    o.totalQuantity = Decimal(str(quantity)) if isinstance(quantity, (int, float)) else quantity
    if lmt is not None:
        o.lmtPrice = lmt
    if aux is not None:
        o.auxPrice = aux
    # 9.81 defaults these to True, which real TWS rejects; they are deprecated anyway.
    o.eTradeOnly = o.firmQuoteOnly = False
    for name, value in attrs.items():
        setattr(o, name, value)
    return o


def commission_of(report: Any) -> float:
    return report.commissionAndFees if IBAPI_10 else report.commission


def cancel(ib: IBClient, order_id: int) -> None:
    if len(inspect.signature(ib.cancelOrder).parameters) > 1:
        from ibapi.order_cancel import OrderCancel

        ib.cancelOrder(order_id, OrderCancel())
    else:
        ib.cancelOrder(order_id)


def global_cancel(ib: IBClient) -> None:
    if len(inspect.signature(ib.reqGlobalCancel).parameters) > 0:
        from ibapi.order_cancel import OrderCancel

        ib.reqGlobalCancel(OrderCancel())
    else:
        ib.reqGlobalCancel()


def quote(sim: SimulatorThread, con_id: int) -> tuple[float, float, float]:
    return sim.call(lambda s: (lambda q: (q.bid, q.ask, q.last))(s.market.quote(con_id)))


def move(sim: SimulatorThread, con_id: int, bid: float, ask: float, last: float,
         bid_size: int | None = None, ask_size: int | None = None,
         match: bool = False) -> None:
    """Set an instrument's quote as if the market moved there (the matcher sees a new step);
    with ``match``, run the matcher on it in the same breath, before anything else steps."""

    def apply(s: Any) -> None:
        q = s.market.quote(con_id)
        q.bid, q.ask, q.last = bid, ask, last
        if bid_size is not None:
            q.bid_size = bid_size
        if ask_size is not None:
            q.ask_size = ask_size
        q.steps += 1
        if match:
            s.orders.matcher.check(con_id)

    sim.call(apply)


def status_of(ib: IBClient, order_id: int, status: str, timeout: float = 5.0) -> tuple[Any, ...]:
    return ib.rec.wait_for("orderStatus", lambda a: a[0] == order_id and a[1] == status,
                           timeout)[-1]


def next_id(ib: IBClient) -> int:
    return int(ib.rec.of("nextValidId")[-1][0])


def connect(sim: SimulatorThread, client_id: int) -> IBClient:
    return IBClient().start(sim.port, client_id)


def sync(ib: IBClient) -> None:
    """Wait until the simulator has handled everything this client sent so far."""
    seen = len(ib.rec.of("currentTime"))
    ib.reqCurrentTime()
    ib.rec.wait_for("currentTime", count=seen + 1)


def poll(read: Callable[[], T], until: Callable[[T], bool], timeout: float = 5.0,
         what: str = "") -> T:
    """Read until the value satisfies ``until`` (or fail at the deadline, naming the last value
    read); returns it, even when it is falsy."""
    last: list[T] = []

    def check() -> list[T] | None:
        last[:] = [read()]
        return last if until(last[0]) else None

    try:
        return waiting.poll(check, timeout, what)[0]
    except AssertionError as exc:
        raise AssertionError(f"{exc}: last {last[0]!r}") from None


def ib_async_wait(ib: Any, check: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    """Wait until ``check()`` holds for a blocking ib_async client (returns its value): ib_async
    reads its socket only while its event loop runs, so ``ib.sleep`` turns it between looks."""

    def look() -> T:
        value = check()
        if not value:
            ib.sleep(0.02)
        return value

    return waiting.poll(look, timeout, what, interval=0)


def order_rows(sim: SimulatorThread) -> list[dict[str, Any]]:
    return list(sim.control.call("GET", "/orders")["orders"])


def row_of(sim: SimulatorThread, perm_id: int) -> dict[str, Any]:
    (row,) = [r for r in order_rows(sim) if r["permId"] == perm_id]
    return row


def wait_disconnected(sim: SimulatorThread, client_id: int) -> None:
    poll(lambda: [c["clientId"] for c in sim.control.state()["clients"]],
         lambda ids: client_id not in ids, what=f"clientId {client_id} to leave")


def perm_of(ib: IBClient, order_id: int) -> int:
    return int(ib.rec.wait_for("orderStatus", lambda a: a[0] == order_id)[0][5])
