"""3. Fan-out: daemon CPU per tick with 1, 4 and 16 subscriber processes.

The simulator paces a steady tick rate over 100 conIds (``POST /pace``); 1, then 4, then 16
subscriber processes hold leases on all of them (the first one's leases start the streams; the
others share them). The daemon's CPU time (utime + stime from /proc) over the paced window,
divided by the ticks sent, is its cost per tick. The daemon publishes once per subject whatever
the number of subscribers (nats-server does the fan-out), so the cost should be flat; nats-server's
CPU is reported next to it.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import Child, CpuMeter, stack, start_all, syn

FANOUTS = (1, 4, 16)


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    n_con = 5 if tiny else 20 if quick else 100
    rate = 2000
    seconds = 0.3 if tiny else 1.0 if quick else 5.0
    fanouts = (1, 2) if tiny else (1, 4) if quick else FANOUTS
    con_ids = syn(n_con)
    csv = ",".join(map(str, con_ids))
    out: dict[str, Any] = {"conIds": n_con, "rate": rate, "seconds": seconds, "runs": []}
    with stack() as st:
        subs: list[Child] = []
        for n in fanouts:
            new = [st.child("subscriber", "--nats", st.url, "--conids", csv, name=f"sub{i}")
                   for i in range(len(subs), n)]
            start_all(new, timeout=180)
            subs += new
            # a short warm-up so every new subscriber's TCP path is hot
            st.sim.control.post("/pace", conIds=con_ids, rate=rate, seconds=0.3)
            st.sim.wait_pace(30)
            time.sleep(0.3)
            for s in subs:
                s.send("reset")
            for s in subs:
                s.expect("reset", 10)
            meter = CpuMeter({"daemon": st.daemon_pid, "nats": st.nats_pid,
                              "sim": st.sim.pid}).start()
            st.sim.control.post("/pace", conIds=con_ids, rate=rate, seconds=seconds)
            state = st.sim.wait_pace(seconds + 60)
            time.sleep(0.3)
            cpu = meter.stop()
            received = []
            for s in subs:
                s.send("report")
                received.append(int(s.expect("report", 30)["received"]))
            sent = int(state.get("sent") or 0)
            row = {"subscribers": n, "ticks": sent, "wall_s": meter.wall, "cpu_s": cpu,
                   "daemon_us_per_tick": cpu["daemon"] / max(1, sent) * 1e6,
                   "nats_us_per_tick": cpu["nats"] / max(1, sent) * 1e6,
                   "received_min": min(received), "received_max": max(received)}
            out["runs"].append(row)
            print(f"  fanout {n:>2} subscribers: daemon {row['daemon_us_per_tick']:.1f} us/tick,"
                  f" nats-server {row['nats_us_per_tick']:.1f} us/tick, msgs/sub "
                  f"{min(received)}..{max(received)}", flush=True)
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
