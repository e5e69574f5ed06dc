"""The simulator: a TCP server speaking the TWS API, with its shared market, accounts and faults.

``Simulator`` is what ``twsbus sim`` runs and what tests embed. It owns the listening socket,
the client sessions, the request table they dispatch through (``handlers``), the instrument
universe, the deterministic market model, the order book, the request counters and the fault
switches (their types are in ``config``, below every layer that reads them). Faults are methods
here (``drop_all``, ``set_silent``, ``restart``, ``farm_status``) so the control endpoint and
in-process tests drive the same code. ``serve`` runs a simulator with its control endpoint
(``control``), which is handed the simulator and never imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

import msgspec

from twsbus.sim import codec, guard, requests
from twsbus.sim.accounts import Accounts
from twsbus.sim.config import ORDER_COUNTS, Faults, SimConfig, Stats
from twsbus.sim.control import ControlServer
from twsbus.sim.h_account import publish_change
from twsbus.sim.h_session import FARM_MESSAGES
from twsbus.sim.handlers import Handler, table
from twsbus.sim.market import Market
from twsbus.sim.orders import OrderBook
from twsbus.sim.session import ClientSession, SessionState
from twsbus.sim.universe import Universe

__all__ = ["Faults", "SimConfig", "Simulator", "Stats", "serve"]

log = logging.getLogger("twsbus.sim")


class Simulator:
    """``handlers`` is the request table (message id -> handler of the typed request); the full
    table (``handlers.table()``) unless a test or an embedder passes its own."""

    def __init__(self, config: SimConfig | None = None,
                 handlers: Mapping[int, Handler] | None = None) -> None:
        self.handlers: dict[int, guard.Guarded] = guard.install(
            table() if handlers is None else handlers)
        self.config: SimConfig = config or SimConfig()
        self.universe: Universe = Universe(extra=self.config.extra_instruments)
        self.market: Market = Market(self.universe, self.config.seed)
        self.stats: Stats = Stats()
        self.accounts: Accounts = Accounts(self.config.accounts, self.universe, self.market)
        self.accounts.on_change.append(partial(publish_change, self))
        self.orders: OrderBook = OrderBook(self.config, self.market, self.stats,
                                           self.ready_sessions, self.spawn, self.accounts)
        self.faults: Faults = Faults()
        self.sessions: set[ClientSession] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = self.config.port

    def __repr__(self) -> str:
        return f"<Simulator port={self.port} clients={len(self.sessions)}>"

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.max_version >= codec.PROTOBUF_FROM:
            # A schema's first import costs tens of milliseconds, which would otherwise delay
            # the first protobuf session's startApi answer.
            codec.warm_up()
            requests.warm_up()
        self._server = await asyncio.start_server(
            self._on_connect, self.config.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("TWS simulator listening on %s:%d", self.config.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.faults.refuse_connections:
            writer.close()
            return
        session = ClientSession(self, reader, writer, self.handlers)
        self.sessions.add(session)
        self.stats.connections += 1
        self.orders.on_connect()
        # Not tracked in _tasks: connection handlers end when drop_all closes their sockets.
        await session.run()

    def forget(self, session: ClientSession) -> None:
        self.sessions.discard(session)

    def ready_sessions(self) -> list[ClientSession]:
        return [s for s in self.sessions if s.state is SessionState.READY]

    def client_ids(self) -> set[int]:
        return {s.client_id for s in self.sessions if s.client_id is not None}

    # ---- faults ---------------------------------------------------------------------------

    def drop_all(self) -> int:
        """Close every client connection, as a crashing or restarting TWS does."""
        sessions = list(self.sessions)
        for session in sessions:
            session.close()
        return len(sessions)

    def set_silent(self, silent: bool) -> None:
        """A half-open link: keep sockets open but read and write nothing."""
        self.faults.silent = silent

    def farm_status(self, code: int, message: str | None = None) -> None:
        text = message or FARM_MESSAGES.get(code, f"farm status {code}")
        for session in self.ready_sessions():
            session.error(-1, code, text)

    async def restart(self, seconds: float) -> None:
        """Drop everyone and refuse connections for ``seconds`` (the nightly restart)."""
        self.faults.refuse_connections = True
        self.drop_all()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.faults.refuse_connections = False

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- observation ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        active: dict[str, dict[str, int]] = {}
        for session in self.sessions:
            for sub in session.subs.values():
                per_kind = active.setdefault(sub.kind, {})
                per_kind[str(sub.con_id)] = per_kind.get(str(sub.con_id), 0) + 1
        return {
            "port": self.port,
            "clients": [
                {"clientId": s.client_id, "version": s.version, "state": s.state.name,
                 "subscriptions": len(s.subs)}
                for s in self.sessions
            ],
            "subscriptions": active,
            "requests": dict(self.stats.requests),
            "opened": dict(self.stats.opened),
            "pacing_violations": self.stats.pacing_violations,
            "unhandled": self.stats.unhandled,
            "handler_errors": self.stats.handler_errors,
            "orders": {**dict.fromkeys(ORDER_COUNTS, 0), **self.stats.orders},
            "connections": self.stats.connections,
            "faults": msgspec.to_builtins(self.faults),
        }


async def serve(config: SimConfig, control_port: int | None = None) -> None:
    """Run a simulator (and its control endpoint) until cancelled."""
    sim = Simulator(config)
    await sim.start()
    control = None
    if control_port is not None:
        control = ControlServer(sim, config.host, control_port)
        await control.start()
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            if control is not None:
                await control.stop()
        await sim.stop()
