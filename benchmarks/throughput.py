"""1. Throughput: ticks/s from the simulator's socket to a consumer's callback, on bursts.

The simulator's ``POST /blast`` writes N prebuilt tickPrice frames to every session subscribed
to a conId as fast as the socket drains, then a tickString "blast-end". The clock runs from the
blast request to the consumer seeing "blast-end" (both stamped with ``time.time_ns()`` on the
same machine); ticks/s = N / elapsed. Three consumers, one after another on the same simulator
process, each on its own conId so a burst reaches only the client measured:

- twsbus: the daemon process, nats-server, and one subscriber process (nats-py callback, msgspec
  decode) on ``tws.ticks.<conId>`` after a ``tws.sub.ticks`` lease. twsbus conflates tick fields
  (latest value wins per subject), so the subscriber gets fewer messages than ticks: both counted.
- stock ibapi in its own process, a no-op tickPrice (benchmarks.ibapi_client).
- ib_async in its own process, a no-op pendingTickers handler (benchmarks.ibasync_client).

A consumer that has not seen the end within the cap is reported as not completed, with the
ticks it had received. The simulator's regular ticks are switched off (tick_interval 3600 s) so
nothing but the burst flows.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import AAPL, Child, CpuMeter, Stack, stack

CLIENTS = {"twsbus": AAPL, "ibapi": 272093, "ib_async": 8314}  # AAPL, MSFT, IBM


def _start(st: Stack, client: str, con_id: int, serial: int) -> Child:
    if client == "twsbus":
        c = st.child("subscriber", "--nats", st.url, "--conids", str(con_id), name="subscriber")
    else:
        module = "ibapi_client" if client == "ibapi" else "ibasync_client"
        c = st.child(module, "--port", str(st.sim.port), "--conid", str(con_id),
                     "--client-id", str(50 + serial), name=client)
    c.expect("ready", 60)
    return c


def burst(st: Stack, c: Child, con_id: int, count: int, cap: float) -> dict[str, Any]:
    c.send("reset")
    c.expect("reset", 10)
    pids = {"sim": st.sim.pid, "client": c.pid}
    if c.name == "subscriber":
        pids |= {"daemon": st.daemon_pid, "nats": st.nats_pid}
    meter = CpuMeter(pids).start()
    t0 = time.time_ns()
    st.sim.control.post("/blast", conId=con_id, count=count)
    try:
        end = c.expect("end", cap)
    except TimeoutError:
        meter.stop()
        got = int(c.last.get("progress", 0))
        return {"count": count, "completed": False, "cap_s": cap, "received": got,
                "rate": got / cap, "cpu_s": meter.cpu}
    elapsed = (end["end"] - t0) / 1e9
    meter.stop()
    return {"count": count, "completed": True, "elapsed_s": elapsed, "rate": count / elapsed,
            "received": end["received"], "cpu_s": meter.cpu}


def run(quick: bool = False, tiny: bool = False, cap: float | None = None) -> dict[str, Any]:
    counts = [2_000, 5_000] if tiny else [10_000, 50_000] if quick else [100_000, 1_000_000]
    cap = cap or (20.0 if quick or tiny else 90.0)
    results: dict[str, Any] = {"counts": counts, "cap_s": cap, "clients": {}}
    with stack() as st:
        # No regular ticks around the bursts: a trade's LAST_TIMESTAMP arriving right behind
        # "blast-end" would overwrite it in the daemon's latest-value-wins conflation.
        st.sim.control.post("/config", tick_interval=3600)
        time.sleep(0.3)  # the regular tick loops finish their current 0.25 s sleep
        for serial, (client, con_id) in enumerate(CLIENTS.items()):
            c = _start(st, client, con_id, serial)
            rows = []
            for count in counts:
                row = burst(st, c, con_id, count, cap)
                rows.append(row)
                print(f"  throughput {client:9s} {count:>9,}: " + (
                    f"{row['rate']:>9,.0f} ticks/s in {row['elapsed_s']:.2f}s"
                    f" ({row['received']:,} msgs)" if row["completed"] else
                    f"did not complete within {cap:g}s ({row['received']:,} of {count:,})"),
                    flush=True)
                if not row["completed"]:
                    c.kill()  # its backlog would spill into the next burst
                    c = _start(st, client, con_id, serial + 10 + len(rows))
                time.sleep(1.0)
            c.stop(2)
            c.kill()
            results["clients"][client] = rows
    return results


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
