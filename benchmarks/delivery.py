"""6. Delivery: every tick must arrive. Tick-by-tick AllLast bursts, which nothing conflates.

The throughput benchmark measures decoding more than delivery: the daemon merges tick fields
(latest value wins), so 100,000 tickPrice frames reach its subscriber as a handful of messages.
Here the simulator's ``POST /blast`` with ``kind: "tbt"`` writes N prebuilt tick-by-tick trades
(tickType AllLast, the last one with specialConditions "blast-end") to every AllLast subscriber
of a conId, as fast as the sockets drain. The clock runs from the blast request to the receiver
seeing "blast-end" (``time.time_ns()`` on both sides, one machine); delivered ticks/s is
the ticks it counted / elapsed (for 4 subscribers: the fewest any of them counted, over the time
the last one saw the end). A receiver that counted fewer than N ticks lost some: a failure,
reported as such (``lost``; for twsbus, the daemon's own count of what it dropped from its publish
buffer during the burst is ``daemon_dropped``).

Receivers, one after another on the same simulator process, each on its own conId:

- twsbus at 1 subscriber process, then at 4 (the same daemon stream; nats-server fans out, and
  every process must get all N): the daemon, nats-server and benchmarks.subscriber ``--tbt``
  (a ``tws.sub.tbt`` lease, tickType AllLast, every message decoded, every tick counted).
- stock ibapi in its own process, a no-op tickByTickAllLast that counts.
- ib_async in its own process, its own tickByTickAllLast (Ticker update, pending-tickers event)
  behind a counting hook.

Each wire runs on its own stack (``WIRES``): text (the simulator's max 200) and protobuf (225).
twsbus and ibapi negotiate the simulator's max; ib_async (at most 178) is on the text wire
whatever the simulator offers, so it runs once, in the text stack (or the only stack of the
run). The simulator's regular ticks are switched off (tick_interval 3600 s) so the burst is
all that flows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import WIRES, Child, CpuMeter, Stack, reset_all, stack

#: One conId per receiver so a burst reaches only the one measured (AAPL, MSFT, IBM).
CON_IDS = {"twsbus": 265598, "ibapi": 272093, "ib_async": 8314}
FANOUTS = (1, 4)
#: The daemon's clientId on the simulator (``stack()``'s default).
DAEMON_CLIENT_ID = 0


def sizes(quick: bool, tiny: bool) -> tuple[list[int], float, tuple[int, ...]]:
    """(burst counts, cap in seconds per burst, subscriber fan-outs) for a run size."""
    if tiny:
        return [300], 20.0, (1,)
    if quick:
        return [20_000], 30.0, FANOUTS
    return [100_000, 500_000], 120.0, FANOUTS


def _start_baseline(st: Stack, client: str, serial: int) -> Child:
    module = "ibapi_client" if client == "ibapi" else "ibasync_client"
    c = st.child(module, "--port", str(st.sim.port), "--conid", str(CON_IDS[client]),
                 "--client-id", str(60 + serial), "--tbt", name=client)
    c.expect("ready", 60)
    return c


def _start_subscribers(st: Stack, first: int, n: int) -> list[Child]:
    subs = [st.child("subscriber", "--nats", st.url, "--conids", str(CON_IDS["twsbus"]),
                     "--tbt", name=f"sub{i}") for i in range(first, n)]
    for s in subs:
        s.expect("ready", 120)
    return subs


def _daemon_dropped(st: Stack) -> int:
    """What the daemon has dropped from its publish buffers so far (its status)."""
    status = st.daemon.status(timeout=5) or {}
    return int((status.get("dropped") or {}).get("publish_buffer", 0))


def burst(st: Stack, receivers: list[Child], con_id: int, count: int, cap: float,
          pids: dict[str, int]) -> dict[str, Any]:
    """One burst of ``count`` trades to every receiver; each must count exactly ``count``."""
    reset_all(receivers)
    dropped0 = _daemon_dropped(st) if "daemon" in pids else 0
    meter = CpuMeter({"sim": st.sim.pid, **pids}).start()
    t0 = time.time_ns()
    sent = st.sim.control.post("/blast", conId=con_id, count=count, kind="tbt")
    deadline = time.monotonic() + cap
    ends: list[int] = []
    received: list[int] = []
    completed = True
    for c in receivers:
        try:
            end = c.expect("end", max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            completed = False
            received.append(int(c.last.get("progress", 0)))
            continue
        ends.append(end["end"])
        received.append(int(end["received"]))
    meter.stop()
    # Lost: counted short by a receiver that saw the end (ticks that can no longer come). One
    # that did not see it within the cap is slow, not known to have lost anything: not counted.
    row: dict[str, Any] = {"count": count, "sessions": sent.get("sessions"),
                           "completed": completed, "received": received,
                           "lost": sum(max(0, count - r) for r in received) if completed else 0,
                           "extra": sum(max(0, r - count) for r in received),
                           "cpu_s": meter.cpu}
    if completed:
        elapsed = (max(ends) - t0) / 1e9
        row |= {"elapsed_s": elapsed, "rate": min(received) / elapsed,
                "rate_each": [r / ((e - t0) / 1e9) for r, e in zip(received, ends, strict=True)]}
    else:
        row |= {"cap_s": cap, "rate": min(received) / cap}
    if "daemon" in meter.cpu:
        row["daemon_us_per_tick"] = meter.cpu["daemon"] / count * 1e6
        row["daemon_dropped"] = _daemon_dropped(st) - dropped0
    return row


def _line(label: str, row: dict[str, Any]) -> str:
    head = f"  delivery {label:22s} {row['count']:>9,}: "
    if not row["completed"]:
        return head + f"did not complete within {row['cap_s']:g}s (received {row['received']})"
    text = f"{row['rate']:>9,.0f} ticks/s in {row['elapsed_s']:.2f}s"
    if "daemon_us_per_tick" in row:
        text += f", daemon {row['daemon_us_per_tick']:.1f} us/tick"
    if row["lost"] or row["extra"]:
        text += (f"  ** LOST {row['lost']:,} / extra {row['extra']:,} (received "
                 f"{row['received']}; daemon dropped {row.get('daemon_dropped', '-')})")
    return head + text


def _twsbus(st: Stack, counts: list[int], cap: float,
            fanouts: Sequence[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    subs: list[Child] = []
    for n in fanouts:
        subs += _start_subscribers(st, len(subs), n)
        st.sim.wait_subscribed("tbt", CON_IDS["twsbus"], 1, 10)  # the daemon's one request
        pids = {"daemon": st.daemon_pid, "nats": st.nats_pid} | {
            s.name: s.pid for s in subs}
        for count in counts:
            row = {"subscribers": n} | burst(st, subs, CON_IDS["twsbus"], count, cap, pids)
            rows.append(row)
            print(_line(f"twsbus x{n}", row), flush=True)
            if not row["completed"]:
                return rows  # a backlog would spill into the next burst
            time.sleep(0.5)
    return rows


def _baseline(st: Stack, client: str, counts: list[int], cap: float,
              serial: int) -> tuple[list[dict[str, Any]], int | None]:
    c = _start_baseline(st, client, serial)
    version = c.last.get("version")
    st.sim.wait_subscribed("tbt", CON_IDS[client], 1, 10)
    rows = []
    try:
        for count in counts:
            row = burst(st, [c], CON_IDS[client], count, cap, {"client": c.pid})
            rows.append(row)
            print(_line(client, row), flush=True)
            if not row["completed"]:
                break
            time.sleep(0.5)
    finally:
        c.stop(2)
        c.kill()
    return rows, version


def run(quick: bool = False, tiny: bool = False,
        wires: Sequence[str] = ("text", "protobuf")) -> dict[str, Any]:
    counts, cap, fanouts = sizes(quick, tiny)
    ib_async_wire = "text" if "text" in wires else wires[0]
    out: dict[str, Any] = {"counts": counts, "cap_s": cap, "fanouts": list(fanouts),
                           "wires": {}}
    for wire in wires:
        max_version = WIRES[wire]
        result: dict[str, Any] = {"max_version": max_version, "versions": {}, "receivers": {}}
        out["wires"][wire] = result
        with stack(max_version=max_version) as st:
            st.sim.control.post("/config", tick_interval=3600)
            result["receivers"]["twsbus"] = _twsbus(st, counts, cap, fanouts)
            result["versions"]["twsbus"] = st.sim.versions().get(DAEMON_CLIENT_ID)
            for serial, client in enumerate(("ibapi", "ib_async")):
                if client == "ib_async" and wire != ib_async_wire:
                    continue
                rows, version = _baseline(st, client, counts, cap, serial)
                result["receivers"][client] = rows
                result["versions"][client] = version
        print(f"  delivery {wire} wire: versions {result['versions']}", flush=True)
    out["lost"] = sum(row["lost"] for w in out["wires"].values()
                      for rows in w["receivers"].values() for row in rows)
    out["all_completed"] = all(row["completed"] for w in out["wires"].values()
                               for rows in w["receivers"].values() for row in rows)
    return out


# ---- targets and tables (report.py calls these) ------------------------------------------------


def _rate(rows: list[dict[str, Any]] | None, count: int, subscribers: int | None = None
          ) -> float | None:
    for row in rows or []:
        if row["count"] == count and row.get("subscribers") in (None, subscribers):
            return float(row["rate"]) if row["completed"] else 0.0
    return None


def targets(d: dict[str, Any]) -> list[tuple[str, str, float | None, str, float, str]]:
    """Target rows ``(benchmark, what, value, op, limit, unit)``, as report.targets' ``add``
    takes them: twsbus delivered ticks/s at 1 and at 4 subscriber processes over ib_async's
    (>= 1.0x, per wire, on the smallest burst), and the ticks lost (<= 0: a lost tick fails the
    run whatever the rates say)."""
    rows: list[tuple[str, str, float | None, str, float, str]] = []
    wires = d.get("wires") or {}
    count = d["counts"][0]
    ib_async = next((w["receivers"]["ib_async"] for w in wires.values()
                     if "ib_async" in w["receivers"]), None)
    ia = _rate(ib_async, count)
    for wire, w in wires.items():
        for n in d.get("fanouts", FANOUTS):
            tw = _rate(w["receivers"].get("twsbus"), count, n)
            rows.append(("delivery", f"{wire}: twsbus {n} sub / ib_async, {count:,} ticks",
                         None if tw is None or not ia else tw / ia, ">=", 1.0, "x"))
    rows.append(("delivery", "ticks lost (all receivers, all wires)", float(d.get("lost", 0)),
                 "<=", 0, "ticks"))
    return rows


def render(d: dict[str, Any]) -> str:
    """The markdown table of a delivery result."""
    lines = ["| wire | receiver | server version | burst | delivered ticks/s | seconds | "
             "ticks received | daemon CPU us/tick |", "|" + "---|" * 8]
    for wire, w in (d.get("wires") or {}).items():
        for receiver, rows in w["receivers"].items():
            for row in rows:
                who = (f"twsbus, {row['subscribers']} subscriber process"
                       f"{'es' if row['subscribers'] > 1 else ''}" if receiver == "twsbus"
                       else receiver)
                done = row["completed"]
                rate = f"{row['rate']:,.0f}" if done else f"not within {row['cap_s']:g} s"
                got = ", ".join(f"{r:,}" for r in row["received"])
                if row["lost"]:
                    got += f" (**{row['lost']:,} lost**"
                    dropped = row.get("daemon_dropped")
                    got += f", daemon dropped {dropped:,})" if dropped is not None else ")"
                cpu = row.get("daemon_us_per_tick")
                cells = [wire, who, w["versions"].get(receiver), f"{row['count']:,}", rate,
                         f"{row['elapsed_s']:.2f}" if done else "-", got,
                         "-" if cpu is None else f"{cpu:.1f}"]
                lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m benchmarks.delivery")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--wires", default="text,protobuf", help="comma-separated: " + ",".join(WIRES))
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args()
    result = run(args.quick, args.tiny, [w for w in args.wires.split(",") if w])
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    else:
        print(text)
