"""What a simulator is set up with and what it counts: its settings (``SimConfig``), its fault
switches (``Faults``) and its request and order counters (``Stats``).

Plain data below the server that owns them: the models (order book, matcher) read the settings
and bump the counters, and the control endpoint reads and rewrites all three, without any of
them importing ``server``.
"""

from __future__ import annotations

from collections import Counter

import msgspec

from twsbus.sim.codec import default_max_version
from twsbus.sim.msgids import request_name


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
