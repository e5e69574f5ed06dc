"""Fixtures that users and our own tests share: a real nats-server and a simulator on free ports.

``NatsServer`` starts the ``nats-server`` binary on a free loopback port, with JetStream (the
order stream and journal need it) unless asked not to, and can stop and restart it on the same
port and store, for reconnect tests. ``SimulatorThread`` runs the TWS simulator and
its control endpoint on a private event loop in a background thread, so blocking code (IB's own
``EClient``) and asyncio code can both talk to it. Neither depends on a NATS server that may
already listen on 4222. ``NatsCluster`` clusters several ``NatsServer``s on loopback with routes
and JetStream, and kills, freezes or restarts one member, for failover tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from twsbus.testing.cluster import NatsCluster, nats_cluster
from twsbus.testing.daemon import DaemonProcess
from twsbus.testing.nats import (
    NatsServer,
    free_port,
    nats_server,
    nats_server_binary,
    wait_for_port,
)
from twsbus.testing.sim import SimulatorThread, simulator

__all__ = [
    "DaemonProcess", "NatsCluster", "NatsServer", "SimulatorThread", "Stack", "free_port",
    "nats_cluster", "nats_server", "nats_server_binary", "simulator", "wait_for_port",
]


@dataclass
class Stack:
    """The whole job: nats-server, the simulator and ``twsbus run``, started in that order and
    stopped in reverse (``Stack.running(...)``). Tests that need the daemon as a process use this
    one definition; each configures it (daemon settings, simulator options, prefix)."""

    nats: NatsServer
    sim: SimulatorThread
    daemon: DaemonProcess

    @classmethod
    @contextlib.contextmanager
    def running(cls, *, daemon_env: dict[str, str] | None = None, prefix: str = "tws",
                client_id: int = 0, nats: dict[str, Any] | None = None,
                **sim_options: Any) -> Iterator[Stack]:
        with NatsServer(**(nats or {})) as server, SimulatorThread(**sim_options) as sim, \
                DaemonProcess(server.url, sim.port, env=daemon_env, prefix=prefix,
                              client_id=client_id) as daemon:
            yield cls(server, sim, daemon)

    @property
    def url(self) -> str:
        return self.nats.url

    def status(self) -> dict[str, Any]:
        """The daemon's ``tws.req.status`` (an AssertionError when it does not answer)."""
        status = self.daemon.status()
        assert status is not None, "the daemon does not answer tws.req.status"
        return status

    def subscriptions(self) -> list[dict[str, Any]]:
        subs: list[dict[str, Any]] = self.status()["subscriptions"]
        return subs

    def leases_on(self, subject: str) -> int | None:
        """Leases the daemon counts on ``subject`` (None: no stream there at all)."""
        for sub in self.subscriptions():
            if sub["subject"] == subject:
                return int(sub["leases"])
        return None

    def sim_subscriptions(self, kind: str) -> dict[str, int]:
        """The simulator's live TWS subscriptions of ``kind`` by conId."""
        subs: dict[str, int] = self.sim.control.state()["subscriptions"].get(kind, {})
        return subs
