"""Fixtures for daemon tests: a real nats-server, the simulator, and `twsbus run` as a process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from daemonstack import Stack
from nats.aio.client import Client


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack.running(tick_interval=0.05) as stack:
        yield stack


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[Client]:
    client = await nats.connect(stack.nats.url)
    yield client
    await client.close()


@pytest.fixture
def clean_faults(stack: Stack) -> Iterator[None]:
    """The simulator's fault switches off before and after the test (the stack is shared)."""
    stack.sim.control.post("/faults", ignore=[], delay={})
    yield
    stack.sim.control.post("/faults", ignore=[], delay={})
