"""``twsbus sub``: a live terminal view of one subscription, or JSON lines when not on a terminal.

``watch`` connects to NATS, holds a lease through a ``Client`` for as long as it runs, and hands
each item to an output: ``JsonLines`` writes one JSON object per message (the message structs of
``events`` as JSON, so scripts and tests can read it), ``LiveTable`` folds the messages into a
table of fields (``Board``) and redraws it in place with plain ANSI escape codes, at most ten
times a second, with the message rate, the current seq and the stream's state.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import time
from typing import Any, TextIO

import msgspec

from twsbus.client.client import Client
from twsbus.client.contracts import to_contract
from twsbus.client.events import (
    AccountTime,
    AccountValue,
    Bar,
    Depth,
    Image,
    Portfolio,
    Position,
    StreamMessage,
    StreamStatus,
    TickByTick,
)
from twsbus.client.link import KIND_PARAMS
from twsbus.client.stream import Subscription
from twsbus.errors import TwsBusError
from twsbus.subjects import surface

_FIRST = ("bid", "bidSize", "ask", "askSize", "last", "lastSize", "volume", "high", "low", "open",
          "close", "time", "date", "dailyPnL", "unrealizedPnL", "realizedPnL", "pos", "value")
#: The kinds that take an account and no contract (their subject has no conId).
_ACCOUNT_KINDS = tuple(k for k, spec in surface().subscriptions.items() if not spec.needs_contract)
_CSI = "\x1b["


def parse_params(kind: str, items: list[str]) -> dict[str, Any]:
    """``k=v`` pairs, each value typed like the kind's default for ``k`` (str when unknown)."""
    defaults = KIND_PARAMS.get(kind, {})
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--param wants k=v, not {item!r}")
        default = defaults.get(name, "")
        value: Any = text
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{name} is true or false, not {text!r}")
            value = text.lower() in ("true", "1", "yes")
        elif isinstance(default, int):
            value = int(text)
        elif isinstance(default, float):
            value = float(text)
        params[name] = value
    return params


def open_subscription(bus: Client, kind: str, target: str | None, params: dict[str, Any],
                      ttl: float) -> Subscription:
    """``target`` is the contract (symbol, conId or JSON), or for kinds without one their first
    subject parameter: the account (account kinds), the scan code (scanner)."""
    if kind in _ACCOUNT_KINDS:
        if target:
            params = {surface().subscriptions[kind].key_params[0]: target, **params}
        return bus.subscribe(kind, None, ttl=ttl, **params)
    if not target:
        raise ValueError(f"{kind} needs a contract: a symbol (AAPL), a conId or JSON")
    return bus.subscribe(kind, to_contract(target), ttl=ttl, **params)


class Board:
    """The current fields of a stream, folded from its image and messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.fields: dict[str, Any] = {}
        self.changed: set[str] = set()
        self.bids: list[dict[str, Any]] = []
        self.asks: list[dict[str, Any]] = []

    def apply(self, msg: StreamMessage) -> None:
        data = msg.data
        if isinstance(msg, Image):
            self.fields = {}
            self._image(data)
            self.changed = set(self.fields)
            return
        before = dict(self.fields)
        if isinstance(msg, Depth):
            self.bids, self.asks = msg.bids, msg.asks
        elif isinstance(msg, (Bar, TickByTick)):
            self.fields = dict(data)
        elif isinstance(msg, AccountValue):
            key = f"{data.get('key')}:{data['currency']}" if data.get("currency") else \
                str(data.get("key"))
            self.fields[key] = data.get("val")
        elif isinstance(msg, (Portfolio, Position)):
            self._holding(data)
        elif isinstance(msg, AccountTime):
            self.fields["time"] = data.get("timeStamp")
        elif not isinstance(msg, StreamStatus):
            self.fields.update(data)
        self.changed = {k for k, v in self.fields.items() if before.get(k) != v}

    def _image(self, data: dict[str, Any]) -> None:
        if self.kind == "depth":
            self.bids, self.asks = list(data.get("bids", [])), list(data.get("asks", []))
        elif "bars" in data:
            self.fields = dict(data["bars"][-1]) if data["bars"] else {}
        elif "bar" in data:
            self.fields = dict(data["bar"])
        elif self.kind == "tbt":
            self.fields = dict(data.get("last") or {})
        elif self.kind in ("account", "positions"):
            self.fields = dict(data.get("values", {}))
            if "time" in data:
                self.fields["time"] = data["time"]
            for holding in {**data.get("portfolio", {}), **data.get("positions", {})}.values():
                self._holding(holding)
        else:
            self.fields = dict(data)

    def _holding(self, data: dict[str, Any]) -> None:
        contract = data.get("contract") or {}
        name = f"{contract.get('symbol', '?')} ({contract.get('conId', '?')})"
        size = data.get("position")
        price = data.get("marketPrice", data.get("avgCost"))
        self.fields[name] = f"{size} @ {price}" + (
            f" = {data['marketValue']}" if "marketValue" in data else "")

    def rows(self) -> list[tuple[str, str, bool]]:
        if self.kind == "depth":
            out = [("", f"{'size':>8} {'bid':>10} | {'ask':<10} {'size':<8}", False)]
            for i in range(max(len(self.bids), len(self.asks))):
                bid = self.bids[i] if i < len(self.bids) else {}
                ask = self.asks[i] if i < len(self.asks) else {}
                out.append((str(i), f"{_fmt(bid.get('size', '')):>8} "
                            f"{_fmt(bid.get('price', '')):>10} | "
                            f"{_fmt(ask.get('price', '')):<10} {_fmt(ask.get('size', '')):<8}",
                            False))
            return out
        names = [k for k in _FIRST if k in self.fields]
        names += sorted(k for k in self.fields if k not in _FIRST)
        return [(k, _fmt(self.fields[k]), k in self.changed) for k in names]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, (dict, list)):
        text = msgspec.json.encode(value).decode()
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value)


class JsonLines:
    """One JSON object per message, flushed at once."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def show(self, sub: Subscription, msg: StreamMessage) -> None:
        self.out.write(msgspec.json.encode(msg).decode() + "\n")
        self.out.flush()

    def tick(self, sub: Subscription) -> None:
        pass

    def close(self) -> None:
        pass


class LiveTable:
    """The board redrawn in place: cursor home, each line cleared to its end, the rest cleared."""

    def __init__(self, out: TextIO, kind: str) -> None:
        self.out = out
        self.board = Board(kind)
        self.arrivals: collections.deque[float] = collections.deque()
        self.drawn = 0.0
        self.started = False

    def show(self, sub: Subscription, msg: StreamMessage) -> None:
        self.board.apply(msg)
        self.arrivals.append(time.monotonic())
        if time.monotonic() - self.drawn >= 0.1:
            self.draw(sub)

    def tick(self, sub: Subscription) -> None:
        self.draw(sub)

    def rate(self) -> float:
        now = time.monotonic()
        while self.arrivals and self.arrivals[0] < now - 2.0:
            self.arrivals.popleft()
        return len(self.arrivals) / 2.0

    def draw(self, sub: Subscription) -> None:
        self.drawn = time.monotonic()
        color = {"ok": "32", "stale": "33", "closed": "31"}.get(sub.health, "0")
        reason = f" ({sub.reason})" if sub.reason and sub.health != "ok" else ""
        lines = [
            f"{_CSI}1m{sub.subject or sub.kind}{_CSI}0m  seq {sub.seq}  "
            f"{self.rate():.1f} msg/s  state {_CSI}{color}m{sub.health}{_CSI}0m{reason}",
            f"lease {sub.lease or '-'} ({sub.state.value})  gaps {sub.gaps}  dropped "
            f"{sub.dropped}  resubscribed {sub.resubscribes}  epoch {sub.epoch or '-'}",
            "",
        ]
        rows = self.board.rows()
        width = min(max((len(name) for name, _, _ in rows), default=4), 28)
        for name, value, changed in rows:
            shown = f"{_CSI}1m{value}{_CSI}0m" if changed else value
            lines.append(f"  {name:<{width}}  {shown}")
        prefix = "" if self.started else f"{_CSI}?25l{_CSI}2J"
        self.started = True
        self.out.write(prefix + f"{_CSI}H" + "".join(f"{line}{_CSI}K\n" for line in lines) +
                       f"{_CSI}J")
        self.out.flush()

    def close(self) -> None:
        if self.started:
            self.out.write(f"{_CSI}?25h")
            self.out.flush()


async def watch(nats_url: str, prefix: str, kind: str, target: str | None,
                params: dict[str, Any], stop: asyncio.Event, *, ttl: float = 30.0,
                json_lines: bool | None = None, out: TextIO | None = None,
                err: TextIO | None = None, nats_options: dict[str, Any] | None = None) -> int:
    """Run the view until ``stop`` is set or the stream ends; the exit status is returned."""

    out = out or sys.stdout
    err = err or sys.stderr
    as_json = (not out.isatty()) if json_lines is None else json_lines
    view: JsonLines | LiveTable = JsonLines(out) if as_json else LiveTable(out, kind)
    try:
        # nats_options: credentials and the inbox prefix (twsbus.cli's --user, --creds...)
        from twsbus.health import connect

        nc = await connect(nats_url, timeout=3, keep_reconnecting=True, **(nats_options or {}))
    except Exception as exc:  # NatsUnreachable: one line saying why
        err.write(f"twsbus: {exc}\n")
        return 1
    status = 0
    try:
        async with Client(nc, prefix, ttl=ttl) as bus:
            sub = open_subscription(bus, kind, target, params, ttl)
            async with sub:
                status = await _pump(sub, view, stop)
    except (TwsBusError, ValueError) as exc:
        err.write(f"twsbus: {kind} {target or ''}: {exc}\n")
        status = 1
    finally:
        view.close()
        with contextlib.suppress(Exception):
            await nc.close()
    return status


async def _pump(sub: Subscription, view: JsonLines | LiveTable, stop: asyncio.Event) -> int:
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            getting = asyncio.ensure_future(sub.next())
            done, _ = await asyncio.wait({getting, stopping}, timeout=1.0,
                                         return_when=asyncio.FIRST_COMPLETED)
            if getting not in done:
                getting.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await getting
                view.tick(sub)
                continue
            try:
                msg = getting.result()
            except StopAsyncIteration:
                return 0
            try:
                view.show(sub, msg)
            except BrokenPipeError:  # the reader went away (`| head`): stop and release
                return 0
        return 0
    finally:
        stopping.cancel()
