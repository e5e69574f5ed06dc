"""Shared subscriptions: one upstream request per key, leases, linger, budgets, recovery."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from natsreq import ask
from waiting import eventually, wait_until

from twsbus.subjects import surface
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

AAPL = {"conId": 265598}
MSFT = {"conId": 272093}
OPTIONS = [700_000_001 + i for i in range(60)] + [710_000_001 + i for i in range(60)]
LINGER = 1.0
SWEEP = 0.25  # how often the daemon looks for expired leases and ended lingers
SUBSCRIBER = str(Path(__file__).parent.parent / "subscriber_proc.py")


class Env:
    def __init__(self, ns: NatsServer, sim: SimulatorThread, daemon: DaemonProcess) -> None:
        self.ns, self.sim, self.daemon = ns, sim, daemon

    def sim_subs(self, kind: str = "mkt_data") -> dict[str, int]:
        subs: dict[str, int] = self.sim.control.state()["subscriptions"].get(kind, {})
        return subs

    def requests(self, name: str) -> int:
        return int(self.sim.control.state()["requests"].get(name, 0))

    def status(self) -> dict[str, Any]:
        status = self.daemon.status()
        assert status is not None
        return status


@pytest.fixture
def env() -> Iterator[Env]:
    with NatsServer() as ns, SimulatorThread(tick_interval=0.05) as sim:
        daemon = DaemonProcess(ns.url, sim.port, env={
            "TWSBUS_LINGER": str(LINGER), "TWSBUS_LEASE_TTL": "2"}).start()
        try:
            yield Env(ns, sim, daemon)
        finally:
            daemon.stop()


@pytest.fixture
async def nc(env: Env) -> AsyncIterator[Client]:
    client = await nats.connect(env.ns.url)
    yield client
    await client.close()


async def subscribe(nc: Client, kind: str, body: dict[str, Any]) -> Any:
    msg = await nc.request(f"tws.sub.{kind}", json.dumps(body).encode(), timeout=10)
    code = int((msg.headers or {}).get("Nats-Service-Error-Code", 0))
    return code, json.loads(msg.data)


def start_subscriber(env: Env, contract: dict[str, Any], ttl: float = 2.0) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, SUBSCRIBER, env.ns.url, "ticks", json.dumps(contract), str(ttl)],
        stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first["subject"] == f"tws.ticks.{contract['conId']}"
    return proc


class Listener:
    """Every message on one data subject, as a subscriber sees them."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def on_msg(self, msg: Any) -> None:
        self.messages.append(json.loads(msg.data))

    def after(self, seq: int) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["seq"] > seq]

    def status(self, state: str) -> dict[str, Any] | None:
        return next((m for m in self.messages
                     if m["type"] == "status" and m["state"] == state), None)


async def listen(nc: Client, subject: str) -> Listener:
    listener = Listener()
    await nc.subscribe(subject, cb=listener.on_msg)
    await nc.flush()
    return listener


def _sent_to_clients(sim: Any) -> int:
    return sum(session.sent for session in sim.sessions)


async def test_five_processes_on_one_conid_cause_exactly_one_reqmktdata(env: Env) -> None:
    procs = [start_subscriber(env, AAPL) for _ in range(5)]
    try:
        assert env.requests("REQ_MKT_DATA") == 1
        assert env.sim_subs() == {"265598": 1}
        (sub,) = env.status()["subscriptions"]
        assert sub["leases"] == 5 and sub["subject"] == "tws.ticks.265598"
        for proc in procs:  # every one of them gets the data
            assert proc.stdout is not None
            line = json.loads(proc.stdout.readline())
            assert line["received"] > 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


async def test_sigkill_of_a_subscriber_frees_its_line_within_ttl_plus_linger(
        env: Env, nc: Client) -> None:
    closed = await listen(nc, "tws.ticks.272093")
    proc = start_subscriber(env, MSFT, ttl=1.0)
    assert env.sim_subs() == {"272093": 1}
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Nobody releases the lease: it expires unrenewed, the stream lingers, then TWS is told.
    status = await wait_until(lambda: closed.status("closed"), 10, "the stream's closed status")
    assert status["reason"] == "no subscribers"
    await wait_until(lambda: env.sim_subs() == {}, 5, "the line to be freed")
    assert env.status()["lines"]["used"] == 0
    assert env.requests("CANCEL_MKT_DATA") == 1


async def test_last_release_cancels_upstream_only_after_the_linger(env: Env, nc: Client) -> None:
    """The process-level half: the stream outlives its last lease by the linger on the daemon's
    own clock (the stamps it puts on the subject), then is cancelled in TWS unasked. The exact
    deadline is proved with a fake clock in tests/service/test_leases_inprocess.py."""
    seen = await listen(nc, "tws.ticks.265598")
    code, sub = await subscribe(nc, "ticks", {"contract": AAPL})
    assert code == 0
    await wait_until(lambda: seen.after(sub["seq"]), 5, "data on the subject")
    last_before = seen.messages[-1]  # stamped before the daemon got the release
    released = json.loads((await nc.request("tws.unsub", json.dumps(
        {"leases": [sub["lease"]]}).encode())).data)
    assert released["released"] == [sub["lease"]]
    closed = await wait_until(lambda: seen.status("closed"), 5, "the closed status")
    assert closed["reason"] == "no subscribers"
    assert closed["ts"] - last_before["ts"] >= LINGER * 1e9, "closed before the linger ended"
    await wait_until(lambda: env.sim_subs() == {}, 5, "the cancel to reach TWS")
    assert env.requests("CANCEL_MKT_DATA") == 1


async def test_subscribe_during_the_linger_reuses_the_live_upstream(env: Env, nc: Client) -> None:
    seen = await listen(nc, "tws.ticks.265598")
    _, first = await subscribe(nc, "ticks", {"contract": AAPL})
    await nc.request("tws.unsub", json.dumps({"leases": [first["lease"]]}).encode())
    code, second = await subscribe(nc, "ticks", {"contract": AAPL})
    assert code == 0 and second["lease"] != first["lease"]
    assert second["seq"] >= first["seq"] and second["epoch"] == first["epoch"]  # same stream
    # Data the daemon received well past the end of the first lease's linger (its own clock)
    # proves the stream was not cancelled when that linger would have ended.
    start = await wait_until(lambda: seen.after(second["seq"]), 5, "data after re-subscribing")
    past = start[0]["ts"] + (LINGER + 2 * SWEEP) * 1e9
    await wait_until(lambda: any(m["ts"] > past for m in seen.after(second["seq"])), 10,
                     "data stamped past the first linger")
    assert seen.status("closed") is None
    assert env.requests("REQ_MKT_DATA") == 1 and env.requests("CANCEL_MKT_DATA") == 0
    assert env.sim_subs() == {"265598": 1}


async def test_late_joiner_gets_the_image_before_any_update(env: Env, nc: Client) -> None:
    early = await listen(nc, "tws.ticks.265598")
    _, first = await subscribe(nc, "ticks", {"contract": AAPL})
    await wait_until(lambda: len(early.after(first["seq"])) >= 3, 5, "updates to flow")
    late = await nats.connect(env.ns.url)
    updates: list[dict[str, Any]] = []

    async def on_msg(msg: Any) -> None:
        updates.append(json.loads(msg.data))

    await late.subscribe("tws.ticks.265598", cb=on_msg)  # subscribe first, then ask
    await late.flush()
    _, joined = await subscribe(late, "ticks", {"contract": {"symbol": "AAPL", "secType": "STK",
                                                             "currency": "USD"}})
    image = joined["image"]
    assert {"bid", "ask", "last", "bidSize", "askSize", "volume"} <= set(image)
    assert joined["seq"] >= 1 and joined["epoch"] == first["epoch"]
    assert joined["subject"] == "tws.ticks.265598"
    await wait_until(lambda: sum(u["seq"] > joined["seq"] for u in updates) >= 5, 5,
                     "updates after the image")
    newer = [u for u in updates if u["seq"] > joined["seq"]]
    seqs = [u["seq"] for u in newer]
    assert seqs == list(range(joined["seq"] + 1, joined["seq"] + 1 + len(seqs)))  # no gaps
    # the image matches the simulator's book as of its seq: bid/ask on the tick grid
    assert image["bid"] < image["ask"]
    await late.close()


async def test_snapshot_returns_the_image_of_a_live_subject(env: Env, nc: Client) -> None:
    await subscribe(nc, "ticks", {"contract": AAPL})
    reply = await ask(nc, "snapshot", {"subject": "tws.ticks.265598"})
    assert reply.code == 0 and "bid" in reply.data["image"]
    missing = await ask(nc, "snapshot", {"subject": "tws.ticks.1"})
    assert missing.code == 404


async def test_subscription_past_the_line_budget_is_refused_and_nothing_leaks() -> None:
    with NatsServer() as ns, SimulatorThread(tick_interval=1.0) as sim:
        daemon = DaemonProcess(ns.url, sim.port, env={
            "TWSBUS_LINGER": "0.2", "TWSBUS_LEASE_TTL": "60"}).start()
        env = Env(ns, sim, daemon)
        nc = await nats.connect(ns.url)
        try:
            results = await asyncio.gather(*(
                subscribe(nc, "ticks", {"contract": {"conId": c}}) for c in OPTIONS[:100]))
            assert all(code == 0 for code, _ in results), [r for r in results if r[0]][:2]
            code, refused = await subscribe(nc, "ticks", {"contract": {"conId": OPTIONS[100]}})
            assert code == 429, refused
            assert "market-data lines budget exhausted: 100/100" in refused["error"]["message"]
            assert len(env.sim_subs()) == 100 and env.status()["lines"]["used"] == 100
            assert env.requests("REQ_MKT_DATA") == 100  # the 101st never reached TWS
            leases = [body["lease"] for _, body in results]
            await nc.request("tws.unsub", json.dumps({"leases": leases}).encode())
            await wait_until(lambda: env.sim_subs() == {}, 10, "every line to be released")
            assert env.status()["lines"]["used"] == 0
        finally:
            await nc.close()
            daemon.stop()


async def test_tws_refusal_fails_the_subscribe_with_ib_code_and_releases_the_line(
        env: Env, nc: Client) -> None:
    env.sim.control.post("/config", line_limit=1)  # TWS's own limit below the daemon's
    assert (await subscribe(nc, "ticks", {"contract": AAPL}))[0] == 0
    code, body = await subscribe(nc, "ticks", {"contract": MSFT})
    assert code == 429 and body["error"]["tws_code"] == 101
    assert env.status()["lines"]["used"] == 1
    unknown, body = await subscribe(nc, "ticks", {"contract": {"symbol": "NOPE",
                                                               "secType": "STK"}})
    assert unknown == 404 and body["error"]["tws_code"] == 200


async def test_ambiguous_contract_is_refused_with_the_candidates(nc: Client) -> None:
    code, body = await subscribe(nc, "ticks", {"contract": {"symbol": "AAPL"}})
    assert code == 409
    assert "ambiguous" in body["error"]["message"] and "265598" in body["error"]["message"]


async def test_bad_subscribe_bodies_get_400_and_change_nothing(env: Env, nc: Client) -> None:
    for body in (b"nope", b"[]", b'{"contract": {"conId": 265598}, "bogus": 1}',
                 b'{"contract": {"conId": 265598}, "ttl": -5}', b'{}'):
        msg = await nc.request("tws.sub.ticks", body, timeout=5)
        assert msg.headers and msg.headers["Nats-Service-Error-Code"] == "400", body
    assert env.requests("REQ_MKT_DATA") == 0 and env.status()["subscriptions"] == []


async def test_renew_reports_unknown_leases(nc: Client) -> None:
    _, sub = await subscribe(nc, "ticks", {"contract": AAPL})
    reply = json.loads((await nc.request("tws.lease.renew", json.dumps(
        {"leases": [sub["lease"], "not-a-lease"]}).encode())).data)
    assert reply == {"renewed": [sub["lease"]], "unknown": ["not-a-lease"]}


async def test_generic_tick_list_is_merged_across_leases(env: Env, nc: Client) -> None:
    seen = await listen(nc, "tws.ticks.265598")
    await subscribe(nc, "ticks", {"contract": AAPL})
    code, second = await subscribe(nc, "ticks", {"contract": AAPL, "genericTickList": "233"})
    assert code == 0
    await wait_until(lambda: env.requests("REQ_MKT_DATA") == 2, 3, "the re-request")
    assert env.requests("CANCEL_MKT_DATA") == 1 and env.sim_subs() == {"265598": 1}
    await wait_until(lambda: any("rtVolume" in m for m in seen.messages), 5, "an RT volume tick")
    snap = await ask(nc, "snapshot", {"subject": "tws.ticks.265598"})
    assert "rtVolume" in snap.data["image"]


async def test_tws_drop_publishes_stale_then_ticks_resume_on_the_same_subject(
        env: Env, nc: Client) -> None:
    messages: list[dict[str, Any]] = []

    async def on_msg(msg: Any) -> None:
        messages.append(json.loads(msg.data))

    await nc.subscribe("tws.ticks.265598", cb=on_msg)
    _, sub = await subscribe(nc, "ticks", {"contract": AAPL, "ttl": 30})
    await wait_until(lambda: any(m["type"] == "ticks" for m in messages), 5, "ticks")
    env.sim.control.post("/drop")
    await wait_until(lambda: any(m["type"] == "status" and m["state"] == "stale"
                                 for m in messages), 5, "stale")
    stale_at = next(i for i, m in enumerate(messages) if m.get("state") == "stale")
    await wait_until(lambda: any(m["type"] == "ticks" for m in messages[stale_at:]), 10,
                     "ticks after the reconnect")
    after = messages[stale_at:]
    assert any(m["type"] == "status" and m["state"] == "ok" for m in after)
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # seq continues, no reset
    assert {m["epoch"] for m in messages} == {sub["epoch"]}
    assert env.requests("REQ_MKT_DATA") == 2  # re-requested with no client action


async def test_farm_down_and_up_publish_stale_and_ok(env: Env, nc: Client) -> None:
    messages: list[dict[str, Any]] = []

    async def on_msg(msg: Any) -> None:
        messages.append(json.loads(msg.data))

    await nc.subscribe("tws.ticks.265598", cb=on_msg)
    await subscribe(nc, "ticks", {"contract": AAPL})
    env.sim.control.post("/farm", code=2103)
    await wait_until(lambda: any(m.get("state") == "stale" for m in messages), 3, "stale")
    stale = next(m for m in messages if m.get("state") == "stale")
    assert "2103" in stale["reason"]
    env.sim.control.post("/farm", code=2104)
    await wait_until(lambda: messages[-1].get("state") == "ok" or any(
        m.get("state") == "ok" and m["seq"] > stale["seq"] for m in messages), 3, "ok")


def test_watchlist_publishes_without_any_lease(tmp_path: Path) -> None:
    config = tmp_path / "twsbus.yaml"
    config.write_text("watchlist:\n  - {kind: ticks, contract: {conId: 265598}}\n")
    with NatsServer() as ns, SimulatorThread(tick_interval=0.05) as sim:
        daemon = DaemonProcess(ns.url, sim.port, args=["--config", str(config)]).start()
        try:
            async def listen() -> list[bytes]:
                nc = await nats.connect(ns.url)
                sub = await nc.subscribe("tws.ticks.265598")
                got = [(await sub.next_msg(timeout=5)).data for _ in range(3)]
                await nc.close()
                return got

            assert len(asyncio.run(listen())) == 3
            (info,) = daemon.status()["subscriptions"]  # type: ignore[index]
            assert info["leases"] == 0 and info["subject"] == "tws.ticks.265598"
        finally:
            daemon.stop()


async def test_a_thousand_random_subscribe_release_crash_cycles_leak_nothing(env: Env) -> None:
    rng = random.Random(7)
    clients = [await nats.connect(env.ns.url) for _ in range(4)]
    held: list[str] = []
    abandoned = 0
    for _ in range(1000):
        nc = rng.choice(clients)
        action = rng.random()
        if action < 0.5 or not held:
            con_id = rng.choice([265598, 272093, 8314, *OPTIONS[:5]])
            code, body = await subscribe(nc, "ticks", {"contract": {"conId": con_id},
                                                       "ttl": 1})
            assert code == 0, body
            held.append(body["lease"])
        elif action < 0.85:
            lease = held.pop(rng.randrange(len(held)))
            await nc.request("tws.unsub", json.dumps({"leases": [lease]}).encode())
        else:  # a crash: the lease is simply never renewed nor released
            held.pop(rng.randrange(len(held)))
            abandoned += 1
    assert abandoned > 50
    await nc.request("tws.unsub", json.dumps({"leases": held}).encode())
    await wait_until(lambda: env.sim_subs() == {}, 15, "zero live upstream requests")
    status = env.status()
    assert status["lines"]["used"] == 0 and status["subscriptions"] == []
    assert env.requests("REQ_MKT_DATA") == env.requests("CANCEL_MKT_DATA")
    for client in clients:
        await client.close()


#: Each kind with its own tests: ticks (throughout this module), scanner (test_scanner_leases).
_TESTED_APART = {"ticks", "scanner"}
_EVERY_KIND = [
        ("tbt", {"contract": AAPL, "tickType": "BidAsk"}, "tws.tbt.265598.BidAsk", "tbt", "last"),
        ("tbt", {"contract": AAPL, "tickType": "AllLast"}, "tws.tbt.265598.AllLast", "tbt",
         "last"),
        ("bars", {"contract": AAPL}, "tws.bars.265598", "bar", "bar"),
        ("hist_bars", {"contract": AAPL, "barSize": "1 min"}, "tws.hbars.265598.1_min", "bar",
         "bars"),
        ("depth", {"contract": AAPL, "numRows": 5}, "tws.depth.265598", "depth", "asks"),
        ("pnl", {}, "tws.pnl.DU1234567", "pnl", "dailyPnL"),
        ("pnl_single", {"contract": AAPL}, "tws.pnl.DU1234567.265598", "pnl_single", "pos"),
        ("account", {}, "tws.account.DU1234567", None, "values"),
        ("positions", {}, "tws.positions.DU1234567", None, "positions"),
        ("positions_multi", {}, "tws.positions_multi.DU1234567", None, "positions"),
]


def test_every_kind_of_the_surface_is_tested_here_or_apart() -> None:
    assert {row[0] for row in _EVERY_KIND} | _TESTED_APART == set(surface().subscriptions)


@pytest.mark.parametrize(("kind", "body", "subject", "message_type", "image_key"), _EVERY_KIND)
async def test_every_kind_publishes_on_its_subject_with_an_image(
        env: Env, nc: Client, kind: str, body: dict[str, Any], subject: str,
        message_type: str | None, image_key: str) -> None:
    sub = await nc.subscribe(subject)
    code, reply = await subscribe(nc, kind, body)
    assert code == 0, reply
    assert reply["subject"] == subject and reply["state"] == "ok"
    assert image_key in reply["image"], reply["image"]
    if message_type is not None:  # streaming kinds keep publishing, in seq order
        seen: list[dict[str, Any]] = []
        while not any(m["type"] == message_type for m in seen):
            seen.append(json.loads((await sub.next_msg(timeout=5)).data))
        assert all(m["epoch"] == reply["epoch"] for m in seen)
        seqs = [m["seq"] for m in seen]
        assert seqs == sorted(seqs)
    (info,) = env.status()["subscriptions"]
    assert info["kind"] == kind and info["leases"] == 1


async def test_conflicting_parameters_on_a_live_subject_are_409(nc: Client) -> None:
    assert (await subscribe(nc, "bars", {"contract": AAPL}))[0] == 0
    code, body = await subscribe(nc, "bars", {"contract": AAPL, "whatToShow": "MIDPOINT"})
    assert code == 409 and "whatToShow" in body["error"]["message"]


async def test_a_nats_outage_never_blocks_the_tws_reader_and_drops_are_counted() -> None:
    with NatsServer() as ns, SimulatorThread(tick_interval=0.01) as sim:
        daemon = DaemonProcess(ns.url, sim.port, env={"TWSBUS_NATS_PENDING_BYTES": "20000",
                                                      "TWSBUS_STATUS_INTERVAL": "0.5"}).start()
        try:
            nc = await nats.connect(ns.url)
            assert (await subscribe(nc, "ticks", {"contract": AAPL}))[0] == 0
            await nc.close()
            ns.stop()
            # Enough TWS traffic with nowhere to go to overflow the daemon's 20 kB NATS buffer.
            sent = sim.call(_sent_to_clients)
            await eventually(lambda: sim.call(_sent_to_clients) > sent + 1000, 30,
                             "TWS traffic during the NATS outage")
            state = sim.control.state()
            assert len(state["clients"]) == 1 and state["connections"] == 1  # link never dropped
            ns.start()
            status = await eventually(lambda: (s := daemon.status()) and
                                      s["dropped"]["publish_failed"] > 0 and s, 15,
                                      "publishes that failed during the outage")
            assert status["tws"]["state"] == "ready"
        finally:
            daemon.stop()
