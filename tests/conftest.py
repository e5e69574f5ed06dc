from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from twsbus.testing import NatsServer, SimulatorThread


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(tick_interval=0.05) as s:
        yield s


@pytest.fixture
def ib(sim: SimulatorThread) -> Iterator[object]:
    from ibrecorder import IBClient

    client = IBClient().start(sim.port)
    try:
        yield client
    finally:
        client.stop()


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server
