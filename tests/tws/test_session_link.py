"""A real TwsSession on the test's event loop against the simulator: restarts, refusals, silent
links, probes behind a backlog, withdrawn requests. No NATS, no mocks of EClient/EWrapper.

Timings (simulator accepting -> READY, silence -> declared dead) go to the log and the test
output; the assertions are on what the session decided (its recorded retries, its probes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from ibapi import server_versions
from waiting import eventually, wait_until

from twsbus.errors import BudgetExhausted
from twsbus.testing import SimulatorThread
from twsbus.tws.backoff import Failure
from twsbus.tws.callbacks import Event
from twsbus.tws.session import TwsConfig, TwsSession, TwsState

log = logging.getLogger("tests.tws")


class Link:
    """A session plus what it went through: its state changes, with their times."""

    def __init__(self, sim: SimulatorThread, **settings: Any) -> None:
        config = TwsConfig(port=sim.port, **settings)
        self.states: list[tuple[float, TwsState]] = []
        self.events: list[Event] = []
        self.session = TwsSession(config, self.events.append, self._on_state)

    def _on_state(self, state: TwsState) -> None:
        self.states.append((time.monotonic(), state))

    def ready_since(self, t: float) -> float | None:
        return next((at for at, s in self.states if s is TwsState.READY and at >= t), None)


@contextlib.asynccontextmanager
async def running(sim: SimulatorThread, **settings: Any) -> AsyncIterator[Link]:
    link = Link(sim, **settings)
    task = asyncio.create_task(link.session.run())
    try:
        await link.session.wait_ready(10)
        yield link
    finally:
        await link.session.close()
        await asyncio.wait_for(task, 10)


async def post(sim: SimulatorThread, path: str, **body: Any) -> Any:
    return await asyncio.to_thread(sim.control.post, path, **body)


async def requests_seen(sim: SimulatorThread, name: str) -> int:
    state = await asyncio.to_thread(sim.control.state)
    return int(state["requests"].get(name, 0))


async def restart(sim: SimulatorThread, seconds: float) -> float:
    """Restart the simulator as ``POST /restart`` does (drop every client, refuse connections
    for ``seconds``). Returns the monotonic time at which it takes connections again, stamped
    in the loop step that lifts the refusal, so no client can have been accepted before it."""
    async def run() -> float:
        assert sim.sim is not None
        await sim.sim.restart(seconds)
        return time.monotonic()

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), sim.loop))


async def test_each_of_ten_restarts_is_picked_up_on_the_refused_cap() -> None:
    with SimulatorThread() as sim:
        async with running(sim) as link:
            session, cap = link.session, link.session.config.reconnect_refused
            resumes: list[float] = []
            for i in range(10):
                before = session.reconnects
                restarting = asyncio.ensure_future(restart(sim, 2))
                await wait_until(lambda: not session.ready, 5, "the restart to drop the link")
                accepting_at = await asyncio.wait_for(restarting, 10)
                await wait_until(lambda: session.ready, 10, f"READY after restart {i + 1}")
                ready_at = link.ready_since(accepting_at)
                assert ready_at is not None
                resumes.append(ready_at - accepting_at)
                retries = list(session.retries)[-(session.reconnects - before):]
                assert retries[0].failure is Failure.LOST
                assert {r.failure for r in retries[1:]} <= {Failure.REFUSED}, retries
                assert max(r.delay for r in retries) <= cap, retries
                assert session.backoff.attempts == 0  # READY reset it
            report = ", ".join(f"{r * 1000:.0f}" for r in resumes)
            log.warning("simulator accepting -> READY, ms: %s", report)
            print(f"\nresume after restart (simulator accepting -> READY), ms: {report}")


async def test_a_client_id_in_use_backs_off_exponentially_and_says_why() -> None:
    with SimulatorThread() as sim:
        async with running(sim):
            second = Link(sim, backoff_initial=0.2, backoff_max=5.0)
            task = asyncio.create_task(second.session.run())
            try:
                await wait_until(lambda: len(second.session.retries) >= 3, 10, "three retries")
            finally:
                await second.session.close()
                await asyncio.wait_for(task, 10)
            retries = list(second.session.retries)[:3]
            assert all(r.failure is Failure.HANDSHAKE for r in retries), retries
            assert all("already in use" in r.reason for r in retries), retries
            assert retries[0].delay < retries[1].delay < retries[2].delay
            assert "already in use" in (second.session.last_error or "")


async def test_a_silent_link_is_declared_dead_by_a_single_probe() -> None:
    with SimulatorThread() as sim:
        async with running(sim, connect_timeout=2.0) as link:
            session = link.session
            probes = session.probes
            silent_at = time.monotonic()
            await post(sim, "/silent", on=True)
            await wait_until(lambda: not session.ready, 10, "the probe to declare the link dead")
            detected = time.monotonic() - silent_at
            assert session.probes == probes + 1
            lost = session.retries[0]
            assert lost.failure is Failure.LOST and "probe" in lost.reason
            log.warning("silent link declared dead after %.2fs", detected)
            print(f"\nsilent link -> not ready: {detected:.2f}s "
                  f"(probe_interval {session.config.probe_interval:g}s "
                  f"+ probe_timeout {session.config.probe_timeout:g}s)")
            await post(sim, "/silent", on=False)
            await wait_until(lambda: session.ready, 15, "READY once the link speaks again")


async def test_a_backlog_of_unanswered_requests_does_not_delay_the_probe() -> None:
    # 3 s of paced requests TWS never answers: the link is quiet, so probes go out, and each
    # must jump the backlog or its 0.3 s timeout kills a healthy link.
    with SimulatorThread() as sim:
        async with running(sim, probe_interval=0.3, probe_timeout=0.3) as link:
            session = link.session
            await post(sim, "/faults", ignore=["REQ_MANAGED_ACCTS"])
            changes = len(link.states)
            probes = session.probes
            for _ in range(135):
                session.call("reqManagedAccts")
            await wait_until(lambda: session.sender.queued == 0, 10, "the backlog to drain")
            assert session.probes >= probes + 3
            assert link.states[changes:] == [] and session.ready
            assert session.last_error is None


async def test_withdrawn_requests_never_reach_tws() -> None:
    with SimulatorThread() as sim:
        async with running(sim) as link:
            session = link.session
            await post(sim, "/faults", ignore=["REQ_MANAGED_ACCTS"])
            tickets = [session.call("reqManagedAccts") for _ in range(100)]
            # Same loop turn: the pacing task has not run, nothing is written yet.
            assert all(session.withdraw(t) for t in tickets[50:])
            assert session.sender.withdrawn == 50 and session.sender.queued == 50
            await wait_until(lambda: tickets[0].written, 5, "the first request to go out")
            assert session.withdraw(tickets[0]) is False
            await wait_until(lambda: session.sender.queued == 0, 10, "the queue to drain")
            session.call("reqIds", None, {"numIds": 1})  # behind every request: a marker

            async def marker_arrived() -> bool:
                return await requests_seen(sim, "REQ_IDS") >= 1

            await eventually(marker_arrived, what="the reqIds marker to reach the simulator")
            assert await requests_seen(sim, "REQ_MANAGED_ACCTS") == 50


async def test_a_full_queue_refuses_the_call_itself() -> None:
    # ibapi 10.x catches what conn.sendMsg raises and reports it as an error callback; the
    # caller must still hear the refusal, and nothing of the refused request may stay queued.
    with SimulatorThread() as sim:
        async with running(sim, max_queue=5) as link:
            session = link.session
            for _ in range(5):
                session.call("reqManagedAccts")
            with pytest.raises(BudgetExhausted):
                session.call("reqManagedAccts")
            assert session.sender.queued == 5 and session.sender.refused == 1


@pytest.mark.parametrize("offered", [176])
async def test_max_version_caps_what_the_session_offers(offered: int) -> None:
    with SimulatorThread() as sim:
        async with running(sim, max_version=offered) as link:
            expected = min(offered, server_versions.MAX_CLIENT_VER)  # 9.81 speaks up to 157
            assert link.session.server_version == expected
            clients = (await asyncio.to_thread(sim.control.state))["clients"]
            assert [c["version"] for c in clients] == [expected]


def test_retries_are_plain_records_for_status() -> None:
    from twsbus.tws.backoff import Retry

    retry = Retry(Failure.REFUSED, 0.4, 3, "Connect call failed")
    assert msgspec.to_builtins(retry) == {
        "failure": "refused", "delay": 0.4, "attempt": 3, "reason": "Connect call failed"}
