"""The simulator: a TCP server speaking the TWS API, with its shared market, accounts and faults.

``Simulator`` is what ``twsbus sim`` runs and what tests embed. It owns the listening socket,
the client sessions, the request table they dispatch through (``handlers``), the instrument
universe, the deterministic market model, the order book,
the request counters and the fault switches. Faults are methods here (``drop_all``,
``set_silent``, ``restart``, ``farm_status``) so the control endpoint and in-process tests drive
the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec

from twsbus.sim.codec import PROTOBUF_FROM, default_max_version, warm_up
from twsbus.sim.session import ClientSession, SessionState, request_name

if TYPE_CHECKING:
    from twsbus.sim.handlers import Handler

log = logging.getLogger("twsbus.sim")

FARM_MESSAGES = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2107: "HMDS data farm connection is inactive but should be available upon demand.ushmds",
    2108: "Market data farm connection is inactive but should be available upon demand.usfarm",
    2158: "Sec-def data farm connection is OK:secdefnj",
}


class SimConfig(msgspec.Struct, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 7497
    seed: int = 1
    #: The highest server version negotiated (at most 225). 200 is the last text-protocol version;
    #: from 201 message ids are binary and messages switch to protobuf family by family. The
    #: default is 200, or ``TWSBUS_SIM_MAX_VERSION`` from the environment.
    max_version: int = msgspec.field(default_factory=default_max_version)
    min_version: int = 100
    accounts: list[str] = msgspec.field(default_factory=lambda: ["DU1234567"])
    #: Seconds between streaming updates per subscription (market data, tick-by-tick, depth).
    tick_interval: float = 0.25
    line_limit: int = 100
    depth_limit: int = 3
    pacing_limit: int = 50
    enforce_pacing: bool = True
    #: Send the farm-OK messages TWS sends after startApi.
    farm_messages_on_connect: bool = True
    #: Synthetic stocks SYN0001.. (conIds 900_000_001..) added to the universe (benchmarks).
    extra_instruments: int = 0
    #: An order larger than the size at the touch fills in several executions, one matcher
    #: pass at a time; off, every order fills whole at the touch.
    partial_fills: bool = True
    #: TWS's log-in time zone, in which it prints execution and completion times; "UTC" gives
    #: IB's UTC form, yyyymmdd-hh:mm:ss (with a Z from server version 214).
    time_zone: str = "US/Eastern"
    #: Every new connection resets nextValidId to 1 (a gateway that lost its settings); the
    #: order ids already used stay used (see orders.py).
    rollback_next_valid_id: bool = False


class Faults(msgspec.Struct, kw_only=True):
    silent: bool = False
    refuse_connections: bool = False
    #: Request names (FromClient names, e.g. "REQ_HISTORICAL_DATA") received but never answered.
    ignore: list[str] = msgspec.field(default_factory=list)
    #: Request name -> seconds to wait before answering (other requests are not held up).
    delay: dict[str, float] = msgspec.field(default_factory=dict)


#: The order counters ``GET /state`` always shows (see ``OrderBook`` for what each counts).
ORDER_COUNTS = ("placed", "modified", "cancelled", "rejected", "duplicate_id_errors", "manual",
                "executions")


class Stats:
    """Counters other processes read through the control endpoint."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.opened: Counter[str] = Counter()
        self.orders: Counter[str] = Counter()
        self.pacing_violations = 0
        self.unhandled = 0
        self.handler_errors = 0
        self.connections = 0

    def received(self, msg_id: int) -> None:
        self.requests[request_name(msg_id)] += 1

    def subscribed(self, kind: str) -> None:
        self.opened[kind] += 1

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


class Simulator:
    """``handlers`` is the request table (message id -> handler of the typed request); the full
    table (``handlers.table()``) unless a test or an embedder passes its own."""

    def __init__(self, config: SimConfig | None = None,
                 handlers: Mapping[int, Handler] | None = None) -> None:
        from twsbus.sim import guard
        from twsbus.sim.accounts import Accounts
        from twsbus.sim.h_account import publish_change
        from twsbus.sim.handlers import table
        from twsbus.sim.market import Market
        from twsbus.sim.orders import OrderBook
        from twsbus.sim.universe import Universe

        self.handlers = guard.install(dict(table() if handlers is None else handlers))
        self.config = config or SimConfig()
        self.universe = Universe(extra=self.config.extra_instruments)
        self.market = Market(self.universe, self.config.seed)
        self.stats = Stats()
        self.accounts = Accounts(self.config.accounts, self.universe, self.market)
        self.accounts.on_change.append(partial(publish_change, self))
        self.orders = OrderBook(self.config, self.market, self.stats, self.ready_sessions,
                                self.spawn, self.accounts)
        self.faults = Faults()
        self.sessions: set[ClientSession] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = self.config.port

    def __repr__(self) -> str:
        return f"<Simulator port={self.port} clients={len(self.sessions)}>"

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.max_version >= PROTOBUF_FROM:
            warm_up()
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
    from twsbus.sim.control import ControlServer

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
