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

Both wires, each on a stack of its own (``WIRES``): text (the simulator's max 200) and protobuf
(225; binary message ids, protobuf tickPrice/tickString). twsbus's daemon and stock ibapi
negotiate the simulator's max; ib_async offers at most 178, so it is on the text wire whatever the
simulator offers and runs once, in the text stack. Each twsbus row carries the daemon's CPU per
tick over the burst (``daemon_us_per_tick``). The result keeps the text wire's rows under
``clients`` and has every wire under ``wires``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import AAPL, WIRES, Child, CpuMeter, Stack, stack

CLIENTS = {"twsbus": AAPL, "ibapi": 272093, "ib_async": 8314}  # AAPL, MSFT, IBM
#: The daemon's clientId on the simulator (``stack()``'s default).
DAEMON_CLIENT_ID = 0


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
    row = {"count": count, "completed": True, "elapsed_s": elapsed, "rate": count / elapsed,
           "received": end["received"], "cpu_s": meter.cpu}
    if "daemon" in meter.cpu:
        row["daemon_us_per_tick"] = meter.cpu["daemon"] / count * 1e6
    return row


def _client_rows(st: Stack, client: str, con_id: int, serial: int, counts: list[int],
                 cap: float, wire: str) -> tuple[list[dict[str, Any]], int | None]:
    c = _start(st, client, con_id, serial)
    version = (st.sim.versions().get(DAEMON_CLIENT_ID) if client == "twsbus"
               else c.last.get("version"))
    rows = []
    for count in counts:
        row = burst(st, c, con_id, count, cap)
        rows.append(row)
        cpu = (f", daemon {row['daemon_us_per_tick']:.2f} us/tick"
               if "daemon_us_per_tick" in row else "")
        print(f"  throughput {wire:8s} {client:9s} {count:>9,}: " + (
            f"{row['rate']:>9,.0f} ticks/s in {row['elapsed_s']:.2f}s"
            f" ({row['received']:,} msgs){cpu}" if row["completed"] else
            f"did not complete within {cap:g}s ({row['received']:,} of {count:,})"),
            flush=True)
        if not row["completed"]:
            c.kill()  # its backlog would spill into the next burst
            c = _start(st, client, con_id, serial + 10 + len(rows))
        time.sleep(1.0)
    c.stop(2)
    c.kill()
    return rows, version


def run(quick: bool = False, tiny: bool = False, cap: float | None = None,
        wires: Sequence[str] = ("text", "protobuf")) -> dict[str, Any]:
    counts = [2_000, 5_000] if tiny else [10_000, 50_000] if quick else [100_000, 1_000_000]
    cap = cap or (20.0 if quick or tiny else 90.0)
    ib_async_wire = "text" if "text" in wires else wires[0]
    results: dict[str, Any] = {"counts": counts, "cap_s": cap, "clients": {}, "wires": {}}
    for wire in wires:
        max_version = WIRES[wire]
        result: dict[str, Any] = {"max_version": max_version, "versions": {}, "clients": {}}
        results["wires"][wire] = result
        with stack(max_version=max_version) as st:
            # No regular ticks around the bursts: a trade's LAST_TIMESTAMP arriving right behind
            # "blast-end" would overwrite it in the daemon's latest-value-wins conflation.
            st.sim.control.post("/config", tick_interval=3600)
            time.sleep(0.3)  # the regular tick loops finish their current 0.25 s sleep
            for serial, (client, con_id) in enumerate(CLIENTS.items()):
                if client == "ib_async" and wire != ib_async_wire:
                    continue
                rows, version = _client_rows(st, client, con_id, serial, counts, cap, wire)
                result["clients"][client] = rows
                result["versions"][client] = version
        print(f"  throughput {wire} wire: versions {result['versions']}", flush=True)
    # The text wire's rows where report.py has always read them.
    results["clients"] = results["wires"].get("text", next(iter(results["wires"].values()))
                                              )["clients"]
    return results


# ---- targets and tables (report.py calls these) ------------------------------------------------


def rate_of(rows: list[dict[str, Any]] | None, count: int) -> float | None:
    """The ticks/s of a consumer on the ``count`` burst (0.0 when it did not finish)."""
    for row in rows or []:
        if row["count"] == count:
            return float(row["rate"]) if row["completed"] else 0.0
    return None


def rival_rate(rows: list[dict[str, Any]] | None, count: int) -> tuple[float | None, bool]:
    """A competitor's ticks/s on the ``count`` burst, and whether that is only a bound: one that
    did not finish within the cap would have taken longer, so its rate is below count / cap,
    and twsbus's rate over that bound is a lower bound of the true ratio."""
    for row in rows or []:
        if row["count"] == count:
            if row["completed"]:
                return float(row["rate"]), False
            return count / row["cap_s"], True
    return None, False


def rival_ratio(ours: float | None, rows: list[dict[str, Any]] | None, count: int,
                rival: str) -> tuple[float | None, str]:
    """twsbus's rate over a competitor's on ``count``, and the note a bound needs."""
    theirs, bound = rival_rate(rows, count)
    ratio = _ratio(ours, theirs)
    note = f" (at least: {rival} did not finish)" if bound and ratio is not None else ""
    return ratio, note


def _cpu(rows: list[dict[str, Any]] | None, count: int) -> float | None:
    for row in rows or []:
        if row["count"] == count and row["completed"]:
            return row.get("daemon_us_per_tick")
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def wire_targets(tp: dict[str, Any]) -> list[tuple[str, str, float | None, str, float, str]]:
    """The protobuf wire's target rows ``(benchmark, what, value, op, limit, unit)``, as
    report.targets' ``add`` takes them: twsbus / stock ibapi on protobuf (>= 1.0x, both bursts)
    and twsbus protobuf within 1.5x of twsbus text on the big burst, by ticks/s (protobuf / text
    >= 1/1.5) and by the daemon's CPU per tick over the burst (protobuf / text <= 1.5). Empty
    without a protobuf run."""
    wires = tp.get("wires") or {}
    text, proto = wires.get("text"), wires.get("protobuf")
    if not proto:
        return []
    rows: list[tuple[str, str, float | None, str, float, str]] = []
    pc = proto["clients"]
    for count in tp["counts"]:
        ratio, note = rival_ratio(rate_of(pc.get("twsbus"), count), pc.get("ibapi"), count, "ibapi")
        rows.append(("throughput", f"protobuf: twsbus / stock ibapi, {count:,} burst{note}",
                     ratio, ">=", 1.0, "x"))
    if text:  # on the big burst: the CPU clock ticks in 10 ms, a small burst is a few of them
        tc, big = text["clients"], tp["counts"][-1]
        rows.append(("throughput", f"twsbus ticks/s protobuf / text, {big:,} burst",
                     _ratio(rate_of(pc.get("twsbus"), big), rate_of(tc.get("twsbus"), big)),
                     ">=", round(1 / 1.5, 2), "x"))
        rows.append(("throughput", f"daemon CPU/tick protobuf / text, {big:,} burst",
                     _ratio(_cpu(pc.get("twsbus"), big), _cpu(tc.get("twsbus"), big)),
                     "<=", 1.5, "x"))
    return rows


def render_wires(tp: dict[str, Any]) -> str:
    """The per-wire markdown table: ticks/s and the daemon's CPU per tick, each client's
    negotiated server version."""
    lines = ["| wire | consumer | server version | burst | ticks/s | seconds | "
             "messages received | daemon CPU us/tick |", "|" + "---|" * 8]
    for wire, w in (tp.get("wires") or {}).items():
        for client, rows in w["clients"].items():
            for row in rows:
                done = row["completed"]
                cpu = row.get("daemon_us_per_tick")
                cells = [wire, client, w["versions"].get(client), f"{row['count']:,}",
                         f"{row['rate']:,.0f}" if done else f"not within {tp['cap_s']:g} s",
                         f"{row['elapsed_s']:.2f}" if done else "-", f"{row['received']:,}",
                         "-" if cpu is None else f"{cpu:.2f}"]
                lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
