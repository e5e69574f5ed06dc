"""Roles that hold: a real nats-server loaded with `twsbus nats-config`'s output, nothing mocked.

The server gets the generated configuration (only the JetStream store directory and the port
differ from deploy/nats-server.conf) with the role passwords in its environment, the daemon runs
as its own process logged in as `daemon`, and each client role logs in with its own inbox prefix
(the stack and the logins: rolestack.py, conftest.py). Forged reply subjects and JetStream:
test_forged_replies.py.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import re
import secrets
import subprocess
import sys
import uuid
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from rolestack import AAPL, MAY, PASSWORDS, Login, Stack, role_url
from waiting import wait_until

from twsbus import Client, limit_order, stock
from twsbus.deploy import CLIENT_ROLES, Role, inbox_prefix, password_env
from twsbus.subjects import OpClass, surface


def request_subjects() -> dict[str, OpClass]:
    """Every request subject a client may send, with its class."""
    s = surface()
    out = {s.query_subject(op): q.cls for op, q in s.queries.items()}
    out.update({s.subject("subscribe", kind=k): spec.cls for k, spec in s.subscriptions.items()})
    for name in ("status_request", "renew", "unsubscribe", "snapshot", "orders_request"):
        out[s.subject(name)] = s.roles.subjects[name]
    return out


def data_subjects() -> dict[str, OpClass]:
    """A concrete subject of each kind of published data, with its class."""
    s = surface()
    params = {"conId": 265598, "tickType": "Last", "barSize": "1_min", "account": "DU123456",
              "scanCode": "TOP_PERC_GAIN", "locationCode": "STK.US.MAJOR"}
    out = {s.data_subject(k, **params): spec.cls for k, spec in s.subscriptions.items()}
    out[s.subject("status")] = s.roles.subjects["status"]
    out[s.subject("errors")] = s.roles.subjects["errors"]
    out[s.subject("order_events", account="DU123456", strategy="_", orderId=7)] = OpClass.ACCOUNT
    out[s.subject("order_status")] = OpClass.ACCOUNT
    return out


# ---- the matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", CLIENT_ROLES)
async def test_each_role_may_request_exactly_its_classes(stack: Stack, login: Any,
                                                         role: Role) -> None:
    """Every query op, every subscription kind and every fixed request subject, by class:
    answered by the daemon exactly when the role's classes include it, refused otherwise."""
    me: Login = await login(role)
    subjects = request_subjects()
    assert set(subjects.values()) == set(OpClass), "some class has no op to try"
    got = dict(zip(subjects, await asyncio.gather(*(me.outcome(s) for s in subjects)),
                   strict=True))
    want = {s: "answered" if cls in MAY[role] else "denied" for s, cls in subjects.items()}
    assert got == want


@pytest.mark.parametrize("role", CLIENT_ROLES)
async def test_each_role_reads_exactly_its_data_subjects(stack: Stack, login: Any,
                                                         role: Role) -> None:
    """Subscribing to a data subject works exactly for the classes of the role, and what the
    daemon publishes there arrives."""
    me: Login = await login(role)
    publisher: Login = await login(Role.DAEMON, prefix="_INBOX")
    for subject, cls in data_subjects().items():
        allowed = cls in MAY[role]
        probe = json.dumps({"type": "probe", "id": uuid.uuid4().hex}).encode()
        got = asyncio.Event()

        async def on_msg(msg: Msg, probe: bytes = probe, got: asyncio.Event = got) -> None:
            if msg.data == probe:  # the daemon publishes status meanwhile
                got.set()

        # (One subscription throughout: nats-server 2.9 sometimes loses the first message to
        # a subject just unsubscribed and subscribed again by the same connection.)
        sub = await me.subscribe(subject, cb=on_msg)
        assert (sub is not None) is allowed, subject
        if sub is not None:
            await publisher.nc.publish(subject, probe)
            await publisher.nc.flush()
            try:
                await asyncio.wait_for(got.wait(), 5)
            except TimeoutError:
                raise AssertionError(f"{subject}: the probe did not arrive "
                                     f"({me.errors}, {publisher.errors})") from None
            await sub.unsubscribe()


@pytest.mark.parametrize("role", CLIENT_ROLES)
async def test_no_client_role_answers_requests_or_publishes_data(stack: Stack, login: Any,
                                                                 role: Role) -> None:
    me: Login = await login(role)
    for subject in ("tws.req.*", "tws.req.place_order", "tws.req.status", "tws.sub.*",
                    "tws.sub.ticks", "tws.lease.renew", "tws.unsub", "tws.>", ">", "$SRV.>"):
        assert not await me.may_subscribe(subject), subject
    for subject in [*data_subjects(), "$JS.API.STREAM.DELETE.TWSBUS_ORDERS_TWS",
                    "$JS.API.STREAM.PURGE.TWSBUS_ORDERS_TWS", "$KV.twsbus_orders_tws.x"]:
        mark = len(me.errors)
        await me.nc.publish(subject, b'{"type":"forged"}')
        await wait_until(functools.partial(me.denied, "Publish", subject, mark), 5,
                         f"the server to refuse a publish to {subject}")


@pytest.mark.parametrize("role", CLIENT_ROLES)
async def test_no_client_role_reads_another_users_replies(stack: Stack, login: Any,
                                                          role: Role) -> None:
    me: Login = await login(role)
    for other in [*Role, "_INBOX"]:
        prefix = other if other == "_INBOX" else inbox_prefix(other)
        if prefix == inbox_prefix(role):
            continue
        assert not await me.may_subscribe(f"{prefix}.>"), prefix
        assert not await me.may_subscribe(f"{prefix}.abc.def"), prefix
    assert await me.may_subscribe(f"{inbox_prefix(role)}.>")


async def test_a_reply_goes_to_its_requester_only(stack: Stack, login: Any) -> None:
    """The scenario of the issue: an account user's account_summary, watched for by a market
    user on every inbox it may read, reaches the account user and no one else."""
    spy: Login = await login(Role.MARKET)
    seen: list[bytes] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(msg.data)

    sub = await spy.nc.subscribe(f"{inbox_prefix(Role.MARKET)}.>", cb=on_msg)
    await spy.nc.flush()
    victim: Login = await login(Role.ACCOUNT)
    reply = await victim.nc.request("tws.req.account_summary", b"{}", timeout=10)
    assert json.loads(reply.data)  # the summary
    # The spy's own request, answered after the victim's over the daemon's one connection: once
    # its answer is in, a misrouted copy of the victim's would have arrived before it.
    own = await spy.nc.request("tws.req.current_time", b"{}", timeout=10)
    await wait_until(lambda: own.data in seen, 10, "the spy's own reply")
    assert seen == [own.data]
    await sub.unsubscribe()


# ---- leases --------------------------------------------------------------------------------------


async def ask(me: Login, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await me.nc.request(subject, json.dumps(body).encode(), timeout=10)
    answer: dict[str, Any] = json.loads(msg.data)
    return answer


async def test_lease_taken_by_market_cannot_be_renewed_or_released_by_account(
        stack: Stack, login: Any) -> None:
    """A lease id is its holder's only proof of ownership, so another user must never learn
    it: account listens on everything it may read while market subscribes, then tries every
    id-like string it saw and ids of its own making. Each answer is exactly the answer for an
    unknown lease, and the owner's next renew still works."""
    spy: Login = await login(Role.ACCOUNT)
    seen: list[bytes] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(msg.data)

    readable = [f"{inbox_prefix(Role.ACCOUNT)}.>", "tws.orders.>", *(
        s for s, cls in data_subjects().items() if cls in MAY[Role.ACCOUNT])]
    subs = [await spy.nc.subscribe(_wildcard(s), cb=on_msg) for s in readable]
    await spy.nc.flush()
    owner: Login = await login(Role.MARKET)
    lease = (await ask(owner, "tws.sub.ticks", {"contract": AAPL, "ttl": 30}))["lease"]
    assert len(lease) >= 22  # token_urlsafe: >= 128 random bits
    await wait_until(lambda: any(b'"ticks"' in m for m in seen)
                     and any(b'"epoch"' in m and b'"tws"' in m for m in seen), 15,
                     "ticks and a status broadcast")
    assert not [m for m in seen if lease.encode() in m]

    harvested = {t for m in seen for t in re.findall(rb"[A-Za-z0-9_-]{16,}", m)}
    tries = [t.decode() for t in harvested] + [secrets.token_urlsafe(24) for _ in range(3)]
    for candidate in tries:
        renew = await ask(spy, "tws.lease.renew", {"leases": [candidate]})
        assert renew == {"renewed": [], "unknown": [candidate]}
        release = await ask(spy, "tws.unsub", {"leases": [candidate]})
        assert candidate not in release.get("released", [])

    renewed = await ask(owner, "tws.lease.renew", {"leases": [lease]})
    assert (renewed["renewed"], renewed.get("unknown", [])) == ([lease], [])
    assert (await ask(owner, "tws.unsub", {"leases": [lease]}))["released"] == [lease]
    for sub in subs:
        await sub.unsubscribe()


def _wildcard(subject: str) -> str:
    """tws.ticks.265598 -> tws.ticks.*: every instance of a data subject."""
    head, _, _ = subject.partition(".265598")
    if head != subject:
        return head + ".*" + ("" if subject.endswith(".265598") else ".*")
    return subject


async def test_lease_ids_appear_only_in_the_subscribe_reply(stack: Stack, login: Any) -> None:
    """Status (request and broadcast), the data subject and the daemon's log never show one."""
    owner: Login = await login(Role.ADMIN)
    watcher: Login = await login(Role.MARKET)
    seen: list[bytes] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(msg.data)

    subs = [await watcher.nc.subscribe(s, cb=on_msg)
            for s in ("tws.status", "tws.errors", "tws.ticks.*")]
    await watcher.nc.flush()
    granted = await ask(owner, "tws.sub.ticks", {"contract": AAPL, "ttl": 30})
    lease = granted["lease"]
    await wait_until(lambda: any(b'"ticks"' in m for m in seen)
                     and any(b'"subscriptions"' in m for m in seen), 15,
                     "ticks and a status broadcast")
    status = (await watcher.nc.request("tws.req.status", b"{}", timeout=5)).data
    assert not [m for m in [*seen, status] if lease.encode() in m]
    with open(stack.daemon.log_path, errors="replace") as fh:
        assert lease not in fh.read()
    await ask(owner, "tws.unsub", {"leases": [lease]})
    for sub in subs:
        await sub.unsubscribe()


# ---- passwords -----------------------------------------------------------------------------------


async def test_passwords_come_from_the_environment_not_the_file(stack: Stack) -> None:
    """The literal-password defect is gone: the text "$NATS_PASSWORD_DAEMON" is no password,
    the environment's value is; the file holds no secret and no quoted reference."""
    for role in Role:
        assert f"password: ${password_env(role)}," in stack.conf
    assert '"$NATS_PASSWORD' not in stack.conf
    assert not [pw for pw in PASSWORDS.values() if pw in stack.conf]
    for literal in (f"${password_env(Role.DAEMON)}", f'"${password_env(Role.DAEMON)}"'):
        with pytest.raises(Exception) as refused:
            await nats.connect(stack.nats.url, user="daemon", password=literal,
                               connect_timeout=2, max_reconnect_attempts=0,
                               allow_reconnect=False, error_cb=_quiet)
        assert "authorization violation" in str(refused.value).lower(), refused.value
    nc = await nats.connect(stack.url(Role.DAEMON), connect_timeout=2, max_reconnect_attempts=0)
    await nc.close()


async def _quiet(exc: Exception) -> None:
    pass


def test_the_daemon_never_logs_its_password(stack: Stack) -> None:
    with open(stack.daemon.log_path, errors="replace") as fh:
        log = fh.read()
    assert "serving" in log or "NATS connected" in log, log
    assert PASSWORDS[Role.DAEMON] not in log


# ---- the client library and the CLI with a role's inbox ------------------------------------------


async def test_client_library_works_on_a_role_inbox(stack: Stack) -> None:
    nc = await nats.connect(stack.nats.url, user="market", password=PASSWORDS[Role.MARKET],
                            inbox_prefix=inbox_prefix(Role.MARKET))
    try:
        async with Client(nc) as bus:
            details = await bus.contract_details(stock("AAPL"))
            assert details[0]["contract"]["conId"] == 265598
            async with bus.ticks("AAPL") as ticks:
                first = await asyncio.wait_for(ticks.next(), 10)
                assert first is not None
    finally:
        await nc.close()


async def test_order_history_and_live_events_need_the_account_role(stack: Stack,
                                                                  login: Any) -> None:
    """trade places; account reads the order events with the client's feed, which asks the
    daemon for the history (from the start, from "new", from a time) and follows the stream's
    republished copies, with no JetStream API at all; market is refused both."""
    strategy = f"r{uuid.uuid4().hex[:8]}"
    started = datetime.datetime.now(datetime.UTC)
    trader = await nats.connect(stack.url(Role.TRADE), inbox_prefix=inbox_prefix(Role.TRADE))
    reader: Login = await login(Role.ACCOUNT)
    try:
        async with Client(trader) as bus, Client(reader.nc) as view:
            live = view.orders(strategy, since="new")
            async with live:
                order = await bus.place(stock("AAPL"), limit_order("BUY", 1, 1.0),
                                        strategy=strategy)
                first_live = await asyncio.wait_for(live.next(), 10)
            assert first_live.event.clientOrderId == order.clientOrderId
            for since in (None, started, first_live.stream_seq):
                feed = view.orders(strategy, since=since)
                async with feed:
                    update = await asyncio.wait_for(feed.next(), 10)
                assert update == first_live, since
                assert feed.replays >= 1  # it came from the daemon's history
            await order.cancel()
    finally:
        await trader.close()
    assert reader.errors == []  # no permission was missing on the way

    market: Login = await login(Role.MARKET)
    body = json.dumps({"events": True, "strategy": strategy}).encode()
    assert await market.outcome("tws.req.orders", body) == "denied"
    assert not await market.may_subscribe(f"tws.orders.*.{strategy}.*")


def test_cli_logs_in_with_user_and_password(stack: Stack) -> None:
    """`twsbus req|status --user R` (password from NATS_PASSWORD) reads replies on
    _INBOX_<R>; the role's limits hold for the CLI too."""
    import os

    env = {**os.environ, "NATS_PASSWORD": PASSWORDS[Role.MARKET]}

    def twsbus(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "twsbus", *args, "--nats", stack.nats.url,
                               "--user", "market"], env=env, capture_output=True, text=True,
                              timeout=60)

    ok = twsbus("req", "current_time")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)
    status = twsbus("status")
    assert status.returncode == 0, status.stderr
    refused = twsbus("req", "positions")  # said at once, not a timeout
    assert refused.returncode == 1 and "NATS refused it" in refused.stderr, refused.stderr
    assert 'publish to "tws.req.positions"' in refused.stderr
    wrong = twsbus("req", "current_time", "--inbox-prefix", "_INBOX")
    assert wrong.returncode == 1  # replies on _INBOX are not the market user's to read
    assert "subscription to" in wrong.stderr, wrong.stderr

    orders = subprocess.run(  # account: the journal's view, as NATS_USER from the environment
        [sys.executable, "-m", "twsbus", "orders", "--once", "--nats", stack.nats.url],
        env={**env, "NATS_USER": "account", "NATS_PASSWORD": PASSWORDS[Role.ACCOUNT]},
        capture_output=True, text=True, timeout=60)
    assert orders.returncode == 0, orders.stderr

    sub = subprocess.Popen([sys.executable, "-m", "twsbus", "sub", "ticks", "AAPL", "--json",
                            "--nats", role_url(stack.nats, Role.MARKET)],  # the user in the URL
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sub.stdout is not None
        first = json.loads(sub.stdout.readline() or "null")
        assert first and first.get("type"), first
    finally:
        sub.terminate()
        sub.wait(10)



def test_the_daemon_was_refused_nothing_all_along(stack: Stack) -> None:
    """Last in the module: the daemon's grants cover all it did (serving, JetStream, the
    watchdog, discovery) in every test above; nats-py logs a refusal as a NATS warning."""
    with open(stack.daemon.log_path, errors="replace") as fh:  # all of it, not log()'s tail
        log = fh.read()
    assert "permissions violation" not in log.lower(), log[-3000:]
    assert stack.daemon.proc is not None and stack.daemon.proc.poll() is None
