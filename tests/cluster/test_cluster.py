"""twsbus on a NATS cluster (issue #12): the daemon on one member, clients on the others.

Three nats-servers route to each other on loopback (``NatsCluster``). The daemon serves on one
member; a strategy holding a lease on ``tws.ticks.<conId>`` sits on a second, and a requester and
a ``tws.status`` listener on the third. Killing the daemon's member (SIGKILL: a host that dies)
must move the daemon to a surviving member by itself, and every subject must resume with no
client action: ticks continue in seq order on the same lease, requests are answered again,
``tws.status`` keeps coming, renewals are accepted and new leases granted. With
``orders_replicas: 3`` the order stream and journal are R3 and survive the loss of a member.
A member that hangs instead (SIGSTOP: no TCP reset) is left when the daemon's watchdog gives up
on it, and a twin daemon on another member still refuses to start.

The resume times (member killed -> next tick at the subscriber, -> first answered request) are
measured and printed (``pytest -s``), never bounded: README "Growing past one host".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from natsreq import ask
from waiting import eventually, poll, wait_until

from twsbus import Client, Image, SubState, Tick
from twsbus.orders.journal import names
from twsbus.testing import DaemonProcess, NatsCluster, NatsServer, SimulatorThread

AAPL_TICKS = "tws.ticks.265598"
IBM = {"conId": 8314}
DAEMON_ENV = {"TWSBUS_ORDERS_REPLICAS": "3"}
WAIT = 30.0  # generous: a condition, not a bound
HANG_WAIT = 120.0  # a hung member is found by the daemon's watchdog: 3 x (5 s + 2 s) and more


def daemon_member(cluster: NatsCluster, timeout: float = WAIT) -> NatsServer:
    """The member the daemon's connection (named ``twsbus-<epoch>``) is on."""
    member: NatsServer = poll(lambda: cluster.serving("twsbus-"), timeout,
                              "the daemon to hold a connection on a member", 0.1)
    return member


async def daemon_moved(cluster: NatsCluster, away_from: NatsServer) -> NatsServer:
    def moved() -> NatsServer | None:
        member = cluster.serving("twsbus-")
        return member if member is not None and member is not away_from else None

    member: NatsServer = await eventually(moved, WAIT, "the daemon on another member")
    return member


@dataclass
class StatusListener:
    """``tws.status`` as a dashboard on another member sees it."""

    arrivals: list[float] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    async def on_msg(self, msg: Msg) -> None:
        self.arrivals.append(time.monotonic())
        self.bodies.append(json.loads(msg.data))

    def after(self, t: float) -> int:
        return sum(1 for a in self.arrivals if a > t)


async def answered(nc: NATS, op: str, wait: float, interval: float = 0.05) -> tuple[Any, int]:
    """``ask`` until answered (the daemon's interest may not be back in the cluster yet, or a
    request may be lost while the cluster still routes to a hung member); the reply and the
    tries it took."""
    tries = 0

    async def attempt() -> Any:
        nonlocal tries
        tries += 1
        try:
            return await ask(nc, op, {}, timeout=1.0)
        except (NoRespondersError, NatsTimeout):
            return None

    return await eventually(attempt, wait, f"an answer to {op}", interval), tries


async def first_answer(nc: NATS, op: str, since: float, wait: float = WAIT,
                       ) -> tuple[float, int]:
    """Ask ``tws.req.<op>`` until the daemon answers; (seconds from ``since``, tries)."""
    reply, tries = await answered(nc, op, wait, interval=0.01)
    assert reply.code == 0, reply
    return time.monotonic() - since, tries


async def first_tick_after(sub: Any, wall_ns: int, since: float, seqs: list[int],
                           wait: float = WAIT) -> float:
    """Read ``sub`` until a tick the daemon made after ``wall_ns`` (so it cannot have left
    through the dead member) arrives; every seq read is appended to ``seqs``."""
    async with asyncio.timeout(wait):
        while True:
            msg = await sub.next()
            seqs.append(msg.seq)
            assert not isinstance(msg, Image), f"re-subscribed: {msg!r}"
            if isinstance(msg, Tick) and msg.ts > wall_ns:
                return time.monotonic() - since


async def start_daemon(cluster: NatsCluster, sim: SimulatorThread, url: str) -> DaemonProcess:
    """``twsbus run --nats <url>``, ready. (``DaemonProcess.wait_ready`` cannot be used: its
    ``status`` hands the comma-separated URL to nats-py as one server.)"""
    daemon = DaemonProcess(url, sim.port, env=DAEMON_ENV).start(wait=False)
    nc = await nats.connect(cluster.urls)

    async def ready() -> bool:
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()
        try:
            return bool((await ask(nc, "status", timeout=0.5)).data["tws"]["state"] == "ready")
        except (NoRespondersError, NatsTimeout):
            return False

    try:
        await eventually(ready, WAIT, "the daemon ready")
        return daemon
    finally:
        await nc.close()


async def _failover(cluster: NatsCluster, sim: SimulatorThread, daemon_url: str) -> None:
    daemon = await start_daemon(cluster, sim, daemon_url)
    try:
        a = await asyncio.to_thread(daemon_member, cluster)
        b, c = (m for m in cluster.members if m is not a)
        sub_nc, req_nc = await nats.connect(b.url), await nats.connect(c.url)
        listener = StatusListener()
        await req_nc.subscribe("tws.status", cb=listener.on_msg)
        try:
            async with Client(sub_nc, renew_every=1.0) as bus, bus.ticks("AAPL") as sub:
                image = await sub.next()
                assert isinstance(image, Image) and image.subject == AAPL_TICKS
                seqs = [image.seq] + [(await sub.next()).seq for _ in range(5)]
                renewed = bus._keeper.renewals

                await asyncio.to_thread(cluster.kill, a)  # returns once it is reaped
                wall_ns, t0 = time.time_ns(), time.monotonic()
                requester = asyncio.create_task(first_answer(req_nc, "current_time", t0))
                tick_s = await first_tick_after(sub, wall_ns, t0, seqs)
                request_s, tries = await requester
                moved_to = await daemon_moved(cluster, a)
                print(f"\nfailover ({'all URLs' if ',' in daemon_url else 'one URL'}): member "
                      f"{cluster.index_of(a)} killed; daemon now on member "
                      f"{cluster.index_of(moved_to)}; next tick at the subscriber after "
                      f"{tick_s * 1000:.0f} ms, first answered request after "
                      f"{request_s * 1000:.0f} ms ({tries} tries)")

                # The same lease carries on, no re-subscription. Core NATS is at most once:
                # what the daemon had already written to the dead member's socket dies with it
                # (seen under load), so a gap may open; the seq shows it and the client counts
                # every jump as a gap, none unnoticed.
                seqs += [(await asyncio.wait_for(sub.next(), WAIT)).seq for _ in range(10)]
                assert seqs == sorted(set(seqs)), seqs  # in order, none twice
                jumps = sum(1 for x, y in itertools.pairwise(seqs) if y != x + 1)
                assert sub.gaps == jumps and sub.resubscribes == 0, (seqs, sub.stats())
                assert sub.state is SubState.ACTIVE
                # Renewals go through the new member and are accepted (an `unknown` would
                # have made the keeper re-subscribe, counted above).
                await wait_until(lambda: bus._keeper.renewals >= renewed + 3, WAIT,
                                 "3 more renewals")
                assert sub.resubscribes == 0, sub.stats()
                # tws.status keeps coming to a listener on the third member.
                await wait_until(lambda: listener.after(t0 + request_s) >= 2, WAIT,
                                 "tws.status again")
                # A new lease is granted to a client on the third member.
                async with Client(req_nc, renew_every=1.0) as bus2, bus2.ticks(IBM) as sub2:
                    assert isinstance(await asyncio.wait_for(sub2.next(), WAIT), Image)
                    assert isinstance(await asyncio.wait_for(sub2.next(), WAIT), Tick)
                status = (await ask(req_nc, "status")).data
                # nats-py moved the connection; NatsLink never had to replace it.
                assert status["nats"]["reconnects"] >= 1 and status["nats"]["restarts"] == 0
                assert status["tws"]["state"] == "ready"
        finally:
            await sub_nc.close()
            await req_nc.close()
    finally:
        await asyncio.to_thread(daemon.stop)


async def _lost_requests(nc: NATS, n: int) -> int:
    lost = 0
    for _ in range(n):
        try:
            await ask(nc, "current_time", {}, timeout=0.5)
        except (NoRespondersError, NatsTimeout):
            lost += 1
    return lost


async def test_killing_the_daemons_member_moves_it_and_every_subject_resumes(
        cluster: NatsCluster, sim: SimulatorThread) -> None:
    """The deployment the README advises: the daemon is given every member's URL."""
    await _failover(cluster, sim, cluster.url)


async def test_a_daemon_given_one_member_moves_to_members_it_discovered(
        cluster: NatsCluster, sim: SimulatorThread) -> None:
    """Given only member 0, the daemon learns the others from the server's INFO
    (``connect_urls``) and nats-py reconnects to one of them when member 0 dies."""
    await _failover(cluster, sim, cluster[0].url)


def place_body(client_order_id: str) -> dict[str, Any]:
    return {"contract": IBM, "clientOrderId": client_order_id,
            "order": {"action": "BUY", "totalQuantity": 1, "orderType": "MKT"}}


async def stream_info(nc: NATS, name: str) -> Any:
    """Stream info once the stream has a leader that answers (after a member dies, JetStream
    elects a new one)."""
    js = nc.jetstream(timeout=2)

    async def led() -> Any:
        try:
            info = await js.stream_info(name)
        except Exception:  # no leader yet: a timeout or a 503 from the API
            return None
        return info if info.cluster is not None and info.cluster.leader else None

    return await eventually(led, WAIT, f"stream {name} with a leader")


async def order_events(nc: NATS, stream: str, client_order_id: str) -> list[dict[str, Any]]:
    """Every event of one order kept in the stream, read by an ordered consumer; tried again
    while JetStream elects leaders (consumer creation times out until it has)."""
    async def read() -> Any:
        try:
            return (await _read_events(nc, stream, client_order_id),)  # truthy even if empty
        except (NatsTimeout, nats.js.errors.APIError):
            return None

    read_back: tuple[list[dict[str, Any]]] = await eventually(
        read, WAIT, f"the events of {client_order_id}")
    return read_back[0]


async def _read_events(nc: NATS, stream: str, client_order_id: str) -> list[dict[str, Any]]:
    last = (await stream_info(nc, stream)).state.last_seq
    sub = await nc.jetstream(timeout=2).subscribe("_TWSBUS.tws.orders.>", ordered_consumer=True,
                                                  stream=stream)
    events: list[dict[str, Any]] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            event = json.loads(msg.data)
            if event.get("clientOrderId") == client_order_id:
                events.append(event)
            if msg.metadata.sequence.stream >= last:
                return events
    finally:
        await sub.unsubscribe()


async def test_orders_run_replicated_and_the_journal_survives_a_dead_member(
        cluster: NatsCluster, sim: SimulatorThread) -> None:
    """The journal's leader dies, and then the daemon too: a new daemon on the two surviving
    members loads the journal and answers a second place of cl-1 as a duplicate."""
    stream, bucket = names("tws")
    daemon = await start_daemon(cluster, sim, cluster.url)
    nc = await nats.connect(cluster.urls)
    try:
        for name in (stream, f"KV_{bucket}"):
            info = await stream_info(nc, name)
            assert info.config.num_replicas == 3, (name, info.config)
            peers = [info.cluster.leader, *(r.name for r in info.cluster.replicas or [])]
            assert sorted(peers) == [cluster.member_name(i) for i in range(3)], (name, peers)

        placed = await ask(nc, "place_order", place_body("cl-1"))
        assert placed.code == 0 and not placed.data.get("duplicate"), placed
        order_id = placed.data["orderId"]
        async def filled() -> bool:
            return await _has_status(nc, stream, "cl-1", "Filled")

        await eventually(filled, WAIT, "a Filled event")
        before = await order_events(nc, stream, "cl-1")
        stream_leader = (await stream_info(nc, stream)).cluster.leader
        journal_leader = (await stream_info(nc, f"KV_{bucket}")).cluster.leader
    finally:
        await nc.close()

    killed = await asyncio.to_thread(cluster.kill, journal_leader)
    t0 = time.monotonic()
    survivor = next(m for m in cluster.members if m.running)
    nc = await nats.connect(survivor.url)
    try:
        after = await order_events(nc, stream, "cl-1")
        read_s = time.monotonic() - t0
        assert after == before and before, (before, after)
        info = await stream_info(nc, f"KV_{bucket}")
        assert info.cluster.leader != journal_leader and info.config.num_replicas == 3
        journal_s = time.monotonic() - t0
        kv = await nc.jetstream(timeout=5).key_value(bucket)
        entry = await kv.get("cl-1")
        assert entry.value and json.loads(entry.value)["orderId"] == order_id, entry

        # A daemon that starts now (a restart, a new host) loads the journal from the two
        # members left: the same clientOrderId places nothing.
        await asyncio.to_thread(daemon.kill)
        daemon = await start_daemon(cluster, sim, cluster.url)
        again, tries = await _place_until_answered(nc, "cl-1")
        assert again.data["duplicate"] is True and again.data["orderId"] == order_id, again
        also = " and the stream's" if stream_leader == journal_leader else ""
        print(f"\norders (R3): member {cluster.index_of(killed)} killed, the journal's "
              f"leader{also}; events read back after {read_s * 1000:.0f} ms, journal read "
              f"on a new leader ({info.cluster.leader}) after {journal_s * 1000:.0f} ms; "
              f"a new daemon answered the duplicate place ({tries} tries)")
    finally:
        await nc.close()
        await asyncio.to_thread(daemon.stop)
    assert sim.control.state()["requests"].get("PLACE_ORDER", 0) == 1


async def _has_status(nc: NATS, stream: str, client_order_id: str, status: str) -> bool:
    events = await order_events(nc, stream, client_order_id)
    return any(e.get("status") == status for e in events)


async def _place_until_answered(nc: NATS, client_order_id: str) -> tuple[Any, int]:
    """Place again until the daemon answers without an error: a retry with the same
    clientOrderId is what a strategy does, and it must never place a second order."""
    tries = 0

    async def placed() -> Any:
        nonlocal tries
        tries += 1
        try:
            reply = await ask(nc, "place_order", place_body(client_order_id), timeout=5)
        except (NoRespondersError, NatsTimeout):
            return None
        if reply.code != 0:
            print(f"place during the election: {reply!r}")
            return None
        return reply

    return await eventually(placed, WAIT, f"a place of {client_order_id} answered"), tries


@pytest.mark.timeout(240)
async def test_a_daemon_on_a_member_that_hangs_moves_when_its_watchdog_gives_up(
        cluster: NatsCluster, sim: SimulatorThread) -> None:
    """A hung member (SIGSTOP: the host froze or left the network; no FIN, no RST) keeps the
    daemon's connection open and silent. nats-py's own pings would take minutes; the daemon's
    watchdog (``tws.req.status`` through NATS, 3 misses) replaces the connection, and with
    every member's URL the new one lands on a live member. A lease with the default ttl (30 s)
    outlives the outage; what the old connection still held is lost, which the client reports
    as a gap."""
    daemon = await start_daemon(cluster, sim, cluster.url)
    try:
        a = await asyncio.to_thread(daemon_member, cluster)
        b, c = (m for m in cluster.members if m is not a)
        sub_nc, req_nc = await nats.connect(b.url), await nats.connect(c.url)
        try:
            async with Client(sub_nc) as bus, bus.ticks("AAPL") as sub:
                assert isinstance(await sub.next(), Image)
                for _ in range(3):
                    assert isinstance(await sub.next(), Tick)
                await asyncio.to_thread(cluster.freeze, a)
                wall_ns, t0 = time.time_ns(), time.monotonic()
                requester = asyncio.create_task(first_answer(req_nc, "current_time", t0,
                                                             wait=HANG_WAIT))
                seqs: list[int] = []
                tick_s = await first_tick_after(sub, wall_ns, t0, seqs, wait=HANG_WAIT)
                request_s, tries = await requester
                moved_to = await daemon_moved(cluster, a)
                # nats-server 2.9.10 keeps its route to a hung peer, and the daemon's old queue
                # subscriptions with it, while it has traffic to send there (nats-server#4014):
                # a member without the daemon then sends some requests to the dead one.
                lost = await _lost_requests(req_nc, 20)
                status, _ = await answered(req_nc, "status", HANG_WAIT)
                print(f"\nhung member {cluster.index_of(a)}: daemon now on member "
                      f"{cluster.index_of(moved_to)} (requester on {cluster.index_of(c)}); "
                      f"next tick after {tick_s:.1f} s, first answered request after "
                      f"{request_s:.1f} s ({tries} tries); then {lost}/20 requests unanswered; "
                      f"gaps {sub.gaps} (missed {sub.missed}), resubscribes "
                      f"{sub.resubscribes}; seqs {seqs[:2]}..{seqs[-2:]} ({len(seqs)}); "
                      f"nats {status.data['nats']}")
                assert status.data["nats"]["restarts"] >= 1  # the watchdog moved it, not nats-py
                after = [await asyncio.wait_for(sub.next(), WAIT) for _ in range(5)]
                assert all(isinstance(m, Tick) for m in after), after
                assert [m.seq for m in after] == list(range(after[0].seq, after[0].seq + 5))
                assert sub.state is SubState.ACTIVE
        finally:
            await sub_nc.close()
            await req_nc.close()
    finally:
        await asyncio.to_thread(daemon.stop)


async def test_a_second_daemon_on_another_member_refuses_to_start(
        cluster: NatsCluster, sim: SimulatorThread) -> None:
    """One daemon per gateway and prefix holds across the cluster: the micro service's
    discovery (``$SRV.INFO``) crosses the routes, so a twin on another member exits 2."""
    daemon = await start_daemon(cluster, sim, cluster.url)
    twin = None
    try:
        a = await asyncio.to_thread(daemon_member, cluster)
        other = next(m for m in cluster.members if m is not a)
        twin = DaemonProcess(other.url, sim.port, client_id=1, env=DAEMON_ENV).start(wait=False)
        assert twin.proc is not None
        code = await asyncio.to_thread(twin.proc.wait, WAIT)
        assert code == 2, twin.log()
        assert "another twsbus already serves tws.*" in twin.log()
    finally:
        if twin is not None:
            await asyncio.to_thread(twin.stop)
        await asyncio.to_thread(daemon.stop)
