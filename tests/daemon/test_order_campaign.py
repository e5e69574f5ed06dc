"""The order campaign: ten strategy processes place orders with random modifies and cancels
while the TWS link is dropped five times and the daemon is killed and restarted once. Afterwards
TWS (the simulator's own history) and NATS (the order stream) must tell the same story: one
order per clientOrderId, and for every order the same executions and the same final state.

``TWSBUS_CAMPAIGN_ORDERS`` sets the number of orders (300 in the suite; the README's figures are
from a run with 1,000).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import nats
import pytest
from waiting import wait_until

from twsbus.orders.journal import stored
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

ORDERS = int(os.environ.get("TWSBUS_CAMPAIGN_ORDERS", "300"))
PROCESSES = 10
HERE = Path(__file__).resolve().parent.parent


async def _stream_events(url: str) -> list[dict[str, Any]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(stored("tws.orders.*.*.*"), ordered_consumer=True)
        events = []
        while True:
            msg = await sub.next_msg(timeout=10)
            events.append(json.loads(msg.data))
            if msg.metadata.num_pending == 0:
                break
        await sub.unsubscribe()
        return events
    finally:
        await nc.close()


async def _journal(url: str) -> list[dict[str, Any]]:
    """Every campaign order the daemon's journal knows, a strategy at a time."""
    nc = await nats.connect(url)
    try:
        rows: list[dict[str, Any]] = []
        for i in range(PROCESSES):
            body = json.dumps({"all": True, "strategy": f"s{i}", "limit": 1000}).encode()
            msg = await nc.request("tws.req.orders", body, timeout=10)
            rows.extend(json.loads(msg.data))
        return rows
    finally:
        await nc.close()


def _mismatches(rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[Any]:
    """Orders whose executions or final state on NATS differ from TWS's."""
    by_perm: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_perm[event.get("permId") or 0].append(event)
    mismatches = []
    for row in rows:
        mine = by_perm.get(row["permId"], [])
        execs = {e["execution"]["execId"] for e in mine if e["type"] == "exec"}
        statuses = [e["status"] for e in mine if e["type"] == "status"]
        sim_execs = {x["execId"] for x in row["executions"]}
        exec_events = [e for e in mine if e["type"] == "exec"]
        if execs != sim_execs or len(exec_events) != len(sim_execs) or \
                not statuses or statuses[-1] != row["status"]:
            mismatches.append((row["orderRef"], row["status"], statuses[-3:],
                               len(sim_execs), len(exec_events)))
    return mismatches


@pytest.mark.timeout(900)
async def test_a_campaign_through_link_drops_and_a_daemon_restart_matches_tws() -> None:
    with NatsServer() as ns, SimulatorThread(tick_interval=0.05) as sim:
        daemon = DaemonProcess(ns.url, sim.port).start()
        procs = [subprocess.Popen(
            [sys.executable, str(HERE / "order_campaign_proc.py"), ns.url, f"s{i}",
             str(ORDERS // PROCESSES), str(i)], stdout=subprocess.PIPE, text=True)
            for i in range(PROCESSES)]

        def at_sim() -> int:
            return len(sim.control.call("GET", "/orders")["orders"])

        def finished() -> bool:
            return all(p.poll() is not None for p in procs)

        try:
            # Chaos spaced by progress, not by the clock: at 1/8, 2/8... of the orders placed.
            for step in range(6):
                goal = (step + 1) * ORDERS // 8
                await wait_until(lambda goal=goal: at_sim() >= goal or finished(), 300,
                                 f"{goal} orders at the simulator")
                if step == 3:
                    daemon.stop(signal.SIGKILL)
                    daemon = DaemonProcess(ns.url, sim.port).start()
                else:
                    sim.control.post("/drop")
            outputs = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1])
                       for p in procs]
            await wait_until(lambda: (daemon.status() or {}).get("orders", {}).get("state")
                             == "ok" and daemon.status()["orders"]["backlog"] == 0, 60,
                             "the desk reconciled and its backlog written")
            # The last callbacks of the last orders may still be on their way from TWS: read
            # until TWS and the stream agree, or give up after a minute and show the difference.
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                rows = [r for r in sim.control.call("GET", "/orders")["orders"]
                        if str(r.get("orderRef", "")).startswith("s")]
                events = await _stream_events(ns.url)
                if not _mismatches(rows, events) or \
                        asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.5)
            journal = {r["clientOrderId"]: r for r in await _journal(ns.url)}
        finally:
            for p in procs:
                p.kill()
            daemon.stop()

    totals = Counter()
    for out in outputs:
        totals.update(out)
    # One order per clientOrderId at TWS.
    per_ref = Counter(r["orderRef"] for r in rows)
    assert [ref for ref, n in per_ref.items() if n > 1] == []
    # Every order the journal says reached TWS is there; the others never reached it.
    missing = [c for c, r in journal.items() if c.startswith("s") and c not in per_ref]
    assert all(journal[c]["status"] == "Inactive" for c in missing), missing
    # For every order: the same executions and the same final state on NATS as at TWS.
    mismatches = _mismatches(rows, events)
    reconciled = sum(1 for e in events if e.get("reconciled"))
    print(f"\ncampaign: {len(rows)} orders at TWS from {PROCESSES} processes, {totals}, "
          f"{len(events)} events ({reconciled} reconciled), {len(missing)} never reached TWS")
    assert mismatches == [], mismatches[:10]
    assert totals["placed"] == ORDERS // PROCESSES * PROCESSES
