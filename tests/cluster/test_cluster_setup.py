"""A NATS error while the daemon sets up on a fresh connection ends that round, not the daemon.

On a cluster, a member that dies leaves JetStream without leaders for seconds (4 to 9 s measured
in test_cluster.py), and a daemon that connects meanwhile (a start, a restart, a connection its
watchdog replaced) has its order journal's requests time out: `$JS.API.CONSUMER.CREATE` from
``Journal.load``. That exception used to leave ``NatsLink.run`` and end the process with exit 1.
``on_up`` is driven here with the same ``nats.errors.TimeoutError``, deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from twsbus.service.natslink import NatsLink
from twsbus.testing import NatsServer

PING = "test.ping"


class Twin(Exception):
    """Stands in for the daemon's TwinFound: not a NATS error, so it must still end ``run``."""


class FailingSetUp:
    def __init__(self, url: str, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.ups = 0
        self.downs = 0
        self.link = NatsLink(lambda: {"servers": [url], "max_reconnect_attempts": -1},
                             PING, on_up=self.on_up, on_down=self.on_down,
                             interval=0.1, timeout=0.2, failures=2, retry=0.1)

    async def on_up(self, nc: Client) -> None:
        self.ups += 1
        if self.ups <= self.failures:
            raise self.error

        async def answer(msg: Msg) -> None:
            await msg.respond(b"{}")

        await nc.subscribe(PING, cb=answer)

    def on_down(self) -> None:
        self.downs += 1


async def test_a_nats_timeout_while_setting_up_is_retried_on_a_fresh_connection() -> None:
    with NatsServer(jetstream=False) as ns:
        harness = FailingSetUp(ns.url, failures=2, error=nats.errors.TimeoutError())
        task = asyncio.create_task(harness.link.run())
        try:
            up = asyncio.create_task(harness.link.up.wait())
            await asyncio.wait({task, up}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            up.cancel()
            assert not task.done(), task.exception()
            assert harness.link.up.is_set()
            assert harness.ups == 3 and harness.downs == 2
            assert "TimeoutError" in (harness.link.last_error or "")
            nc = harness.link.nc
            assert nc is not None and nc.is_connected
            await nc.request(PING, b"{}", timeout=5)  # serving on the third connection
        finally:
            await harness.link.close()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def test_an_error_that_is_not_nats_still_ends_run() -> None:
    with NatsServer(jetstream=False) as ns:
        harness = FailingSetUp(ns.url, failures=1, error=Twin("another daemon serves tws.*"))
        with pytest.raises(Twin):
            await asyncio.wait_for(harness.link.run(), 30)
        assert harness.ups == 1 and harness.downs == 1
