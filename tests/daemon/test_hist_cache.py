"""Through the daemon: a completed series asked again is answered from the shared cache with
nothing sent to TWS; a request can bypass the cache; every historical reply says how long it
waited for IB's limits (``Twsbus-Waited-Ms``); status shows the limits' state and the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from natsreq import ask
from waiting import wait_until

from benchmarks import histproof
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

PAST = {"contract": {"conId": 265598, "exchange": "SMART"},
        "endDateTime": "20261113 16:00:00 US/Eastern", "durationStr": "2 D",
        "barSizeSetting": "1 hour", "whatToShow": "TRADES"}


#: The proof's shrunk rules, with an identical gap long enough to be sure to fall inside.
RULES = {**histproof.RULES, "hist_identical_gap": 1.0}


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[NatsServer, SimulatorThread, DaemonProcess]]:
    with NatsServer() as ns, SimulatorThread(tick_interval=0.05) as sim:
        sim.control.post("/config", hist_pacing=True, **RULES)
        with DaemonProcess(ns.url, sim.port, env=histproof.env(RULES)).start() as daemon:
            yield ns, sim, daemon


@pytest.fixture
async def nc(stack: tuple[NatsServer, SimulatorThread, DaemonProcess]) -> AsyncIterator[Client]:
    client = await nats.connect(stack[0].url)
    yield client
    await client.close()


def upstream(sim: SimulatorThread, name: str = "REQ_HISTORICAL_DATA") -> int:
    return int(sim.control.state()["requests"].get(name, 0))


async def test_a_completed_series_asked_again_costs_tws_nothing(
        stack: tuple[NatsServer, SimulatorThread, DaemonProcess], nc: Client) -> None:
    _, sim, daemon = stack
    first = await ask(nc, "historical_data", {**PAST, "durationStr": "3 D"})
    assert first.code == 0 and len(first.data) > 0
    assert first.headers["Twsbus-Cache"] == "miss" and "Twsbus-Waited-Ms" in first.headers
    sent = upstream(sim)
    assert sent >= 1
    again = await ask(nc, "historical_data", {**PAST, "durationStr": "3 D"})
    assert again.code == 0 and again.data == first.data
    assert again.headers["Twsbus-Cache"] == "hit"
    assert upstream(sim) == sent  # 0 upstream messages
    cache = daemon.status()["historical"]["cache"]  # type: ignore[index]
    assert cache["hits"] >= 1 and cache["misses"] >= 1 and cache["bytes"] > 0


async def test_a_request_can_bypass_the_cache(
        stack: tuple[NatsServer, SimulatorThread, DaemonProcess], nc: Client) -> None:
    _, sim, _ = stack
    body = {**PAST, "durationStr": "4 D"}
    assert (await ask(nc, "historical_data", body)).code == 0
    sent = upstream(sim)
    fresh = await ask(nc, "historical_data", {**body, "cache": False})
    assert fresh.code == 0 and fresh.headers["Twsbus-Cache"] == "bypass"
    assert upstream(sim) == sent + 1
    assert sim.control.state()["historical"]["violations"] == 0  # it waited the gap


async def test_requests_reaching_to_now_are_never_cached(
        stack: tuple[NatsServer, SimulatorThread, DaemonProcess], nc: Client) -> None:
    _, sim, _ = stack
    body: dict[str, Any] = {**PAST, "endDateTime": "", "durationStr": "1 D"}
    sent = upstream(sim)
    for _ in range(2):
        reply = await ask(nc, "historical_data", body)
        assert reply.code == 0 and "Twsbus-Cache" not in reply.headers
    assert upstream(sim) == sent + 2


async def test_status_shows_the_window_queue_and_waits(
        stack: tuple[NatsServer, SimulatorThread, DaemonProcess], nc: Client) -> None:
    _, _, daemon = stack
    await ask(nc, "head_timestamp", {"contract": PAST["contract"]})
    status: dict[str, Any] = {}

    def seen() -> bool:
        status.update(daemon.status() or {})
        return status.get("historical", {}).get("granted", 0) >= 1

    await wait_until(seen, what="a granted historical request in status")
    hist = status["historical"]
    for name in ("queued", "open", "window_used", "window_max", "longest_wait", "mean_wait",
                 "refused", "cache"):
        assert name in hist, name
    assert hist["window_max"] == histproof.RULES["hist_window_max"]


async def test_contract_details_and_option_chains_are_kept_for_everyone(
        stack: tuple[NatsServer, SimulatorThread, DaemonProcess], nc: Client) -> None:
    _, sim, daemon = stack
    spec = {"symbol": "MSFT", "secType": "STK", "exchange": "SMART", "currency": "USD"}
    chain = {"underlyingSymbol": "MSFT", "futFopExchange": "", "underlyingSecType": "STK",
             "underlyingConId": 272093}
    first = await ask(nc, "contract_details", spec)
    first_chain = await ask(nc, "sec_def_opt_params", chain)
    assert first.code == 0 and first_chain.code == 0, (first, first_chain)
    sent = (upstream(sim, "REQ_CONTRACT_DATA"), upstream(sim, "REQ_SEC_DEF_OPT_PARAMS"))
    assert min(sent) >= 1
    again = await ask(nc, "contract_details", spec)
    again_chain = await ask(nc, "sec_def_opt_params", chain)
    assert again.data == first.data and again_chain.data == first_chain.data
    assert again.headers["Twsbus-Cache"] == again_chain.headers["Twsbus-Cache"] == "hit"
    assert (upstream(sim, "REQ_CONTRACT_DATA"), upstream(sim, "REQ_SEC_DEF_OPT_PARAMS")) == sent
    queries = daemon.status()["queries"]  # type: ignore[index]
    assert queries["cache_hits"] >= 2 and queries["cache_bytes"] > 0
    fresh = await ask(nc, "contract_details", {**spec, "cache": False})  # asks TWS anyway
    assert fresh.code == 0 and fresh.headers["Twsbus-Cache"] == "bypass"
    assert upstream(sim, "REQ_CONTRACT_DATA") == sent[0] + 1


async def test_a_caller_whose_timeout_cannot_be_met_gets_429_with_retry_after(
        stack: tuple[NatsServer, SimulatorThread, DaemonProcess], nc: Client) -> None:
    _, sim, _ = stack
    body = {**PAST, "durationStr": "6 D", "cache": False}
    assert (await ask(nc, "historical_data", body)).code == 0
    sent = upstream(sim)
    # The identical gap (1 s here) cannot be waited out within 0.05 s: refused at once.
    refused = await ask(nc, "historical_data", {**body, "timeout": 0.05})
    assert refused.code == 429 and refused.error["retry_after"] > 0, refused
    assert upstream(sim) == sent
