"""3. Fan-out: daemon CPU per tick with 1, 4 and 16 subscriber processes.

The simulator paces a steady tick rate over 100 conIds (``POST /pace``); 1, then 4, then 16
subscriber processes hold leases on all of them (the first one's leases start the streams; the
others share them). The daemon's CPU time (utime + stime from /proc) over the paced window,
divided by the ticks sent, is its cost per tick. The daemon publishes once per subject whatever
the number of subscribers (nats-server does the fan-out), so the cost should be flat; nats-server's
CPU is reported next to it.

On a small machine it is not flat for a reason of the machine's: 16 subscriber processes
decoding on 2 cores make every other process's CPU time per unit of work grow (wake-ups,
caches). So each fan-out also runs the control: a raw nats-py publisher (``rawpub``) at the same
rate to as many raw subscribers, its CPU per message measured the same way. The target is the
daemon's growth over the control's (``daemon 16/1`` / ``raw 16/1``): what twsbus itself adds as
subscribers join.

Both wires, each on a stack of its own (``WIRES``: the simulator's max 200, text, and 225,
protobuf, which the daemon negotiates). The result keeps the text wire's runs under ``runs`` and
has every wire's under ``wires`` (with the server version the daemon negotiated).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import WIRES, Child, CpuMeter, reset_all, stack, start_all, syn

FANOUTS = (1, 4, 16)
#: The daemon's clientId on the simulator (``stack()``'s default).
DAEMON_CLIENT_ID = 0


def run(quick: bool = False, tiny: bool = False,
        wires: Sequence[str] = ("text", "protobuf")) -> dict[str, Any]:
    n_con = 5 if tiny else 20 if quick else 100
    rate = 2000
    seconds = 0.3 if tiny else 1.0 if quick else 5.0
    fanouts = (1, 2) if tiny else (1, 4) if quick else FANOUTS
    out: dict[str, Any] = {"conIds": n_con, "rate": rate, "seconds": seconds, "runs": [],
                           "wires": {}}
    for wire in wires:
        out["wires"][wire] = _wire(wire, syn(n_con), rate, seconds, fanouts)
    # The text wire's runs where report.py has always read them.
    out["runs"] = out["wires"].get("text", next(iter(out["wires"].values())))["runs"]
    return out


def growth(runs: list[dict[str, Any]]) -> float | None:
    """The daemon's CPU per tick at the largest fan-out over 1 subscriber, divided by the raw
    publisher's growth under the same fan-out (runs without the control: the plain ratio)."""
    if not runs or not runs[0]["daemon_us_per_tick"]:
        return None
    first, last = runs[0], runs[-1]
    ratio: float = last["daemon_us_per_tick"] / first["daemon_us_per_tick"]
    if first.get("raw_us_per_msg") and last.get("raw_us_per_msg"):
        ratio /= last["raw_us_per_msg"] / first["raw_us_per_msg"]
    return ratio


def wire_targets(fo: dict[str, Any]) -> list[tuple[str, str, float | None, str, float, str]]:
    """``(benchmark, what, value, op, limit, unit)`` rows, as report.targets' ``add`` takes them:
    the flatness of each wire's fan-out over the raw control's (<= 1.1x), and the daemon's CPU
    per tick on protobuf over text at 1 subscriber (<= 1.5x)."""
    wires = fo.get("wires") or {}
    rows: list[tuple[str, str, float | None, str, float, str]] = []
    for wire, w in wires.items():
        if w["runs"]:
            label = "" if wire == "text" else f"{wire}: "
            rows.append(("fanout", f"{label}daemon CPU/tick, {w['runs'][-1]['subscribers']} "
                         "subs / 1 sub, over a raw publisher's", growth(w["runs"]), "<=", 1.1,
                         "x"))
    text, proto = wires.get("text"), wires.get("protobuf")
    if text and text["runs"] and proto and proto["runs"]:
        t1, p1 = text["runs"][0]["daemon_us_per_tick"], proto["runs"][0]["daemon_us_per_tick"]
        rows.append(("fanout", "daemon CPU/tick at 1 sub, protobuf / text",
                     p1 / t1 if t1 else None, "<=", 1.5, "x"))
    return rows


def _wire(wire: str, con_ids: list[int], rate: int, seconds: float,
          fanouts: Sequence[int]) -> dict[str, Any]:
    csv = ",".join(map(str, con_ids))
    out: dict[str, Any] = {"max_version": WIRES[wire], "runs": []}
    with stack(max_version=WIRES[wire]) as st:
        subs: list[Child] = []
        raw_subs: list[Child] = []
        for n in fanouts:
            new = [st.child("subscriber", "--nats", st.url, "--conids", csv, name=f"sub{i}")
                   for i in range(len(subs), n)]
            new_raw = [st.child("subscriber", "--nats", st.url, "--conids", csv, "--raw",
                                name=f"raw{i}") for i in range(len(raw_subs), n)]
            start_all(new + new_raw, timeout=180)
            subs += new
            raw_subs += new_raw
            # a short warm-up so every new subscriber's TCP path is hot
            st.sim.control.post("/pace", conIds=con_ids, rate=rate, seconds=0.3)
            st.sim.wait_pace(30)
            time.sleep(0.3)
            reset_all(subs)
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
            raw_sent, raw_cpu = _raw_control(st, raw_subs, csv, rate, seconds)
            row = {"subscribers": n, "ticks": sent, "wall_s": meter.wall, "cpu_s": cpu,
                   "daemon_us_per_tick": cpu["daemon"] / max(1, sent) * 1e6,
                   "nats_us_per_tick": cpu["nats"] / max(1, sent) * 1e6,
                   "raw_us_per_msg": raw_cpu / max(1, raw_sent) * 1e6,
                   "received_min": min(received), "received_max": max(received)}
            out["runs"].append(row)
            print(f"  fanout {wire:8s} {n:>2} subscribers: daemon "
                  f"{row['daemon_us_per_tick']:.1f} us/tick, nats-server "
                  f"{row['nats_us_per_tick']:.1f} us/tick, raw publisher "
                  f"{row['raw_us_per_msg']:.1f} us/msg, msgs/sub "
                  f"{min(received)}..{max(received)}", flush=True)
        out["version"] = st.sim.versions().get(DAEMON_CLIENT_ID)
    return out


def _raw_control(st: Any, raw_subs: list[Child], csv: str, rate: int,
                 seconds: float) -> tuple[int, float]:
    """A raw nats-py publisher at ``rate`` to the raw subscribers: (messages sent, its CPU s
    over the publishing only)."""
    pub = Child("rawpub", "--nats", st.url, "--conids", csv, "--rate", str(rate),
                "--seconds", str(seconds), "--on-go", name="rawpub")
    try:
        pub.expect("ready", 60)
        meter = CpuMeter({"publisher": pub.pid}).start()
        pub.send("go")
        done = pub.expect("done", seconds + 60)
        cpu = meter.stop()
    finally:
        pub.stop(2)
    reset_all(raw_subs)
    return int(done["done"]), cpu["publisher"]


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
