"""The daemon cannot go deaf on NATS: a closed or deaf connection is replaced, a hopeless one
ends the process for its supervisor, SIGTERM works while NATS is down, and a second daemon on
the same prefix refuses to start."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from waiting import wait_until

from twsbus.service.natslink import LinkFailed, NatsLink
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread, free_port

PING = "test.ping"


class Twin(Exception):
    """Stands in for the daemon's TwinFound: not a NATS error, so it must still end ``run``."""


class Harness:
    """A NatsLink whose ``on_up`` serves the ping subject from the ``serve_from``-th
    connection on (0: never), after raising ``error`` on the first ``failures`` ones."""

    def __init__(self, url: str, serve_from: int = 1, failures: int = 0,
                 error: Exception | None = None) -> None:
        self.serve_from = serve_from
        self.failures = failures
        self.error = error
        self.ups = 0
        self.downs = 0
        self.link = NatsLink(lambda: {"servers": [url], "max_reconnect_attempts": -1},
                             PING, on_up=self.on_up, on_down=self.on_down,
                             interval=0.1, timeout=0.2, failures=2, retry=0.1)

    async def on_up(self, nc: Client) -> None:
        self.ups += 1
        if self.ups <= self.failures and self.error is not None:
            raise self.error
        if self.serve_from and self.ups >= self.serve_from:
            async def answer(msg: Msg) -> None:
                await msg.respond(b"{}")

            await nc.subscribe(PING, cb=answer)

    def on_down(self) -> None:
        self.downs += 1


@contextlib.asynccontextmanager
async def running(harness: Harness) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(harness.link.run())
    try:
        yield task
    finally:
        await harness.link.close()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def _answered(url: str) -> bool:
    nc = await nats.connect(url)
    try:
        await nc.request(PING, b"", timeout=1)
        return True
    except Exception:
        return False
    finally:
        await nc.close()


async def test_a_connection_nats_py_closed_for_good_is_replaced() -> None:
    with NatsServer() as ns:
        harness = Harness(ns.url)
        async with running(harness):
            await wait_until(lambda: harness.link.up.is_set(), 10, "link up")
            assert harness.link.nc is not None
            await harness.link.nc.close()  # what nats-py does after a protocol error
            await wait_until(lambda: harness.link.restarts == 1 and harness.link.up.is_set(),
                             10, "a fresh connection")
            assert harness.ups == 2 and harness.downs == 1
            assert await _answered(ns.url)


async def test_a_deaf_connection_is_found_by_the_watchdog_and_replaced() -> None:
    with NatsServer() as ns:
        harness = Harness(ns.url, serve_from=2)  # the first connection answers nothing
        async with running(harness):
            await wait_until(lambda: harness.link.restarts >= 1 and harness.ups == 2, 10,
                             "the watchdog replacing the deaf connection")
            assert harness.link.missed >= 2
            assert await _answered(ns.url)
            pings = harness.link.pings
            await wait_until(lambda: harness.link.pings > pings + 2, 10, "more pings")
            assert harness.link.restarts == 1  # answered since: no more replacing


async def test_a_link_that_stays_deaf_ends_the_process_for_its_supervisor() -> None:
    with NatsServer() as ns:
        harness = Harness(ns.url, serve_from=0)
        task = asyncio.create_task(harness.link.run())
        with pytest.raises(LinkFailed, match="deaf"):
            await asyncio.wait_for(task, 30)
        assert harness.ups == 2  # it tried a fresh connection once before giving up


async def test_the_watchdog_does_not_count_a_nats_outage_as_deafness() -> None:
    with NatsServer() as ns:
        harness = Harness(ns.url)
        async with running(harness):
            await wait_until(lambda: harness.link.up.is_set(), 10, "link up")
            ns.stop()
            await wait_until(lambda: not harness.link.connected, 10, "disconnected")
            ns.start()
            await wait_until(lambda: harness.link.connected, 20, "nats-py reconnected")
            pings = harness.link.pings
            await wait_until(lambda: harness.link.pings > pings + 2, 10, "pings answered")
            assert harness.link.restarts == 0


def test_sigterm_stops_a_daemon_that_never_reached_nats() -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    daemon = DaemonProcess(url, free_port()).start(wait=False)
    deadline_log = "ConnectionRefusedError"
    for _ in range(200):
        if deadline_log in daemon.log():
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            assert daemon.proc is not None
            daemon.proc.wait(0.05)
    assert deadline_log in daemon.log()
    assert daemon.stop(timeout=20) == 0, daemon.log()


def test_sigterm_stops_a_daemon_whose_nats_went_away() -> None:
    """NATS was up, then died: nats-py reconnects for ever and the watch waited on it, so the
    daemon logged "shutting down" and never exited (SIGKILL after 15 s). Now it exits 0."""
    with SimulatorThread() as sim:
        ns = NatsServer().start()
        daemon = DaemonProcess(ns.url, sim.port).start()
        ns.stop()  # gone for good
        for _ in range(200):  # the daemon has noticed (nats-py is reconnecting)
            if "NATS disconnected" in daemon.log():
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                assert daemon.proc is not None
                daemon.proc.wait(0.05)
        assert "NATS disconnected" in daemon.log()
        assert daemon.stop(signal.SIGTERM) == 0, daemon.log()[-2000:]


def test_a_second_daemon_on_the_same_prefix_refuses_to_start() -> None:
    with NatsServer() as ns, SimulatorThread() as sim, DaemonProcess(ns.url, sim.port) as first:
        status = first.status()
        assert status is not None
        second = subprocess.run(
            [sys.executable, "-m", "twsbus", "run", "--nats", ns.url, "--tws-port",
             str(sim.port), "--client-id", "7"], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert "another twsbus already serves tws.*" in second.stderr
        assert status["epoch"] in second.stderr
        assert sim.control.state()["connections"] == 1  # it never touched TWS
        # Another prefix on the same NATS is fine.
        other = DaemonProcess(ns.url, sim.port, client_id=8, prefix="tws.paper").start()
        try:
            assert other.status() is not None
        finally:
            other.stop()




async def test_a_nats_timeout_while_setting_up_is_retried_on_a_fresh_connection() -> None:
    # On a cluster, a daemon that connects while JetStream elects its leaders has its order
    # journal's requests time out in on_up: that ends the round, not the daemon.
    with NatsServer(jetstream=False) as ns:
        harness = Harness(ns.url, serve_from=3, failures=2, error=nats.errors.TimeoutError())
        async with running(harness) as task:
            await wait_until(lambda: harness.link.up.is_set() or task.done(), 30, "set up")
            assert not task.done(), task.exception()
            assert harness.ups == 3 and harness.downs == 2
            assert "TimeoutError" in (harness.link.last_error or "")
            assert await _answered(ns.url)  # serving on the third connection


async def test_an_error_that_is_not_nats_still_ends_run() -> None:
    with NatsServer(jetstream=False) as ns:
        harness = Harness(ns.url, failures=1, error=Twin("another daemon serves tws.*"))
        with pytest.raises(Twin):
            await asyncio.wait_for(harness.link.run(), 30)
        assert harness.ups == 1 and harness.downs == 1
