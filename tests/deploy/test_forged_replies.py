"""Nothing a client role sends can make anything publish onto a data subject.

A reply subject is the requester's to choose, and whoever answers publishes there: the daemon
(which may publish data) answers only inboxes, its micro-service discovery included
(`refused_replies` counts the rest); JetStream answers any reply subject and pushes a consumer's
messages to any deliver subject, so no client role has any JetStream API (order history comes
from the daemon). Each test watches the targets as `admin` (who may read every data subject) and
waits for the refusal itself (the daemon's count, or the server's permissions violation) before
it looks: once refused, nothing is left in flight that could still arrive.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from rolestack import Login, Stack, refused_replies
from waiting import eventually, wait_until

from twsbus import Client, limit_order, stock
from twsbus.deploy import CLIENT_ROLES, Role, inbox_prefix
from twsbus.orders.journal import names, stored

STREAM, BUCKET = names("tws")
DISCOVERY = ("$SRV.PING", "$SRV.INFO", "$SRV.STATS", "$SRV.PING.twsbus", "$SRV.INFO.twsbus",
             "$SRV.STATS.twsbus")
JETSTREAM = ("$JS.API.INFO", f"$JS.API.STREAM.INFO.{STREAM}", f"$JS.API.STREAM.MSG.GET.{STREAM}",
             f"$JS.API.DIRECT.GET.{STREAM}", f"$JS.API.CONSUMER.CREATE.{STREAM}",
             f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.x", "$JS.API.STREAM.NAMES",
             f"$KV.{BUCKET}.x", f"$JS.FC.{STREAM}.x", f"$JS.ACK.{STREAM}.x.1.1.1.1.1",
             stored("tws.orders.DU123456.x.1"))


class Watch:
    """What arrives on the data subjects (ticks and order events), as admin reads them."""

    def __init__(self, login: Login) -> None:
        self.login = login
        self.seen: list[tuple[str, bytes]] = []

    async def start(self) -> Watch:
        for subject in ("tws.ticks.*", "tws.orders.>"):
            await self.login.nc.subscribe(subject, cb=self._on_msg)
        await self.login.nc.flush()
        return self

    async def _on_msg(self, msg: Msg) -> None:
        self.seen.append((msg.subject, msg.data))

    def on(self, targets: list[str]) -> list[tuple[str, bytes]]:
        return [(s, d) for s, d in self.seen if s in targets]


def targets(n: int) -> list[str]:
    base = 900_000 + uuid.uuid4().int % 90_000
    return [f"tws.ticks.{base + i}" for i in range(n)]


async def until_refused(me: Login, count: int, timeout: float = 10.0) -> None:
    async def refused() -> bool:
        return await refused_replies(me) >= count

    await eventually(refused, timeout, f"the daemon to refuse {count} replies", 0.02)


@pytest.mark.parametrize("role", CLIENT_ROLES)
async def test_discovery_answers_no_forged_reply_subject(stack: Stack, login: Any,
                                                         role: Role) -> None:
    me: Login = await login(role)
    watch = await Watch(await login(Role.ADMIN)).start()
    aimed = targets(len(DISCOVERY))
    before = await refused_replies(me)
    for subject, target in zip(DISCOVERY, aimed, strict=True):
        await me.nc.publish(subject, b"", reply=target)
    await me.nc.flush()
    await until_refused(me, before + len(DISCOVERY))
    assert me.errors == []  # the server let them through: the daemon refused them
    assert watch.on(aimed) == []
    # ...and discovery on the role's own inbox still works (nats micro ls|info|stats)
    for subject in DISCOVERY:
        answer = json.loads((await me.nc.request(subject, b"", timeout=5)).data)
        assert answer["name"] == "twsbus", subject


@pytest.mark.parametrize("role", CLIENT_ROLES)
async def test_no_client_role_reaches_jetstream(stack: Stack, login: Any, role: Role) -> None:
    """Every JetStream API request (with a data subject as its reply), flow control, acks, the
    KV bucket and the stream's own namespace: refused by the server, so nothing answers."""
    me: Login = await login(role)
    watch = await Watch(await login(Role.ADMIN)).start()
    aimed = targets(len(JETSTREAM))
    mark = len(me.errors)
    for subject, target in zip(JETSTREAM, aimed, strict=True):
        await me.nc.publish(subject, b"{}", reply=target)
    await me.nc.flush()
    await wait_until(lambda: all(me.denied("Publish", s, mark) for s in JETSTREAM), 10,
                     "every JetStream subject refused")
    assert watch.on(aimed) == []
    for subject in ("$JS.API.>", "$JS.ACK.>", "_TWSBUS.>", stored("tws.orders.>")):
        assert not await me.may_subscribe(subject), subject


async def test_an_order_stream_reader_cannot_push_events_onto_other_subjects(
        stack: Stack, login: Any) -> None:
    """Formerly an expected failure: a reader of the order stream could create a consumer whose
    deliver subject was a data subject. Now no client may create one at all."""
    reader: Login = await login(Role.ACCOUNT)
    watch = await Watch(await login(Role.ADMIN)).start()
    trader = await nats.connect(stack.url(Role.TRADE), inbox_prefix=inbox_prefix(Role.TRADE))
    try:  # at least one event in the stream
        async with Client(trader) as bus:
            order = await bus.place(stock("AAPL"), limit_order("BUY", 1, 1.0))
            await order.cancel()
    finally:
        await trader.close()
    body = json.dumps({"stream_name": STREAM, "config": {
        "deliver_subject": "tws.ticks.265598", "ack_policy": "none",
        "filter_subject": stored("tws.orders.>")}}).encode()
    creates = (f"$JS.API.CONSUMER.CREATE.{STREAM}", f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.x")
    mark = len(reader.errors)
    for subject in creates:
        await reader.nc.publish(subject, body, reply=f"{inbox_prefix(Role.ACCOUNT)}.x")
    await reader.nc.flush()
    await wait_until(lambda: all(reader.denied("Publish", s, mark) for s in creates), 10,
                     "both creates refused")
    assert [m for s, m in watch.seen if b"clientOrderId" in m and s.startswith("tws.ticks.")] \
        == []


async def test_a_forged_reply_subject_cannot_make_the_daemon_publish_data(
        stack: Stack, login: Any) -> None:
    forger: Login = await login(Role.MARKET)
    watch = await Watch(await login(Role.ADMIN)).start()
    target = f"tws.orders.DU{uuid.uuid4().hex[:6]}.x.1"
    aimed = [target, "tws.ticks.1", "tws.ticks.2"]
    before = await refused_replies(forger)
    await forger.nc.publish("tws.lease.renew", b'{"leases": ["forged"]}', reply=target)
    await forger.nc.publish("tws.req.current_time", b"{}", reply="tws.ticks.1")
    await forger.nc.publish("tws.req.status", b"{}", reply="tws.ticks.2")
    await forger.nc.flush()
    await until_refused(forger, before + 3)
    inspector: Login = await login(Role.DAEMON, prefix="_INBOX")
    info = await inspector.nc.jetstream().stream_info(STREAM, subjects_filter=stored(target))
    assert (watch.on(aimed), info.state.subjects or {}) == ([], {})


def test_the_daemon_was_refused_nothing_all_along(stack: Stack) -> None:
    """Last in the module: the daemon's grants cover all it did here."""
    with open(stack.daemon.log_path, errors="replace") as fh:
        log = fh.read()
    assert "permissions violation" not in log.lower(), log[-3000:]
    assert stack.daemon.proc is not None and stack.daemon.proc.poll() is None
