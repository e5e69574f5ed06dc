"""The client across daemon restarts: it subscribes again by itself and the iterator continues.

Each test runs its own NATS server and simulator, and stops the daemon process and starts a new
one on them (a new epoch), as a deployment's restart does.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import nats
from clientstack import DAEMON_ENV
from waiting import wait_until

from twsbus import Client, Image, StreamMessage, StreamStatus, SubState, Tick
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

AAPL_SUBJECT = "tws.ticks.265598"


async def _until_resubscribed(sub: Any, timeout: float = 30.0) -> list[StreamMessage]:
    seen: list[StreamMessage] = []
    async with asyncio.timeout(timeout):
        while True:
            msg = await sub.next()
            seen.append(msg)
            if isinstance(msg, Image) and msg.resubscribed:
                return seen


async def _until_closed(sub: Any) -> StreamStatus:
    while True:
        msg = await sub.next()
        if isinstance(msg, StreamStatus) and msg.state == "closed":
            return msg


async def _restart_keeps_the_iterator_going(sig: int) -> None:
    with NatsServer() as ns, SimulatorThread(tick_interval=0.05) as sim:
        old = DaemonProcess(ns.url, sim.port, env=DAEMON_ENV).start()
        nc = await nats.connect(ns.url)
        new = DaemonProcess(ns.url, sim.port, env=DAEMON_ENV)
        try:
            async with Client(nc, ttl=3) as bus, bus.ticks("AAPL") as sub:
                first = await sub.next()
                assert isinstance(first, Image) and not first.resubscribed
                for _ in range(5):
                    assert isinstance(await sub.next(), Tick)
                stopping = asyncio.create_task(asyncio.to_thread(old.stop, sig))
                if sig == signal.SIGTERM:  # a clean shutdown says so on the subject
                    closed = await asyncio.wait_for(_until_closed(sub), 15)
                    assert closed.epoch == first.epoch and closed.seq > first.seq
                await stopping
                await asyncio.to_thread(new.start)
                seen = await _until_resubscribed(sub)
                image = seen[-1]
                assert isinstance(image, Image) and image.epoch != first.epoch
                assert image.subject == AAPL_SUBJECT
                after = [await asyncio.wait_for(sub.next(), 10) for _ in range(5)]
                assert [m.seq for m in after] == list(range(image.seq + 1, image.seq + 6))
                assert all(m.epoch == image.epoch for m in after)
                assert sub.resubscribes == 1 and sub.state is SubState.ACTIVE
                status = await bus.status()
                held = [s for s in status["subscriptions"] if s["subject"] == AAPL_SUBJECT]
                assert status["epoch"] == image.epoch and held and held[0]["leases"] == 1
        finally:
            await nc.close()
            old.stop()
            new.stop()


async def test_client_resubscribes_after_daemon_restart() -> None:
    await _restart_keeps_the_iterator_going(signal.SIGTERM)


async def test_client_resubscribes_after_the_daemon_is_killed() -> None:
    """No closed status this time: the new epoch on tws.status (or the renewal's `unknown`)
    tells the client its lease is gone."""
    await _restart_keeps_the_iterator_going(signal.SIGKILL)


async def test_renewals_retry_while_no_daemon_answers() -> None:
    with NatsServer() as ns, SimulatorThread(tick_interval=0.05) as sim:
        daemon = DaemonProcess(ns.url, sim.port, env=DAEMON_ENV).start()
        nc = await nats.connect(ns.url)
        replacement = DaemonProcess(ns.url, sim.port, env=DAEMON_ENV)
        try:
            async with Client(nc, ttl=1.5) as bus, bus.bars("AAPL") as sub:
                await sub.next()
                await asyncio.to_thread(daemon.kill)
                await wait_until(lambda: bus._keeper.renew_failures >= 2, 10,
                                 "renewals retried, not given up")
                assert sub.state is SubState.ACTIVE  # nothing says the lease is gone yet
                await asyncio.to_thread(replacement.start)
                seen = await _until_resubscribed(sub)
                assert seen[-1].epoch == (await bus.status())["epoch"]
        finally:
            await nc.close()
            daemon.stop()
            replacement.stop()
