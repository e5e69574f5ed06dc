"""Fixtures for client tests: a real nats-server, the simulator, and `twsbus run` as a process.

The module-scoped stack lingers only 0.5 s, so tests can watch a released lease cancel its TWS
request. Tests that restart the daemon build their own stack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from clientstack import DAEMON_ENV, ClientStack
from nats.aio.client import Client as NATS

from twsbus import Client


@pytest.fixture(scope="module")
def stack() -> Iterator[ClientStack]:
    with ClientStack.running(daemon_env=DAEMON_ENV, tick_interval=0.05) as stack:
        yield stack


@pytest.fixture
async def nc(stack: ClientStack) -> AsyncIterator[NATS]:
    client = await nats.connect(stack.nats.url)
    yield client
    await client.close()


@pytest.fixture
async def bus(nc: NATS) -> AsyncIterator[Client]:
    async with Client(nc) as client:
        yield client


