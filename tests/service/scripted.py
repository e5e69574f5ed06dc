"""A scripted upstream and a fake clock: the service's rooms driven in-process, no sockets.

``ScriptedUpstream`` implements ``twsbus.service.upstream.Upstream``: it records every call,
and the test answers as TWS would by routing events (``emit``). ``FakeClock`` moves only when the
test says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twsbus.errors import NotConnected
from twsbus.service.router import Router
from twsbus.tws.callbacks import Event
from twsbus.tws.pacing import Ticket


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class State:
    value: str


@dataclass
class ScriptedUpstream:
    router: Router = field(default_factory=lambda: Router(lambda event: None))
    accounts: list[str] = field(default_factory=lambda: ["DU1"])
    server_version: int | None = 200
    connected: bool = True
    #: What ``withdraw`` answers: True = the request was still queued (never sent).
    still_queued: bool = False
    calls: list[tuple[str, int | None, dict[str, Any]]] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    _next: int = 1

    @property
    def ready(self) -> bool:
        return self.connected

    @property
    def state(self) -> State:
        return State("ready" if self.connected else "disconnected")

    def next_id(self) -> int:
        value, self._next = self._next, self._next + 1
        return value

    def reserve_ids(self, highest_used: int) -> None:
        self._next = max(self._next, highest_used + 1)

    def call(self, method: str, key: int | None = None,
             args: dict[str, Any] | None = None) -> Ticket:
        if not self.connected:
            raise NotConnected("TWS is disconnected")
        self.calls.append((method, key, dict(args or {})))
        return Ticket(method, ())

    def withdraw(self, ticket: Ticket) -> bool:
        if self.still_queued:
            self.withdrawn.append(ticket.method)
        return self.still_queued

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.calls]

    def last(self, method: str) -> tuple[int | None, dict[str, Any]]:
        for name, key, args in reversed(self.calls):
            if name == method:
                return key, args
        raise AssertionError(f"{method} was never called: {self.methods()}")

    def emit(self, name: str, req_id: int | None = None, **data: Any) -> None:
        self.router.route(Event(name, req_id, data))


class Recorder:
    """A publisher ``Out``: what would have gone to NATS."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, subject: str, payload: bytes) -> None:
        self.published.append((subject, payload))

    def flush(self) -> None:
        pass

    def on(self, subject: str) -> list[dict[str, Any]]:
        import json

        return [json.loads(p) for s, p in self.published if s == subject]
