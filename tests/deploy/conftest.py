"""Fixtures for the role tests (helpers in rolestack.py): one stack per module, one
connection per login, closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from rolestack import PASSWORDS, Login, Stack, role_url

from twsbus.deploy import Role, ServerOptions, inbox_prefix, nats_server_conf, password_env
from twsbus.subjects import surface
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    store = tmp_path_factory.mktemp("jetstream")
    conf = nats_server_conf(surface(), ServerOptions(store_dir=str(store)))
    env = {password_env(role): pw for role, pw in PASSWORDS.items()}
    # jetstream=False: no -js flag; the generated configuration turns JetStream on itself.
    with NatsServer(jetstream=False, config=conf, env=env) as server, \
            SimulatorThread(tick_interval=0.05) as sim, \
            DaemonProcess(role_url(server, Role.DAEMON), sim.port,
                          env={"TWSBUS_LINGER": "0.5"}) as daemon:
        yield Stack(server, sim, daemon, conf)


@pytest.fixture
async def login(stack: Stack) -> AsyncIterator[Any]:
    opened: list[NATS] = []

    async def connect(role: Role, *, prefix: str | None = None) -> Login:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(stack.nats.url, user=str(role), password=PASSWORDS[role],
                                inbox_prefix=prefix or inbox_prefix(role), error_cb=on_error,
                                connect_timeout=3, max_reconnect_attempts=0)
        opened.append(nc)
        return Login(nc, errors)

    yield connect
    for nc in opened:
        await nc.close()
