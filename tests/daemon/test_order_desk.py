"""Orders strategies can trust (issue #9): checked before they leave, one order per
clientOrderId whatever is retried, every event published and kept in JetStream, and what
happened during an outage reconciled exactly once.

The daemon runs as its own process against a real nats-server with JetStream and the simulator;
the simulator's control endpoint is TWS's side of the story (``GET /orders`` is its own history).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from natsreq import ask
from waiting import wait_until

from twsbus.orders.journal import names, stored
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

IBM = {"conId": 8314}
GUARD = '{"max_quantity": 1000}'


class OrderStack:
    def __init__(self, ns: NatsServer, sim: SimulatorThread, daemon: DaemonProcess) -> None:
        self.nats, self.sim, self.daemon = ns, sim, daemon

    def sim_orders(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.sim.control.call("GET", "/orders")["orders"]
        return rows

    def sim_order(self, perm_id: int) -> dict[str, Any]:
        (row,) = [o for o in self.sim_orders() if o["permId"] == perm_id]
        return row

    def placed(self) -> int:
        return int(self.sim.control.state()["requests"].get("PLACE_ORDER", 0))

    def restart_daemon(self, sig: int = signal.SIGKILL) -> None:
        self.daemon.stop(sig)
        self.daemon = DaemonProcess(self.nats.url, self.sim.port,
                                    env={"TWSBUS_ORDER_GUARD": GUARD}).start()


@pytest.fixture(scope="module")
def ostack() -> Iterator[OrderStack]:
    with NatsServer() as ns, SimulatorThread(tick_interval=0.05) as sim:
        daemon = DaemonProcess(ns.url, sim.port, env={"TWSBUS_ORDER_GUARD": GUARD}).start()
        stack = OrderStack(ns, sim, daemon)
        try:
            yield stack
        finally:
            stack.daemon.stop()


@pytest.fixture
async def nc(ostack: OrderStack) -> AsyncIterator[Client]:
    client = await nats.connect(ostack.nats.url)
    yield client
    await client.close()


class Recorder:
    """Every message on a subject pattern, in arrival order."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    async def on_msg(self, msg: Msg) -> None:
        self.messages.append((msg.subject, json.loads(msg.data)))

    def of(self, subject: str) -> list[dict[str, Any]]:
        return [m for s, m in self.messages if s == subject]


async def record(nc: Client, pattern: str = "tws.orders.>") -> Recorder:
    recorder = Recorder()
    await nc.subscribe(pattern, cb=recorder.on_msg)
    await nc.flush()
    return recorder


def body(coid: str | None = None, **order: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"contract": IBM, "order": {
        "action": "BUY", "totalQuantity": 1, "orderType": "MKT", **order}}
    if coid:
        out["clientOrderId"] = coid
    return out


# ---- checked before it leaves -------------------------------------------------------------


@pytest.mark.parametrize(("order", "code", "needle"), [
    ({"action": "BUY", "orderType": "MKT"}, 400, "totalQuantity"),
    ({"action": "BUY", "orderType": "LMT", "totalQuantity": 1, "lmtPrice": "abc"}, 400,
     "lmtPrice"),
    ({"action": "BUY", "orderType": "LMT", "totalQuantity": 1}, 400, "lmtPrice"),
    ({"action": "BUY", "orderType": "STP", "totalQuantity": 1}, 400, "auxPrice"),
    ({"action": "BUY", "orderType": "MKT", "totalQuantity": 0}, 400, "totalQuantity"),
    ({"action": "HOLD", "orderType": "MKT", "totalQuantity": 1}, 400, "action"),
    ({"action": "BUY", "orderType": "MKT", "totalQuantity": 5000}, 403, "max_quantity"),
])
async def test_a_bad_order_is_refused_and_nothing_reaches_tws(
        nc: Client, ostack: OrderStack, order: dict[str, Any], code: int, needle: str) -> None:
    before = ostack.placed()
    reply = await ask(nc, "place_order", {"contract": IBM, "order": order})
    assert reply.code == code, reply
    assert needle in reply.error["message"]
    assert ostack.placed() == before


# ---- one identity per order ---------------------------------------------------------------


async def test_the_same_client_order_id_places_one_order_across_retries_and_a_restart(
        nc: Client, ostack: OrderStack) -> None:
    rows_before = len(ostack.sim_orders())
    first = await ask(nc, "place_order", body("retry-1"))
    again = await ask(nc, "place_order", body("retry-1"))
    assert first.code == again.code == 0, (first, again)
    assert again.data["duplicate"] is True and first.data.get("duplicate") is not True
    assert again.data["orderId"] == first.data["orderId"]
    # Concurrent duplicates: one order.
    replies = await asyncio.gather(*(ask(nc, "place_order", body("retry-2"))
                                     for _ in range(3)))
    assert [r.code for r in replies] == [0, 0, 0], replies
    assert sorted(bool(r.data.get("duplicate")) for r in replies) == [False, True, True]
    assert len({r.data["orderId"] for r in replies}) == 1
    # After the daemon is killed and started again, the journal still knows it.
    ostack.restart_daemon(signal.SIGKILL)  # NATS stays up: the same client asks the new one
    after = await ask(nc, "place_order", body("retry-1"))
    assert after.code == 0 and after.data["duplicate"] is True, after
    assert after.data["orderId"] == first.data["orderId"]
    assert after.data["status"] == "Filled"
    rows = ostack.sim_orders()[rows_before:]
    assert len(rows) == 2 and all(r["places"] == 1 for r in rows), rows


async def test_a_different_order_under_a_known_client_order_id_is_a_conflict(
        nc: Client, ostack: OrderStack) -> None:
    assert (await ask(nc, "place_order", body("clash-1"))).code == 0
    before = ostack.placed()
    clash = await ask(nc, "place_order", body("clash-1", totalQuantity=2))
    assert clash.code == 409, clash
    assert ostack.placed() == before


async def test_order_ids_never_go_back_when_tws_rolls_next_valid_id_back(
        nc: Client, ostack: OrderStack) -> None:
    first = await ask(nc, "place_order", body("roll-1"))
    ostack.sim.control.post("/config", rollback_next_valid_id=True)
    try:
        ostack.restart_daemon(signal.SIGTERM)
        second = await ask(nc, "place_order", body("roll-2"))
    finally:
        ostack.sim.control.post("/config", rollback_next_valid_id=False)
    assert second.code == 0, second
    assert second.data["orderId"] > first.data["orderId"]
    assert ostack.sim.control.state()["orders"]["duplicate_id_errors"] == 0


# ---- every event published, in order, and kept -----------------------------------------------


async def test_a_resting_order_that_fills_later_publishes_status_exec_and_commission(
        nc: Client, ostack: OrderStack) -> None:
    events = await record(nc)
    placed = await ask(nc, "place_order", {**body("rest-1", orderType="LMT", lmtPrice=1.0,
                                                   totalQuantity=3), "strategy": "meanrev"})
    assert placed.code == 0 and placed.data["status"] == "Submitted", placed
    subject = placed.data["subject"]
    assert subject == f"tws.orders.{placed.data['account']}.meanrev.{placed.data['orderId']}"
    ostack.sim.control.post("/orders/fill", permId=placed.data["permId"], price=1.0)
    await wait_until(lambda: any(e["type"] == "commission" for e in events.of(subject)), 10,
                     "the commission report")
    mine = events.of(subject)
    assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1))
    types = [e["type"] for e in mine]
    assert types.index("exec") < types.index("commission")
    (fill,) = [e for e in mine if e["type"] == "exec"]
    assert fill["execution"]["price"] == 1.0 and fill["execution"]["shares"] == 3
    assert [e["status"] for e in mine if e["type"] == "status"][-1] == "Filled"
    assert all(e["clientOrderId"] == "rest-1" and e["permId"] == placed.data["permId"]
               and e["reconciled"] is False for e in mine)
    # ...and the stream kept them, in the daemon's namespace, republished on the same subject.
    stream, _ = names("tws")
    js = nc.jetstream()
    sub = await js.subscribe(stored(subject), ordered_consumer=True)
    kept = [json.loads((await sub.next_msg(timeout=5)).data) for _ in mine]
    await sub.unsubscribe()
    assert [e["seq"] for e in kept] == [e["seq"] for e in mine]
    config = (await js.stream_info(stream)).config
    assert config.subjects == ["_TWSBUS.tws.orders.>"]
    assert config.republish is not None and config.republish.dest == "tws.orders.>"


async def test_the_order_history_op_replays_the_stream_by_filter_since_and_limit(
        nc: Client, ostack: OrderStack) -> None:
    """tws.req.orders with "events": the stream's events of an account / strategy / order,
    each with its stream sequence, from a sequence, a time or "new", in pages of ``limit``;
    the republished live copy carries the same sequence."""
    live = await record(nc)
    copies: list[Msg] = []

    async def keep(msg: Msg) -> None:
        copies.append(msg)

    await nc.subscribe("tws.orders.*.hist.*", cb=keep)
    started = datetime.datetime.now(datetime.UTC).isoformat()
    placed = [await ask(nc, "place_order", {**body(f"hist-{i}"), "strategy": "hist"})
              for i in range(2)]
    subjects = [p.data["subject"] for p in placed]
    await wait_until(lambda: all(any(e["type"] == "commission" for e in live.of(s))
                                 for s in subjects), 10, "both filled, commissions in")

    async def history(**request: Any) -> dict[str, Any]:
        reply = await ask(nc, "orders", {"events": True, **request})
        assert reply.code == 0, reply
        answer: dict[str, Any] = reply.data
        return answer

    everything = await history(strategy="hist")
    assert not everything["more"] and everything["last_seq"] >= everything["events"][-1]["seq"]
    seqs = [e["seq"] for e in everything["events"]]
    assert seqs == sorted(seqs) and {e["subject"] for e in everything["events"]} == set(subjects)
    await wait_until(lambda: len(copies) >= len(seqs), 5, "the live copies")
    assert [(json.loads(m.data), int((m.headers or {})["Nats-Sequence"])) for m in copies] == [
        (e["event"], e["seq"]) for e in everything["events"]]
    one = await history(orderId=placed[1].data["orderId"], account=placed[1].data["account"])
    assert [e["subject"] for e in one["events"]] == [subjects[1]] * len(one["events"])
    assert (await history(strategy="hist", since=started))["events"] == everything["events"]
    assert (await history(strategy="hist", since=seqs[2]))["events"] == everything["events"][2:]
    pages, since = [], 1
    while True:
        page = await history(strategy="hist", since=since, limit=3)
        pages += page["events"]
        if not page["more"]:
            break
        assert len(page["events"]) == 3
        since = page["events"][-1]["seq"] + 1
    assert pages == everything["events"]
    now = await history(strategy="hist", since="new")
    assert now["events"] == [] and now["last_seq"] >= seqs[-1]
    for bad in ({"since": "yesterday"}, {"all": True}, {"limit": 1001}, {"strategy": "a b.c"}):
        assert (await ask(nc, "orders", {"events": True, **bad})).code == 400, bad
    assert (await ask(nc, "orders", {"since": 1})).code == 400  # events only


async def test_a_manual_tws_order_appears_on_the_no_strategy_subject(
        nc: Client, ostack: OrderStack) -> None:
    events = await record(nc)
    made = ostack.sim.control.post("/orders/manual", contract=IBM, action="SELL",
                                   totalQuantity=2, orderType="LMT", lmtPrice=9999.0)
    await wait_until(lambda: any(e.get("permId") == made["permId"] for _, e in events.messages),
                     10, "the manual order's events")
    subjects = {s for s, e in events.messages if e.get("permId") == made["permId"]}
    (subject,) = subjects
    account = subject.split(".")[2]
    assert subject.startswith(f"tws.orders.{account}._.")
    view = await ask(nc, "orders", {})
    assert made["permId"] in [o["permId"] for o in view.data]
    assert all(not o["ours"] for o in view.data if o["permId"] == made["permId"])


async def test_a_tws_side_cancel_and_rejection_are_published(
        nc: Client, ostack: OrderStack) -> None:
    events = await record(nc)
    a = (await ask(nc, "place_order", body("tws-cancel", orderType="LMT", lmtPrice=1.0))).data
    b = (await ask(nc, "place_order", body("tws-reject", orderType="LMT", lmtPrice=1.0))).data
    ostack.sim.control.post("/orders/cancel", permId=a["permId"])
    ostack.sim.control.post("/orders/reject", permId=b["permId"], reason="margin")
    await wait_until(lambda: any(e.get("status") == "Cancelled" for e in events.of(a["subject"]))
                     and any(e.get("status") == "Cancelled" for e in events.of(b["subject"])),
                     10, "both orders cancelled")
    assert any(e["type"] == "error" and e["code"] == 201 for e in events.of(b["subject"]))
    again = await ask(nc, "cancel_order", {"clientOrderId": "tws-cancel"})
    assert again.code == 409, again


# ---- reconciled after every outage ---------------------------------------------------------


async def test_a_fill_during_a_tws_outage_is_published_once_reconciled_before_ok(
        nc: Client, ostack: OrderStack) -> None:
    placed = (await ask(nc, "place_order", body("outage-1", orderType="LMT", lmtPrice=1.0,
                                                 totalQuantity=2))).data
    events = await record(nc)
    ostack.sim.control.post("/restart", seconds=3)
    await wait_until(lambda: (ostack.daemon.status() or {}).get("orders", {}).get("state")
                     == "stale", 10, "the desk stale")
    ostack.sim.control.post("/orders/fill", permId=placed["permId"], price=1.0)
    assert (ostack.daemon.status() or {})["tws"]["state"] != "ready"  # filled while away
    await wait_until(lambda: any(e.get("status") == "ok" for e in events.of("tws.orders.status")),
                     30, "reconciled ok")
    mine = events.of(placed["subject"])
    execs = [e for e in mine if e["type"] == "exec"]
    assert len(execs) == 1 and execs[0]["reconciled"] is True, mine
    assert execs[0]["execution"]["price"] == 1.0
    order = [s for s, _ in events.messages]
    assert order.index(placed["subject"]) < order.index("tws.orders.status")
    assert [e["status"] for e in mine if e["type"] == "status"][-1] == "Filled"
    # Reconciling again (another reconnect) publishes nothing twice.
    ostack.sim.control.post("/drop")
    count = len(events.messages)
    await wait_until(lambda: sum(1 for e in events.of("tws.orders.status")
                                 if e.get("status") == "ok") >= 2, 30, "reconciled again")
    assert [e for e in events.messages[count:] if e[0] == placed["subject"]] == []


async def test_an_order_sent_just_before_the_link_drops_is_unknown_then_settled(
        nc: Client, ostack: OrderStack) -> None:
    events = await record(nc)
    ostack.sim.control.post("/faults", ignore=["PLACE_ORDER"])
    try:
        placed = await ask(nc, "place_order", {**body("lost-1"), "timeout": 0.5})
        assert placed.code == 0 and placed.data["status"] == "PendingSubmit", placed
        ostack.sim.control.post("/drop")
        subject = placed.data["subject"]
        await wait_until(lambda: any(e.get("status") == "Unknown" for e in events.of(subject)),
                         10, "Unknown")
    finally:
        ostack.sim.control.post("/faults", ignore=[])
    await wait_until(lambda: any(e.get("status") == "Inactive" for e in events.of(subject)),
                     30, "settled by reconciliation")
    (settled,) = [e for e in events.of(subject) if e.get("status") == "Inactive"]
    assert settled["reconciled"] is True and "never reached TWS" in settled["reason"]


async def test_without_jetstream_orders_get_503_and_everything_else_works() -> None:
    with NatsServer(jetstream=False) as ns, SimulatorThread() as sim, \
            DaemonProcess(ns.url, sim.port) as daemon:
        nc = await nats.connect(ns.url)
        try:
            reply = await ask(nc, "place_order", body("nojs-1"))
            assert reply.code == 503 and "JetStream" in reply.error["message"], reply
            assert (await ask(nc, "current_time")).code == 0
            assert daemon.status()["orders"]["state"] == "unavailable"
        finally:
            await nc.close()
        assert sim.control.state()["requests"].get("PLACE_ORDER", 0) == 0
