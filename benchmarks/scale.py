"""5. Scale: 1,000 live subscriptions held by 50 client processes renewing leases.

The simulator adds synthetic stocks SYN0001..SYN1200 (``SimConfig.extra_instruments``) and
allows 2,000 lines; the daemon runs with ``TWSBUS_MAX_LINES=2000``. 50 subscriber processes each
lease 20 distinct conIds (1,000 streams, 1,000 leases; ttl 30 s, renewed in one batch per process
every 10 s) and subscribe to their subjects; the simulator ticks every instrument every 2 s.
Measured:

- daemon RSS when ready (no subscription) and with the 1,000 held; memory per subscription is
  the difference / 1,000;
- subscribe latency while the 1,000 are being opened (each new instrument costs two TWS
  messages, contract details and reqMktData, and twsbus paces TWS at 45 msgs/s, so this ramp is
  bound by TWS's own limit: about 22 new instruments a second);
- attach latency: a lease on a stream that is already live (no TWS round trip), 200 of them;
- renewal: every process renews its 20 leases 20 times back to back, all at once (1,000 batch
  requests, 20,000 lease renewals): round trip per batch and daemon CPU per renewed lease
  (minus the daemon's idle CPU rate measured just before).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import nats

from benchmarks.common import Child, CpuMeter, rss_bytes, stack, summary, syn


async def _attach(url: str, con_ids: list[int]) -> list[float]:
    nc = await nats.connect(url)
    times, leases = [], []
    try:
        for con_id in con_ids:
            t0 = time.perf_counter()
            msg = await nc.request("tws.sub.ticks", json.dumps(
                {"contract": {"conId": con_id}, "ttl": 30}).encode(), timeout=30)
            times.append((time.perf_counter() - t0) * 1e6)
            leases.append(json.loads(msg.data)["lease"])
        await nc.request("tws.unsub", json.dumps({"leases": leases}).encode(), timeout=10)
    finally:
        await nc.close()
    return times


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    n_clients, per_client = (2, 5) if tiny else (4, 10) if quick else (50, 20)
    total = n_clients * per_client
    con_ids = syn(total)
    renew_rounds = 5 if quick or tiny else 20
    settle = 0.5 if tiny else 3.0
    out: dict[str, Any] = {"clients": n_clients, "per_client": per_client, "subscriptions": total}
    with stack(tick_interval=2.0) as st:
        pid = st.daemon_pid
        time.sleep(settle / 3)
        rss0 = rss_bytes(pid)
        t0 = time.monotonic()
        meter = CpuMeter({"daemon": pid}).start()
        clients: list[Child] = []
        for i in range(n_clients):
            mine = con_ids[i * per_client:(i + 1) * per_client]
            clients.append(st.child("subscriber", "--nats", st.url, "--ttl", "30", "--conids",
                                    ",".join(map(str, mine)), name=f"client{i}"))
        subscribe_us: list[float] = []
        sub_errors = 0
        for c in clients:
            ready = c.expect("ready", 600)
            subscribe_us += ready["subscribe_us"]
            sub_errors += ready["error_count"]
        ramp_s = time.monotonic() - t0
        ramp_cpu = meter.stop()["daemon"]
        status = st.daemon.status(timeout=5) or {}
        time.sleep(settle)
        rss1 = rss_bytes(pid)
        attach_us = asyncio.run(_attach(st.url, con_ids[: min(200, total)]))
        # renewal cost: the daemon's idle rate first, then everyone renews at once
        idle = CpuMeter({"daemon": pid}).start()
        time.sleep(settle)
        idle.stop()
        idle_rate = idle.cpu["daemon"] / idle.wall
        meter = CpuMeter({"daemon": pid}).start()
        for c in clients:
            c.send(f"renew {renew_rounds}")
        renew_us: list[float] = []
        renewed = unknown = 0
        for c in clients:
            r = c.expect("renewed", 120)
            renew_us += r["renew_us"]
            renewed += r["renewed"] * renew_rounds
            unknown += r["unknown_leases"]
        meter.stop()
        renew_cpu = meter.cpu["daemon"] - idle_rate * meter.wall
        rss2 = rss_bytes(pid)
        subs = status.get("subscriptions", [])
    out.update({
        "rss_ready_mb": rss0 / 2**20, "rss_held_mb": rss1 / 2**20,
        "rss_after_renewals_mb": rss2 / 2**20,
        "kb_per_subscription": (rss1 - rss0) / 1024 / total,
        "streams_in_status": len(subs) if isinstance(subs, list) else subs,
        "subscribe_errors": sub_errors, "leases_lost": unknown,
        "ramp_s": ramp_s, "ramp_subs_per_s": total / ramp_s,
        "ramp_daemon_cpu_s": ramp_cpu,
        "subscribe_us": summary(subscribe_us, (50, 99)),
        "attach_us": summary(attach_us, (50, 99)),
        "renew_batch": per_client, "renewed": renewed, "renew_wall_s": meter.wall,
        "renew_us": summary(renew_us, (50, 99)),
        "daemon_idle_cpu_pct": idle_rate * 100,
        "renew_cpu_us_per_lease": max(0.0, renew_cpu) / max(1, renewed) * 1e6,
    })
    print(f"  scale {total} subs: RSS {out['rss_ready_mb']:.1f} -> {out['rss_held_mb']:.1f} MB"
          f" ({out['kb_per_subscription']:.1f} KB/sub), ramp {ramp_s:.1f}s, subscribe p50 "
          f"{out['subscribe_us']['p50'] / 1000:.0f} ms, attach p50 "
          f"{out['attach_us']['p50']:.0f} us, renew({per_client}) p50 "
          f"{out['renew_us']['p50']:.0f} us, {out['renew_cpu_us_per_lease']:.1f} us CPU/lease",
          flush=True)
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
