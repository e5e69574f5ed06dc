"""The processes a daemon test runs against (named apart from conftest)."""

from __future__ import annotations

from dataclasses import dataclass

from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread


@dataclass
class Stack:
    nats: NatsServer
    sim: SimulatorThread
    daemon: DaemonProcess
