"""The daemon survives what deployments do: TWS drops, silent links, restarts, NATS restarts."""

from __future__ import annotations

import asyncio
import json
import signal

import nats
from natsreq import ask
from waiting import eventually, poll

from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread


def _wait_state(daemon: DaemonProcess, state: str, timeout: float = 10) -> dict:
    return daemon.wait_ready(timeout=timeout, state=state)


async def test_daemon_reconnects_after_simulator_drops_the_link() -> None:
    with NatsServer() as ns, SimulatorThread() as sim, DaemonProcess(ns.url, sim.port) as daemon:
        before = daemon.status()
        assert before is not None
        sim.control.post("/drop")
        await eventually(lambda: (s := daemon.status()) and s["tws"]["state"] == "ready" and
                         s["tws"].get("reconnects"), what="ready again after a reconnect")
        nc = await nats.connect(ns.url)
        assert (await ask(nc, "current_time")).code == 0
        await nc.close()
        assert sim.control.state()["connections"] == 2


async def test_daemon_detects_a_silent_link_with_its_probe() -> None:
    with NatsServer() as ns, SimulatorThread() as sim, DaemonProcess(ns.url, sim.port) as daemon:
        sim.control.post("/silent", on=True)
        # probe_interval 1 s + probe_timeout 1 s in the test daemon
        status = await eventually(lambda: (s := daemon.status()) and
                                  s["tws"]["state"] != "ready" and s, what="the link given up")
        assert "probe" in (status["tws"].get("lastError") or ""), status["tws"]
        sim.control.post("/silent", on=False)
        status = _wait_state(daemon, "ready", timeout=15)
        assert status["tws"]["probes"] >= 1


async def test_nightly_restart_fails_queries_fast_then_recovers() -> None:
    """TWS restarting (down, refusing connections until the test ends the restart): a query
    meanwhile fails at once with 503 "not connected", not with a 408 after its deadline."""
    with NatsServer() as ns, SimulatorThread() as sim, DaemonProcess(ns.url, sim.port) as daemon:
        nc = await nats.connect(ns.url)
        sim.control.post("/faults", refuse_connections=True)
        sim.control.post("/drop")
        await eventually(lambda: (s := daemon.status()) and s["tws"]["state"] != "ready",
                         what="the daemon to see TWS down")
        down = await ask(nc, "current_time", {"timeout": 30})
        assert down.code == 503, down
        assert down.error["message"].startswith("TWS is "), down.error  # not connected
        sim.control.post("/faults", refuse_connections=False)
        _wait_state(daemon, "ready", timeout=15)
        assert (await ask(nc, "current_time")).code == 0
        await nc.close()


async def test_nats_restart_is_survived() -> None:
    with NatsServer() as ns, SimulatorThread() as sim, DaemonProcess(ns.url, sim.port):
        ns.restart(down_for=1.0)

        async def answered() -> bool:
            try:
                nc = await nats.connect(ns.url, max_reconnect_attempts=0)
            except Exception:  # the server is not back yet
                return False
            try:
                return (await ask(nc, "current_time", timeout=1)).code == 0
            except Exception:  # no responders or no answer: the daemon is not back yet
                return False
            finally:
                await nc.close()

        await eventually(answered, 15, "the daemon to answer after the NATS restart", 0.2)


#: 8 stocks x (ticks, 5-s bars) and 3 tick-by-tick streams: 19 cancels at shutdown, which at
#: 45 messages/s take about 0.3 s past the pacing burst.
STOCKS = (265598, 272093, 8314, 76792991, 3691937, 4815747, 208813719, 756733)
TBT_TYPES = ("Last", "AllLast", "BidAsk")
CANCELS = ("CANCEL_MKT_DATA", "CANCEL_REAL_TIME_BARS", "CANCEL_TICK_BY_TICK_DATA")


async def test_sigterm_shuts_down_in_order_and_exits_0() -> None:
    """Shutdown order: every stream's `closed` status, then every cancel reaches TWS (paced,
    however long that takes), then TWS is closed and the last status says so; exit 0."""
    with NatsServer() as ns, SimulatorThread() as sim:
        daemon = DaemonProcess(ns.url, sim.port).start()
        nc = await nats.connect(ns.url)
        seen: list[tuple[str, dict]] = []

        async def on_msg(msg: nats.aio.msg.Msg) -> None:
            seen.append((msg.subject, json.loads(msg.data)))

        await nc.subscribe("tws.>", cb=on_msg)
        subjects = []
        bodies = [(kind, {"contract": {"conId": c}}) for c in STOCKS for kind in ("ticks", "bars")]
        bodies += [("tbt", {"contract": {"conId": STOCKS[0]}, "tickType": t}) for t in TBT_TYPES]
        for kind, body in bodies:
            reply = json.loads((await nc.request(f"tws.sub.{kind}", json.dumps(body).encode(),
                                                 timeout=15)).data)
            assert "subject" in reply, (kind, body, reply)
            subjects.append(reply["subject"])
        before = sim.control.state()["requests"]
        cancels_before = sum(before.get(name, 0) for name in CANCELS)

        assert await asyncio.to_thread(daemon.stop, signal.SIGTERM) == 0
        log = daemon.log()
        assert "shutting down" in log and "Traceback" not in log
        await nc.flush()
        after = sim.control.state()["requests"]
        cancels = sum(after.get(name, 0) for name in CANCELS)
        assert cancels - cancels_before == len(subjects)  # every cancel reached TWS

        closed_at = {}
        for i, (subject, body) in enumerate(seen):
            if subject in subjects and body.get("type") == "status" and \
                    body.get("state") == "closed":
                closed_at[subject] = i
        assert set(closed_at) == set(subjects)  # every stream said it closed
        statuses = [i for i, (subject, _) in enumerate(seen) if subject == "tws.status"]
        last = seen[statuses[-1]][1]
        assert last["tws"]["state"] != "ready"  # the last word: TWS is closed
        assert statuses[-1] > max(closed_at.values())  # ... said after the streams closed
        await nc.close()
        assert sim.control.state()["clients"] == []


def test_sigint_also_exits_0() -> None:
    with NatsServer() as ns, SimulatorThread() as sim:
        daemon = DaemonProcess(ns.url, sim.port).start()
        assert daemon.stop(signal.SIGINT) == 0


def test_client_id_in_use_is_reported_in_status() -> None:
    with NatsServer() as ns, SimulatorThread() as sim, DaemonProcess(ns.url, sim.port):
        second = DaemonProcess(ns.url, sim.port, prefix="tws2").start(wait=False)
        try:
            status = poll(lambda: (s := second.status()) and
                          "already in use" in (s["tws"].get("lastError") or "") and s, 10,
                          "the clientId clash in the second daemon's status")
            assert status["tws"]["state"] != "ready"
        finally:
            second.stop()


async def test_farm_messages_go_to_the_errors_subject_not_to_requests() -> None:
    with NatsServer() as ns, SimulatorThread() as sim, DaemonProcess(ns.url, sim.port):
        nc = await nats.connect(ns.url)
        got: asyncio.Queue[dict] = asyncio.Queue()

        async def on_msg(msg: nats.aio.msg.Msg) -> None:
            await got.put(json.loads(msg.data))

        await nc.subscribe("tws.errors", cb=on_msg)
        await nc.flush()
        sim.control.post("/farm", code=2103)
        event = await asyncio.wait_for(got.get(), 5)
        assert event["code"] == 2103 and "broken" in event["message"]
        assert (await ask(nc, "current_time")).code == 0
        await nc.close()


async def test_status_is_published_periodically_and_on_request() -> None:
    with NatsServer() as ns, SimulatorThread() as sim, DaemonProcess(ns.url, sim.port) as daemon:
        nc = await nats.connect(ns.url)
        sub = await nc.subscribe("tws.status")
        msg = await sub.next_msg(timeout=3)
        published = json.loads(msg.data)
        requested = (await ask(nc, "status")).data
        assert published["epoch"] == requested["epoch"] == daemon.status()["epoch"]
        assert requested["tws"]["state"] == "ready"
        assert requested["tws"]["serverVersion"] == 200 or requested["tws"]["serverVersion"] == 157
        assert requested["lines"] == {"used": 0, "max": 100}
        assert "pacing" in requested and "dropped" in requested
        await nc.close()
