"""``twsbus demo``: NATS, the simulator and the daemon in one go, for a first look.

Uses the NATS server given (or the one on 127.0.0.1:4222) when it answers; otherwise starts a
private ``nats-server`` child on a free port. The simulator runs in-process on ``port``, the daemon
against both; a few ``nats req`` lines to try are printed once the daemon is ready.
"""

# ruff: noqa: E501 - the example commands are meant to be copied whole
from __future__ import annotations

import asyncio
import logging
import socket
from urllib.parse import urlparse

from twsbus.config import Config
from twsbus.service.app import Daemon
from twsbus.sim.control import ControlServer
from twsbus.sim.server import SimConfig, Simulator
from twsbus.testing import NatsServer, free_port

log = logging.getLogger("twsbus.demo")

TRY = """
twsbus is up: NATS {nats}, simulated TWS on 127.0.0.1:{port} (control http://127.0.0.1:{ctl}/state)
Try (with the `nats` CLI, or `twsbus req` which needs nothing else):
  nats -s {nats} req tws.req.current_time '{{}}'
  nats -s {nats} req tws.req.contract_details '{{"symbol":"AAPL","secType":"STK","exchange":"SMART","currency":"USD"}}'
  nats -s {nats} req tws.req.historical_data '{{"contract":{{"conId":265598}},"durationStr":"1 D","barSizeSetting":"1 hour"}}'
  nats -s {nats} req tws.req.status '{{}}'
  twsbus req market_data_snapshot '{{"contract":{{"conId":265598}}}}' --nats {nats}
  twsbus sub ticks AAPL --nats {nats}
Ctrl-C stops everything.
"""


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222),
                                      timeout=0.5):
            return True
    except OSError:
        return False


async def run_demo(stop: asyncio.Event, nats_url: str | None, port: int) -> None:
    private: NatsServer | None = None
    url = nats_url or "nats://127.0.0.1:4222"
    if not _reachable(url):
        private = NatsServer().start()
        url = private.url
        log.info("no NATS at %s; started a private nats-server at %s", nats_url or url, url)
    sim = Simulator(SimConfig(port=port))
    try:
        await sim.start()
    except OSError:
        sim = Simulator(SimConfig(port=free_port()))
        await sim.start()
    control = ControlServer(sim, "127.0.0.1", 0)
    await control.start()
    daemon = Daemon(Config(nats=url, tws_port=sim.port))
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.session.wait_ready(), 15)
        print(TRY.format(nats=url, port=sim.port, ctl=control.port), flush=True)
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        daemon.stop()
        await task
        await control.stop()
        await sim.stop()
        if private is not None:
            private.stop()
