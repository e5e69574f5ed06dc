"""The order desk's reconciliation: after every (re)connect to TWS, and after 1101/1102, ask TWS
for all open orders, completed orders and executions, each up to its End (a timeout fails the
round, which is tried again: never read as "no orders"), publish what the desk had missed with
``reconciled: true``, settle orders TWS never received, and only then report the orders ``ok`` on
``tws.orders.status`` (into the stream too). ``OrderDesk`` (orders.py) is a ``Reconciler``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from twsbus.errors import Timeout, TwsBusError
from twsbus.messages import ExecFilter
from twsbus.orders.book import OrderBook
from twsbus.orders.events import OrderEvent, OrderRecord
from twsbus.orders.journal import Journal
from twsbus.orders.writer import EventWriter
from twsbus.service.upstream import Upstream
from twsbus.subjects import Surface


class DeskState:
    STARTING = "starting"
    RECONCILING = "reconciling"
    OK = "ok"
    STALE = "stale"
    UNAVAILABLE = "unavailable"


class Reconciler:
    """The reconciliation half of ``OrderDesk``: the attributes below are the desk's."""

    surface: Surface
    session: Upstream
    book: OrderBook
    journal: Journal | None
    writer: EventWriter
    state: str
    reason: str
    reconcile_timeout: float
    reconciliations: int
    _reconciling: bool
    _reconcile_wanted: asyncio.Event
    _ends: dict[str, asyncio.Future[None]]

    def _set_state(self, state: str, reason: str) -> None:
        raise NotImplementedError

    def _emit(self, changes: list[tuple[OrderRecord, OrderEvent]]) -> None:
        raise NotImplementedError

    async def _reconcile_forever(self) -> None:
        while True:
            await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            if self.journal is None or not self.session.ready:
                continue
            try:
                await self._reconcile()
            except (TwsBusError, TimeoutError) as exc:
                self._set_state(DeskState.STALE, f"reconciliation failed: {exc}")
                await asyncio.sleep(1.0)
                if self.session.ready:
                    self._reconcile_wanted.set()

    async def _reconcile(self) -> None:
        self._set_state(DeskState.RECONCILING, "asking TWS for open and completed orders and "
                                               "executions")
        self.reconciliations += 1
        before = {key: r.seq for key, r in self.book.records.items()}
        self._reconciling = True
        try:
            if self.book.client_id == 0:  # bind manual TWS orders to this client, as they come
                self.session.call("reqAutoOpenOrders", None, {"bAutoBind": True})
            await self._ask("reqAllOpenOrders", None, {}, "openOrderEnd")
            await self._ask("reqCompletedOrders", None, {"apiOnly": False}, "completedOrdersEnd")
            req_id = self.session.next_id()
            await self._ask("reqExecutions", req_id, {"execFilter": ExecFilter()},
                            "execDetailsEnd")
            for record in self.book.live():
                if record.ours and record.permId is None and record.seq == before.get(
                        record.key, -1):
                    self._emit(self.book.settle_missing(
                        record, "TWS has no such order: it never reached TWS"))
        finally:
            self._reconciling = False
        self._set_state(DeskState.OK, f"reconciled ({self.reconciliations})")
        self._publish_state()

    async def _ask(self, method: str, key: int | None, args: dict[str, Any], end: str) -> None:
        name = end if key is None else f"{end}:{key}"
        waiter = asyncio.get_running_loop().create_future()
        self._ends[name] = waiter
        try:
            self.session.call(method, key, args)
            async with asyncio.timeout(self.reconcile_timeout):
                await waiter
        except TimeoutError:
            raise Timeout(f"{method}: no {end} within {self.reconcile_timeout:g}s") from None
        finally:
            self._ends.pop(name, None)

    def _publish_state(self) -> None:
        """The desk's state, into the order stream too (a replay shows where it reconciled)."""
        event = OrderEvent(type="status", status=self.state, reason=self.reason,
                           ts=self.book.clock(), epoch=self.book.epoch)
        self.writer.put_plain(self.surface.subject("order_status"), event,
                              f"state-{self.book.epoch}-{self.reconciliations}")
