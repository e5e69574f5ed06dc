"""Shared by the client tests (named apart from conftest: tests/daemon has a conftest too)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

LINGER = 0.5
DAEMON_ENV = {"TWSBUS_LINGER": str(LINGER)}


@dataclass
class ClientStack:
    nats: NatsServer
    sim: SimulatorThread
    daemon: DaemonProcess

    def subscriptions(self) -> list[dict[str, Any]]:
        status = self.daemon.status()
        assert status is not None, "the daemon does not answer tws.req.status"
        subs: list[dict[str, Any]] = status["subscriptions"]
        return subs

    def leases_on(self, subject: str) -> int | None:
        """Leases the daemon counts on ``subject`` (None: no stream there at all)."""
        for sub in self.subscriptions():
            if sub["subject"] == subject:
                return int(sub["leases"])
        return None

    def sim_subscriptions(self, kind: str) -> dict[str, int]:
        subs: dict[str, int] = self.sim.control.state()["subscriptions"].get(kind, {})
        return subs



async def eventually(check: Callable[[], Any], timeout: float = 10.0,
                     interval: float = 0.1) -> Any:
    """Poll ``check`` (run in a thread: it may block) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not true after {timeout}s; last value {last!r}")
