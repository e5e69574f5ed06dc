"""``twsbus orders``: the orders of an account or a strategy, and their fills, in the terminal.

``OrderBoard`` folds the journal's records (``tws.req.orders``) and the order stream's events
into one row per order and keeps the last fills; it is pure, so tests feed it records and events.
``watch_orders`` opens the order feed first (from now on: the stream's live copies, the daemon
asked where "now" is; no JetStream access needed) and only then asks the journal, so an event
that happens in between is not missed, and an event the journal's record already holds (its
per-order ``seq`` is not past the row's) is not applied twice. On a terminal the table is redrawn
in place (at most ten times a second, as ``twsbus sub`` does); elsewhere each event is one line.
``--once`` prints the journal's table and exits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

import msgspec

from twsbus.client.client import Client
from twsbus.client.orders import OrderEvent, OrderRecord, OrderUpdate
from twsbus.errors import TwsBusError
from twsbus.orders.events import FINAL

_CSI = "\x1b["
_FILLS = 10
_COLUMNS = ("clientOrderId", "orderId", "account", "strategy", "symbol", "side", "qty", "type",
            "price", "status", "filled", "avgPrice", "fills")


@dataclass
class Row:
    key: str
    clientOrderId: str = ""
    orderId: int | None = None
    permId: int | None = None
    account: str = ""
    strategy: str = ""
    symbol: str = ""
    side: str = ""
    quantity: float | None = None
    orderType: str = ""
    price: float | None = None
    status: str = ""
    filled: float = 0.0
    avgFillPrice: float | None = None
    fills: int = 0
    seq: int = 0
    note: str = ""

    def cells(self) -> tuple[str, ...]:
        return (self.clientOrderId or f"perm {self.permId or '-'}", _num(self.orderId),
                self.account, self.strategy or "_", self.symbol, self.side,
                _num(self.quantity), self.orderType, _num(self.price), self.status,
                _num(self.filled), _num(self.avgFillPrice), str(self.fills))


def row_key(event: OrderEvent | OrderRecord) -> str:
    """The order an event or a record is about: its clientOrderId, else TWS's permId."""
    if event.clientOrderId:
        return event.clientOrderId
    if event.permId:
        return f"perm-{event.permId}"
    return f"{event.account}.{event.orderId}"


class OrderBoard:
    """One row per order, and the last fills."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.fills: collections.deque[str] = collections.deque(maxlen=_FILLS)
        self.last_seq = 0
        self.desk = ""

    def seed(self, records: list[OrderRecord]) -> None:
        for record in records:
            row = self._row(row_key(record), record)
            row.seq = max(row.seq, record.seq)
            row.status, row.filled = record.status, record.filled
            row.avgFillPrice = record.avgFillPrice or row.avgFillPrice
            row.fills = max(row.fills, len(record.execIds))
            self._describe(row, record.contract, record.order or
                           (record.request or {}).get("order"))

    def apply(self, update: OrderUpdate) -> bool:
        """Fold one event in; False when the row had it already (from the journal's seed)."""
        event = update.event
        self.last_seq = max(self.last_seq, update.stream_seq)
        row = self._row(row_key(event), event)
        if event.seq and event.seq <= row.seq:
            return False
        row.seq = max(row.seq, event.seq)
        if event.type == "order":
            self._describe(row, event.contract, event.order)
        elif event.type == "status" and event.status:
            row.status = event.status
            row.filled = event.filled if event.filled is not None else row.filled
            row.avgFillPrice = event.avgFillPrice or row.avgFillPrice
            row.note = event.reason or row.note
        elif event.type == "exec" and event.execution:
            row.fills += 1
            self._describe(row, event.contract, None)
            e = event.execution
            stamp = time.strftime("%H:%M:%S", time.localtime(event.ts / 1e9)) if event.ts \
                else "--:--:--"
            self.fills.appendleft(f"{stamp}  {row.cells()[0]}  {row.symbol}  "
                                  f"{e.get('side', '')} {_num(e.get('shares'))} @ "
                                  f"{_num(e.get('price'))}")
        elif event.type == "error":
            row.note = f"{event.code}: {event.message}"
        return True

    def _row(self, key: str, source: OrderEvent | OrderRecord) -> Row:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = Row(key)
        row.clientOrderId = source.clientOrderId or row.clientOrderId
        row.orderId = source.orderId or row.orderId
        row.permId = source.permId or row.permId
        row.account = source.account or row.account
        row.strategy = source.strategy or row.strategy
        return row

    @staticmethod
    def _describe(row: Row, contract: dict[str, Any] | None,
                  order: dict[str, Any] | None) -> None:
        if contract:
            row.symbol = str(contract.get("localSymbol") or contract.get("symbol") or
                             contract.get("conId") or row.symbol)
        if order:
            row.side = str(order.get("action") or row.side)
            row.quantity = _float(order.get("totalQuantity")) or row.quantity
            row.orderType = str(order.get("orderType") or row.orderType)
            kind = row.orderType.upper()
            price = order.get("auxPrice") if kind.startswith("STP") and "LMT" not in kind \
                else order.get("lmtPrice")
            row.price = _float(price) if kind != "MKT" else None

    def lines(self, title: str = "") -> list[str]:
        live = sum(1 for r in self.rows.values() if r.status not in FINAL)
        head = f"{title}  {live} live / {len(self.rows)} shown"
        if self.desk:
            head += f"  desk {self.desk}"
        if self.last_seq:
            head += f"  stream seq {self.last_seq}"
        table = [_COLUMNS] + [r.cells() for r in self.rows.values()]
        widths = [min(max(len(row[i]) for row in table), 32) for i in range(len(_COLUMNS))]
        out = [head.strip(), ""]
        for cells in table:
            out.append("  ".join(c[:w].ljust(w) for c, w in zip(cells, widths, strict=True))
                       .rstrip())
        notes = [f"  {r.cells()[0]}: {r.note}" for r in self.rows.values() if r.note]
        if notes:
            out += ["", "notes", *notes]
        if self.fills:
            out += ["", "fills (newest first)", *(f"  {f}" for f in self.fills)]
        return out


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if abs(number) < 1e300 else None  # IB's unset values are not prices


def _num(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)


def describe(update: OrderUpdate) -> str:
    """One line per event, for output that is not a terminal."""
    e = update.event
    what = {"status": f"{e.status} filled={_num(e.filled)} avg={_num(e.avgFillPrice)}",
            "exec": f"{(e.execution or {}).get('side', '')} "
                    f"{_num((e.execution or {}).get('shares'))} @ "
                    f"{_num((e.execution or {}).get('price'))}",
            "commission": f"{_num((e.commissionReport or {}).get('commission'))} "
                          f"{(e.commissionReport or {}).get('currency', '')}",
            "error": f"{e.code} {e.message}",
            "order": f"{(e.order or {}).get('action', '')} "
                     f"{_num((e.order or {}).get('totalQuantity'))} "
                     f"{(e.order or {}).get('orderType', '')}"}.get(e.type, "")
    who = e.clientOrderId or f"perm-{e.permId}"
    flag = " reconciled" if e.reconciled else ""
    return f"{update.stream_seq} {update.subject} {e.type} {who} {what}{flag}".rstrip()


class _Screen:
    """The board redrawn in place on a terminal; one line per event elsewhere."""

    def __init__(self, out: TextIO, board: OrderBoard, title: str, table: bool) -> None:
        self.out, self.board, self.title, self.table = out, board, title, table
        self.drawn = 0.0
        self.started = False

    def update(self, update: OrderUpdate) -> None:
        if not self.board.apply(update):
            return
        if not self.table:
            self.out.write(describe(update) + "\n")
            self.out.flush()
        elif time.monotonic() - self.drawn >= 0.1:
            self.draw()

    def draw(self) -> None:
        if not self.table:  # the table once, then one line per event
            if not self.started:
                self.started = True
                lines = [*self.board.lines(self.title), "", "-- events --"]
                self.out.write("\n".join(lines) + "\n")
                self.out.flush()
            return
        self.drawn = time.monotonic()
        prefix = "" if self.started else f"{_CSI}?25l{_CSI}2J"
        self.started = True
        lines = self.board.lines(f"{_CSI}1m{self.title}{_CSI}0m")
        self.out.write(prefix + f"{_CSI}H" + "".join(f"{line}{_CSI}K\n" for line in lines) +
                       f"{_CSI}J")
        self.out.flush()

    def close(self) -> None:
        if self.started and self.table:
            self.out.write(f"{_CSI}?25h")
            self.out.flush()


async def watch_orders(nats_url: str, prefix: str, stop: asyncio.Event, *,
                       strategy: str | None = None, account: str | None = None,
                       once: bool = False, all: bool = False, out: TextIO | None = None,
                       err: TextIO | None = None,
                       nats_options: dict[str, Any] | None = None) -> int:
    """Run the view until ``stop`` is set (or once); the exit status is returned."""

    out = out or sys.stdout
    err = err or sys.stderr
    title = " ".join(["twsbus orders", prefix, f"strategy={strategy or '*'}",
                      f"account={account or '*'}"])
    try:
        # nats_options: credentials and the inbox prefix (twsbus.cli's --user, --creds...)
        from twsbus.health import connect

        nc = await connect(nats_url, timeout=3, keep_reconnecting=True, **(nats_options or {}))
    except Exception as exc:  # NatsUnreachable: one line saying why
        err.write(f"twsbus: {exc}\n")
        return 1
    board = OrderBoard()
    screen = _Screen(out, board, title, table=out.isatty() and not once)
    try:
        async with Client(nc, prefix) as bus:
            if once:
                board.seed(await bus.order_view(strategy=strategy, account=account, all=all))
                out.write("\n".join(board.lines(title)) + "\n")
                return 0
            async with bus.orders(strategy, account, since="new") as feed:
                board.seed(await bus.order_view(strategy=strategy, account=account, all=all))
                board.desk = await _desk_state(bus)
                state_sub = await nc.subscribe(bus.surface.subject("order_status"),
                                               cb=_desk_listener(board, screen))
                screen.draw()
                try:
                    await _follow(feed.next, screen, stop)
                finally:
                    with contextlib.suppress(Exception):
                        await state_sub.unsubscribe()
        return 0
    except (TwsBusError, ValueError) as exc:
        err.write(f"twsbus: orders: {exc}\n")
        return 1
    except BrokenPipeError:  # the reader went away (`| head`)
        return 0
    finally:
        screen.close()
        with contextlib.suppress(Exception):
            await nc.close()


async def _follow(next_update: Any, screen: _Screen, stop: asyncio.Event) -> None:
    """Show updates until ``stop``; redraw every second anyway (the desk state may change).
    The pending read is kept across redraws, never cancelled, so no update is lost."""
    stopping = asyncio.ensure_future(stop.wait())
    getting: asyncio.Future[OrderUpdate] | None = None
    try:
        while not stop.is_set():
            getting = getting or asyncio.ensure_future(next_update())
            done, _ = await asyncio.wait({getting, stopping}, timeout=1.0,
                                         return_when=asyncio.FIRST_COMPLETED)
            if getting not in done:
                screen.draw()
                continue
            try:
                update = getting.result()
            except StopAsyncIteration:
                return
            getting = None
            screen.update(update)
    finally:
        stopping.cancel()
        if getting is not None:
            getting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await getting


async def _desk_state(bus: Client) -> str:
    try:
        state = (await bus.status()).get("orders") or {}
    except TwsBusError:
        return ""
    return str(state.get("state", ""))


def _desk_listener(board: OrderBoard, screen: _Screen) -> Any:
    async def on_state(msg: Any) -> None:
        try:
            event = msgspec.json.decode(msg.data, type=OrderEvent)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        board.desk = event.status or board.desk
        screen.draw()

    return on_state
