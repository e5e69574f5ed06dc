"""2. Latency: simulator send -> subscriber receive, at steady rates, next to raw NATS.

The simulator's ``POST /pace`` sends ``rate`` ticks/s round-robin over 100 conIds (synthetic
stocks), each tick a tickPrice plus a tickString (type 45) holding ``time.time_ns()`` at send.
Four subscriber processes each hold a lease on all 100 conIds; each message they receive whose
``lastTimestamp`` is a send time gives one sample (receive ns - send ns; same host clock). The
floor is the same four subscriber processes' twins on ``bench.raw.<conId>`` fed by a raw nats-py
publisher process (benchmarks.rawpub) at the same rate, same pacing, same message shape. Added
latency = twsbus percentile - raw percentile. Each twsbus message also carries ``ts``, the
daemon's receive time of its newest data, which splits the path: send -> daemon receive (the
TWS socket and the decode) and daemon receive -> subscriber (publisher, NATS, the subscriber).

The two paths take turns in short rounds (twsbus then raw, raw then twsbus, ...) and each path's
samples are pooled over its rounds, so a shift in what else the shared machine is doing lands
on both; ``added_p50_by_round`` shows the spread. Each wire runs on its own stack: the text
wire (server version 200) at 1,000 and 10,000 ticks/s, the protobuf wire (225) at 10,000.
"""

from __future__ import annotations

import array
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    WIRES,
    Child,
    CpuMeter,
    Stack,
    reset_all,
    stack,
    start_all,
    summary,
    syn,
)


def _load(path: Path) -> list[float]:
    a = array.array("q")
    with open(path, "rb") as fh:
        a.frombytes(fh.read())
    return [x / 1000 for x in a]  # us


def _collect(subs: list[Child], tmp: Path, tag: str) -> tuple[list[float], list[int],
                                                             list[float]]:
    samples: list[float] = []
    hops: list[float] = []
    received = []
    for i, s in enumerate(subs):
        path = tmp / f"{tag}-{i}.bin"
        s.send(f"report {path}")
        r = s.expect("report", 30)
        received.append(int(r["received"]))
        samples += _load(path)
        hops += _load(Path(f"{path}.hop"))
    return samples, received, hops


def twsbus_run(st: Stack, subs: list[Child], con_ids: list[int], rate: int, seconds: float,
               tmp: Path, tag: str) -> dict[str, Any]:
    reset_all(subs)
    meter = CpuMeter({"daemon": st.daemon_pid, "sim": st.sim.pid, "nats": st.nats_pid}).start()
    st.sim.control.post("/pace", conIds=con_ids, rate=rate, seconds=seconds)
    state = st.sim.wait_pace(seconds + 60)
    time.sleep(0.5)
    meter.stop()
    samples, received, hops = _collect(subs, tmp, tag)
    return {"sent": state.get("sent"), "late": state.get("late"), "received": received,
            "samples": samples, "hops": hops, "cpu_s": meter.cpu}


def raw_run(st: Stack, subs: list[Child], con_ids: list[int], rate: int, seconds: float,
            tmp: Path, tag: str) -> dict[str, Any]:
    reset_all(subs)
    pub = Child("rawpub", "--nats", st.url, "--conids", ",".join(map(str, con_ids)),
                "--rate", str(rate), "--seconds", str(seconds), name="rawpub")
    meter = CpuMeter({"publisher": pub.pid, "nats": st.nats_pid}).start()
    done = pub.expect("done", seconds + 60)
    time.sleep(0.5)
    meter.stop()
    pub.stop(2)
    samples, received, _ = _collect(subs, tmp, tag)
    return {"sent": done["done"], "late": 0, "received": received, "samples": samples,
            "cpu_s": meter.cpu}


def _pool(runs: list[dict[str, Any]], rate: int, seconds: float) -> dict[str, Any]:
    """One path's rounds as one result: samples pooled, counts and CPU summed."""
    cpu: dict[str, float] = {}
    for r in runs:
        for k, v in r["cpu_s"].items():
            cpu[k] = cpu.get(k, 0.0) + v
    out: dict[str, Any] = {
        "rate": rate, "seconds": seconds, "rounds": len(runs),
        "sent": sum(r["sent"] or 0 for r in runs), "late": sum(r["late"] or 0 for r in runs),
        "received_per_sub": [sum(col) for col in zip(*(r["received"] for r in runs), strict=True)],
        "lat_us": summary([x for r in runs for x in r["samples"]]), "cpu_s": cpu}
    if "hops" in runs[0]:
        out["daemon_to_sub_us"] = summary([x for r in runs for x in r["hops"]])
    return out


#: The raw NATS floor is too unsteady to measure an added latency against when its p99 is over
#: this many times its p50, or its p50 moves by more than this factor between rounds.
FLOOR_TAIL_MAX = 10.0
FLOOR_DRIFT_MAX = 2.0


def floor_unstable(raw_us: dict[str, float], raw_p50_by_round: list[float]) -> str | None:
    """Why the machine cannot make this measurement (None when it can): an "added" latency is a
    difference of two runs, which means nothing when the floor itself moves more than the
    effect (a run once printed -82,866 us added at p99 and called it a pass)."""
    p50, p99 = raw_us.get("p50"), raw_us.get("p99")
    if p50 and p99 and p99 > FLOOR_TAIL_MAX * p50:
        return f"raw NATS p99 {p99:,.0f} us is over {FLOOR_TAIL_MAX:g}x its p50 {p50:,.0f} us"
    rounds = [x for x in raw_p50_by_round if x > 0]
    if len(rounds) > 1 and max(rounds) > FLOOR_DRIFT_MAX * min(rounds):
        return (f"raw NATS p50 moved from {min(rounds):,.0f} to {max(rounds):,.0f} us between "
                f"rounds (over {FLOOR_DRIFT_MAX:g}x)")
    return None


#: The rates measured on each wire (the protobuf wire at the rate the target is set for).
WIRE_RATES = {"text": [1000, 10000], "protobuf": [10000]}


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    n_con, n_subs = (5, 2) if tiny else (20, 4) if quick else (100, 4)
    seconds = 0.3 if tiny else 1.0 if quick else 5.0
    rounds = 1 if tiny else 2 if quick else 5
    out: dict[str, Any] = {"conIds": n_con, "subscribers": n_subs, "seconds": seconds,
                           "rounds": rounds, "wires": {}}
    for wire, rates in WIRE_RATES.items():
        out["wires"][wire] = {"version": WIRES[wire], "rates": _wire(
            WIRES[wire], rates, syn(n_con), n_subs, seconds, rounds, warm=not tiny)}
    return out


def _wire(version: int, rates: list[int], con_ids: list[int], n_subs: int, seconds: float,
          rounds: int, warm: bool) -> dict[str, Any]:
    """Each rate on one stack whose simulator speaks at most ``version``."""
    csv = ",".join(map(str, con_ids))
    out: dict[str, Any] = {}
    with stack(max_version=version) as st, \
            tempfile.TemporaryDirectory(prefix="twsbus-bench-") as tmpdir:
        tmp = Path(tmpdir)
        subs = [st.child("subscriber", "--nats", st.url, "--conids", csv, name=f"sub{i}")
                for i in range(n_subs)]
        raw_subs = [st.child("subscriber", "--nats", st.url, "--conids", csv, "--raw",
                             name=f"raw{i}") for i in range(n_subs)]
        start_all(subs + raw_subs, timeout=180)
        if warm:  # warm up both paths (first-message allocations, TCP windows)
            twsbus_run(st, subs, con_ids, 1000, 0.5, tmp, "warm")
            raw_run(st, raw_subs, con_ids, 1000, 0.5, tmp, "warm")
        for rate in rates:
            tw_runs: list[dict[str, Any]] = []
            raw_runs: list[dict[str, Any]] = []
            for i in range(rounds):
                tag, block = f"{rate}-{i}", seconds / rounds
                for path in ("twsbus", "raw") if i % 2 == 0 else ("raw", "twsbus"):
                    if path == "twsbus":
                        tw_runs.append(twsbus_run(st, subs, con_ids, rate, block, tmp,
                                                  f"tws-{tag}"))
                    else:
                        raw_runs.append(raw_run(st, raw_subs, con_ids, rate, block, tmp,
                                                f"raw-{tag}"))
            tw, raw = _pool(tw_runs, rate, seconds), _pool(raw_runs, rate, seconds)
            added = {k: tw["lat_us"][k] - raw["lat_us"][k] for k in ("p50", "p99", "p99.9")}
            by_round = [summary(t["samples"])["p50"] - summary(r["samples"])["p50"]
                        for t, r in zip(tw_runs, raw_runs, strict=True)]
            raw_by_round = [summary(r["samples"])["p50"] for r in raw_runs]
            out[str(rate)] = {"twsbus": tw, "raw": raw, "added_us": added,
                              "added_p50_by_round": by_round, "raw_p50_by_round": raw_by_round,
                              "inconclusive": floor_unstable(raw["lat_us"], raw_by_round)}
            print(f"  latency v{version} {rate:>6}/s  twsbus p50/p99/p99.9 "
                  f"{tw['lat_us']['p50']:.0f}/{tw['lat_us']['p99']:.0f}/"
                  f"{tw['lat_us']['p99.9']:.0f} us   raw {raw['lat_us']['p50']:.0f}/"
                  f"{raw['lat_us']['p99']:.0f}/{raw['lat_us']['p99.9']:.0f} us   added p50 "
                  f"by round {' '.join(f'{x:.0f}' for x in by_round)}", flush=True)
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
