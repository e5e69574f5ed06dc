"""The simulator's control endpoint: a small HTTP/1.1 JSON API for tests and operators.

Another process (a test, a benchmark, ``curl``) reads the simulator's state and throws its fault
switches here. Routes:

=========================  ================================================================
``GET  /state``            clients, active subscriptions by kind and conId, requests received
                           per message type, pacing violations, fault switches
``POST /reset``            zero the counters
``POST /drop``             close every client connection
``POST /silent``           ``{"on": true}``: half-open link (no reads, no writes) until off
``POST /farm``             ``{"code": 2103}``: send a farm / connectivity status message
``POST /restart``          ``{"seconds": 5}``: drop everyone, refuse connections for N seconds
``POST /config``           ``{"enforce_pacing": false, "line_limit": 5, ...}``: change settings
                           (``hist_*``: IB's historical-data limits, see ``histrules``)
``POST /faults``           ``{"ignore": ["REQ_HISTORICAL_DATA"], "delay": {"REQ_CONTRACT_DATA":
                           0.5}}``: leave requests unanswered, or answer them late
``POST /blast``            ``{"conId": 265598, "count": 100000}``: send N prebuilt ticks to
                           every market-data subscriber of conId as fast as sockets take them
``POST /pace``             ``{"conIds": [...], "rate": 10000, "seconds": 5}``: send ticks at a
                           steady rate round-robin over conIds, each a tickPrice plus a
                           tickString (type 45) carrying the send time in nanoseconds
``GET  /pace``             progress of the running (or last) paced send
``GET  /orders``           every order the book took, oldest first: ``{"orders": [{permId,
                           clientId, orderId, manual, account, conId, symbol, secType,
                           action, totalQuantity, orderType, lmtPrice, auxPrice, tif,
                           orderRef, parentId, status, completedStatus, filled, remaining,
                           avgFillPrice, places, executions: [{execId, shares, price, time,
                           cumQty, avgPrice, commission}]}], "refused": [{clientId,
                           orderId, code, message, time}]}``; ``places`` counts the
                           placeOrder messages that named the order (place + modifies)
``POST /orders/cancel``    ``{"permId": N}`` or ``{"orderId": N, "clientId": C}``: cancel in
                           TWS (status Cancelled + error 202 to whoever follows the order);
                           answers the order's row
``POST /orders/reject``    ``{"permId": N, "reason": "..."}``: IB rejects a working order
                           (error 201 "Order rejected - reason:...", then status Cancelled);
                           answers the order's row
``POST /orders/manual``    ``{"contract": {"conId": 265598} or {"symbol": "AAPL", "secType":
                           "STK", ...}, "action": "BUY", "totalQuantity": 10, "orderType":
                           "LMT", "lmtPrice": 1.0, "auxPrice", "tif", "orderRef", "account"
                           (optional)}``: an order entered by hand in TWS (clientId 0, order
                           id 0, or a negative id when a clientId-0 session is bound with
                           reqAutoOpenOrders(true)); answers ``{"permId": P, "orderId": N}``
``POST /orders/fill``      ``{"permId": N (or orderId + clientId), "price": p, "quantity":
                           q}`` (price and quantity optional: the limit or the touch, all
                           that remains): fill a live order now, whatever the quote; answers
                           the execution's row with the order's row under ``"order"``
=========================  ================================================================

``POST /config`` also takes the order switches ``{"partial_fills": false}`` (orders larger
than the touch fill in one execution) and ``{"rollback_next_valid_id": true}`` (each new
connection is told nextValidId 1). ``GET /state`` counts orders under ``"orders"`` (placed,
modified, cancelled, rejected, duplicate_id_errors, manual, executions), handler failures
under ``"handler_errors"``, and the historical-data limits under ``"historical"`` (the ``hist_*``
settings, ``accepted``, ``open``, ``peak_open``, ``window_used``, ``violations`` and
``by_rule``: window, identical, burst, open).

Every answer is JSON; errors are ``{"error": "..."}`` with status 400, or 404 for an unknown
route or order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from twsbus.sim import histrules
from twsbus.sim.config import Faults, SimConfig
from twsbus.sim.loadgen import PACE_STATE, blast, pace
from twsbus.sim.orders import UnknownOrder
from twsbus.sim.requests.order_text import order_defaults
from twsbus.sim.wire import UNSET_DOUBLE

if TYPE_CHECKING:
    from twsbus.sim.server import Simulator

log = logging.getLogger("twsbus.sim")

Route = Callable[["Simulator", dict[str, Any]], Awaitable[Any] | Any]


class ControlServer:
    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("simulator control endpoint on http://%s:%d/state", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").split()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            status, payload = await self._route(request_line, body)
        except Exception as exc:  # a broken request must not take the simulator down
            status, payload = 400, {"error": str(exc)}
        data = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode() + data
        )
        try:
            await writer.drain()
        finally:
            writer.close()

    async def _route(self, request_line: list[str], body: bytes) -> tuple[int, Any]:
        if len(request_line) < 2:
            return 400, {"error": "bad request line"}
        method, path = request_line[0], request_line[1]
        route = ROUTES.get((method, path))
        if route is None:
            return 404, {"error": f"no route {method} {path}"}
        args = json.loads(body) if body.strip() else {}
        if not isinstance(args, dict):
            return 400, {"error": "body must be a JSON object"}
        try:
            result = route(self.sim, args)
            if asyncio.iscoroutine(result):
                result = await result
        except UnknownOrder as exc:
            return 404, {"error": str(exc)}
        return 200, result if result is not None else {"ok": True}


def _config(sim: Simulator, args: dict[str, Any]) -> Any:
    hist = {k: v for k, v in args.items() if k.startswith("hist_")}
    merged = msgspec.to_builtins(sim.config) | {k: v for k, v in args.items() if k not in hist}
    new = msgspec.convert(merged, SimConfig)
    for name in SimConfig.__struct_fields__:  # in place: the models hold this config
        setattr(sim.config, name, getattr(new, name))
    return msgspec.to_builtins(sim.config) | histrules.configure(sim, **hist)


def _state(sim: Simulator, args: dict[str, Any]) -> Any:
    return sim.state() | {"historical": histrules.state(sim)}


def _reset(sim: Simulator, args: dict[str, Any]) -> Any:
    sim.stats.reset()
    histrules.book(sim).reset()


def _faults(sim: Simulator, args: dict[str, Any]) -> Any:
    merged = msgspec.to_builtins(sim.faults) | args
    sim.faults = msgspec.convert(merged, Faults)
    return msgspec.to_builtins(sim.faults)


def _restart(sim: Simulator, args: dict[str, Any]) -> Any:
    seconds = float(args.get("seconds", 5))
    sim.spawn(sim.restart(seconds))
    return {"restarting": seconds}


def _blast(sim: Simulator, args: dict[str, Any]) -> Any:
    # kind "ticks" (tickPrice frames to market-data subscribers) or "tbt" (tick-by-tick trades)
    return blast(sim, int(args["conId"]), int(args.get("count", 100_000)),
                 str(args.get("kind", "ticks")))


def _pace(sim: Simulator, args: dict[str, Any]) -> Any:
    con_ids = [int(c) for c in args.get("conIds", [])]
    return pace(sim, con_ids, float(args.get("rate", 1000)), float(args.get("seconds", 5)))


def _pace_state(sim: Simulator, args: dict[str, Any]) -> Any:
    return dict(PACE_STATE.get(sim, {"running": False}))


def _cancel_order(sim: Simulator, args: dict[str, Any]) -> Any:
    o = sim.orders.find(args)
    sim.orders.cancel_in_tws(o)
    return o.row()


def _reject_order(sim: Simulator, args: dict[str, Any]) -> Any:
    o = sim.orders.find(args)
    sim.orders.reject(o, str(args.get("reason", "")))
    return o.row()


def _fill_order(sim: Simulator, args: dict[str, Any]) -> Any:
    o = sim.orders.find(args)
    price = args.get("price")
    quantity = args.get("quantity")
    fill = sim.orders.force_fill(o, None if price is None else float(price),
                                 None if quantity is None else Decimal(str(quantity)))
    return {**fill.row(), "order": o.row()}


def _manual_order(sim: Simulator, args: dict[str, Any]) -> Any:
    """An order "entered by hand in TWS", described with ibapi's Order field names."""
    spec = dict(args.get("contract") or {})
    found = sim.universe.find(spec)
    if len(found) != 1:
        raise ValueError(f"contract {spec} names {len(found)} instruments, not one")
    p = order_defaults()
    p.update(exchange=str(spec.get("exchange", "")), transmit=True,
             action=str(args.get("action", "")),
             totalQuantity=Decimal(str(args.get("totalQuantity", 0))),
             orderType=str(args.get("orderType", "")),
             tif=str(args.get("tif", "DAY")), orderRef=str(args.get("orderRef", "")),
             account=str(args.get("account", "")))
    for name in ("lmtPrice", "auxPrice"):
        p[name] = float(args[name]) if args.get(name) is not None else UNSET_DOUBLE
    o = sim.orders.place_manual(found[0], p)
    return {"permId": o.perm_id, "orderId": o.order_id}


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/state"): _state,
    ("POST", "/reset"): _reset,
    ("POST", "/drop"): lambda sim, _: {"dropped": sim.drop_all()},
    ("POST", "/silent"): lambda sim, a: sim.set_silent(bool(a.get("on", True))),
    ("POST", "/farm"): lambda sim, a: sim.farm_status(int(a["code"]), a.get("message")),
    ("POST", "/restart"): _restart,
    ("POST", "/config"): _config,
    ("POST", "/faults"): _faults,
    ("POST", "/blast"): _blast,
    ("POST", "/pace"): _pace,
    ("GET", "/pace"): _pace_state,
    ("GET", "/orders"): lambda sim, _: sim.orders.history(),
    ("POST", "/orders/cancel"): _cancel_order,
    ("POST", "/orders/reject"): _reject_order,
    ("POST", "/orders/manual"): _manual_order,
    ("POST", "/orders/fill"): _fill_order,
}


class ControlClient:
    """A blocking client for the control endpoint (tests and benchmarks use it)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.read().decode()}") from exc

    def state(self) -> dict[str, Any]:
        return self.call("GET", "/state")

    def post(self, path: str, **body: Any) -> Any:
        return self.call("POST", path, body)
