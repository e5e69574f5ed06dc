"""Targets, the machine, and rendering results as text and as BENCHMARKS.md tables."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import delivery, fanout, throughput
from benchmarks.common import ROOT

MD = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("nautilus-ibapi", "ibapi", "ib_async", "nats-py", "msgspec"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        from twsbus.testing import nats_server_binary

        nats_version = subprocess.run([nats_server_binary(), "--version"], capture_output=True,
                                      text=True, timeout=5).stdout.strip()
    except Exception:
        nats_version = "?"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cores": os.cpu_count(), "cpu": model, "memory_gb": round(mem_gb, 1),
            "kernel": platform.release(), "python": sys.version.split()[0],
            "nats_server": nats_version, "versions": versions}


def _get(d: Any, *path: Any) -> Any:
    for key in path:
        if d is None:
            return None
        d = d[key] if isinstance(d, list) else d.get(key)
    return d


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """(benchmark, what, value, target, pass) rows; value None when not measured."""
    rows: list[dict[str, Any]] = []

    def add(bench: str, what: str, value: float | None, op: str, limit: float,
            unit: str = "x", inconclusive: str | None = None) -> None:
        ok = None if inconclusive or value is None or math.isnan(value) else (
            value >= limit if op == ">=" else value <= limit)
        rows.append({"benchmark": bench, "what": what, "value": value, "target": f"{op} {limit:g}"
                     f"{'' if unit == 'x' else ' ' + unit}", "unit": unit, "pass": ok,
                     "inconclusive": inconclusive})

    tp = _get(results, "throughput")
    if tp:
        small, big = tp["counts"]
        clients = tp["clients"]
        tw_s = throughput.rate_of(clients.get("twsbus"), small)
        tw_b = throughput.rate_of(clients.get("twsbus"), big)
        div = lambda a, b: None if a is None or not b else a / b  # noqa: E731
        ratio, note = throughput.rival_ratio(tw_s, clients.get("ibapi"), small, "ibapi")
        add("throughput", f"twsbus / stock ibapi, {small:,} burst{note}", ratio, ">=", 1.0)
        add("throughput", f"twsbus {big:,} / twsbus {small:,} (no collapse)", div(tw_b, tw_s),
            ">=", 0.8)
        for count, ours in ((small, tw_s), (big, tw_b)):
            ratio, note = throughput.rival_ratio(ours, clients.get("ib_async"), count, "ib_async")
            add("throughput", f"twsbus / ib_async, {count:,} burst{note}", ratio, ">=", 1.0)
        for row in throughput.wire_targets(tp):
            add(*row)
    for wire, w in _latency_wires(results.get("latency")).items():
        lat_10k = w["rates"].get("10000") or {}
        lat = lat_10k.get("added_us")
        if lat:
            why = lat_10k.get("inconclusive")  # the raw NATS floor was unstable: no verdict
            label = "" if wire == "text" else f"{wire}: "
            add("latency", f"{label}added over raw NATS at 10k ticks/s, p50", lat["p50"], "<=",
                200, "us", why)
            add("latency", f"{label}added over raw NATS at 10k ticks/s, p99", lat["p99"], "<=",
                1000, "us", why)
    fo = _get(results, "fanout")
    if fo and fo.get("wires"):
        for row in fanout.wire_targets(fo):
            add(*row)
    elif fo and fo.get("runs"):  # a run from before the wires
        last = fo["runs"][-1]
        add("fanout", f"daemon CPU/tick, {last['subscribers']} subs / 1 sub",
            fanout.growth(fo["runs"]), "<=", 1.1)
    q = _get(results, "queries", "ops")
    if q:
        for op in ("current_time", "contract_details"):
            add("queries", f"{op} p50 / raw NATS p50", q[op]["p50_over_raw"], "<=", 3.0)
    sc = _get(results, "scale")
    if sc and "kb_per_subscription" in sc:
        add("scale", "memory per live subscription", sc["kb_per_subscription"], "<=", 20, "KB")
        add("scale", f"daemon RSS at {sc['subscriptions']:,} subscriptions", sc["rss_held_mb"],
            "<=", 150, "MB")
    dl = _get(results, "delivery")
    if dl and "wires" in dl:
        for row in delivery.targets(dl):
            add(*row)
    hist = _get(results, "hist", "twsbus")
    if hist:
        add("hist", "pacing violations (162) through twsbus", hist["violations"], "<=", 0, "")
        add("hist", "total time / the rules' lower bound", hist["ratio"], "<=", 1.2)
    return rows


def _latency_wires(lat: dict[str, Any] | None) -> dict[str, Any]:
    """The latency results by wire (a run before the protobuf wire was measured has only the
    text wire's ``rates``)."""
    if not lat:
        return {}
    if "wires" in lat:
        return dict(lat["wires"])
    return {"text": {"version": 200, "rates": lat["rates"]}} if "rates" in lat else {}


def _verdict(r: dict[str, Any], bold: bool = False) -> str:
    if r.get("inconclusive"):
        return "inconclusive"
    text = {True: "pass", False: "MISS", None: "not measured"}[r["pass"]]
    return f"**{text}**" if bold and r["pass"] is not None else text


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def render(results: dict[str, Any]) -> str:
    """The results as markdown tables (what goes between the markers in BENCHMARKS.md)."""
    m = results.get("machine", {})
    parts = [
        f"Run {results.get('started', '?')} ({'quick' if results.get('quick') else 'full'}, "
        f"{results.get('wall_s', 0):.0f} s): `{results.get('command', '')}`  ",
        f"Machine: {m.get('cores')} cores, {m.get('cpu')}, {m.get('memory_gb')} GB, Linux "
        f"{m.get('kernel')}, Python {m.get('python')}, {m.get('nats_server')}, "
        + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()),
        "",
        "### Targets",
        "",
        _table(["benchmark", "measure", "value", "target", "result"], [
            [r["benchmark"], r["what"],
             _fmt(r["value"], 2 if r["unit"] == "x" else 1) + ("x" if r["unit"] == "x" else
                                                                " " + r["unit"]),
             r["target"], _verdict(r, bold=True)]
            for r in targets(results)]),
    ]
    why = [f"- {r['what']}: inconclusive, {r['inconclusive']}" for r in targets(results)
           if r.get("inconclusive")]
    if why:
        parts += ["", *why]
    tp = results.get("throughput")
    if tp and "clients" in tp:
        rows = []
        for client, runs in tp["clients"].items():
            for row in runs:
                cpu = row.get("cpu_s", {})
                rows.append([
                    client, _fmt(row["count"]),
                    _fmt(row["rate"]) if row["completed"] else
                    f"did not complete within {tp['cap_s']:g} s ({row['received']:,} of "
                    f"{row['count']:,} received)",
                    _fmt(row.get("elapsed_s"), 2), _fmt(row["received"]),
                    " / ".join(f"{k} {v:.2f}" for k, v in cpu.items())])
        parts += ["", "### 1. Throughput (burst from the simulator's socket to the callback)", "",
                  _table(["consumer", "burst", "ticks/s", "seconds", "messages received",
                          "CPU s during the burst"], rows)]
        if tp.get("wires"):
            parts += ["", "Per wire (text: the simulator's max 200; protobuf: 225; ib_async "
                      "speaks at most 178, so it is on the text wire):", "",
                      throughput.render_wires(tp)]
    lat = results.get("latency")
    wires = _latency_wires(lat)
    if wires:
        rows = []
        for wire, w in wires.items():
            for rate, r in w["rates"].items():
                lead = [wire, _fmt(w.get("version")), _fmt(int(rate))]
                for path in ("twsbus", "raw"):
                    s = r[path]["lat_us"]
                    rows.append([*lead, "twsbus" if path == "twsbus" else "raw nats-py",
                                 _fmt(s["p50"]), _fmt(s["p99"]), _fmt(s["p99.9"]),
                                 _fmt(s["max"]), _fmt(s["n"]), _fmt(r[path].get("sent"))])
                    hop = r[path].get("daemon_to_sub_us")
                    if hop:
                        rows.append([*lead, "twsbus: of which daemon receive -> subscriber",
                                     _fmt(hop["p50"]), _fmt(hop["p99"]), _fmt(hop["p99.9"]),
                                     _fmt(hop["max"]), "", ""])
                a = r["added_us"]
                rows.append([*lead, "**added by twsbus**", _fmt(a["p50"]), _fmt(a["p99"]),
                             _fmt(a["p99.9"]), "", "", ""])
        rounds = lat.get("rounds", 1)
        parts += ["", f"### 2. Latency (send -> subscriber callback, us; {lat['conIds']} conIds, "
                  f"{lat['subscribers']} subscriber processes, {lat['seconds']:g} s per rate and "
                  f"path, in {rounds} alternating rounds)", "",
                  _table(["wire", "server version", "ticks/s", "path", "p50", "p99", "p99.9",
                          "max", "samples", "sent"], rows)]
        every = [(wire, rate, r) for wire, w in wires.items() for rate, r in w["rates"].items()]
        spread = [f"{wire} {int(rate):,}/s: " + ", ".join(f"{x:.0f}"
                                                          for x in r["added_p50_by_round"])
                  for wire, rate, r in every if r.get("added_p50_by_round")]
        if spread:
            parts += ["", "Added p50 round by round (us): " + "; ".join(spread) + "."]
        unstable = [f"{wire} {int(rate):,}/s: {r['inconclusive']} (raw p50 by round: "
                    + ", ".join(f"{x:.0f}" for x in r.get("raw_p50_by_round", [])) + " us)"
                    for wire, rate, r in every if r.get("inconclusive")]
        if unstable:
            parts += ["", "**Inconclusive** (this machine cannot measure the added latency): "
                      + "; ".join(unstable) + "."]
    fo = results.get("fanout")
    if fo and "runs" in fo:
        rows = [[r["subscribers"], _fmt(r["ticks"]), _fmt(r["daemon_us_per_tick"], 1),
                 _fmt(r["nats_us_per_tick"], 1), _fmt(r["cpu_s"]["daemon"], 2),
                 f"{r['received_min']:,}..{r['received_max']:,}"] for r in fo["runs"]]
        if fo.get("wires"):
            rows = [[wire, w.get("version"), r["subscribers"], _fmt(r["ticks"]),
                     _fmt(r["daemon_us_per_tick"], 1), _fmt(r["nats_us_per_tick"], 1),
                     _fmt(r.get("raw_us_per_msg"), 1), _fmt(r["cpu_s"]["daemon"], 2),
                     f"{r['received_min']:,}..{r['received_max']:,}"]
                    for wire, w in fo["wires"].items() for r in w["runs"]]
        parts += ["", f"### 3. Fan-out ({fo['rate']:,} ticks/s over {fo['conIds']} conIds, "
                  f"{fo['seconds']:g} s each; the control: a raw nats-py publisher at the same "
                  "rate to as many raw subscribers)", "",
                  _table((["wire", "server version"] if fo.get("wires") else []) + [
                      "subscribers", "ticks", "daemon CPU us/tick", "nats-server CPU us/tick"]
                      + (["raw publisher CPU us/msg"] if fo.get("wires") else [])
                      + ["daemon CPU s", "messages per subscriber"], rows)]
    q = results.get("queries")
    if q and "ops" in q:
        rows = []
        for op, r in q["ops"].items():
            s = r["rtt_us"]
            rows.append([op if op != "raw" else "raw nats-py request-reply", _fmt(s["p50"]),
                         _fmt(s["p90"]), _fmt(s["p99"]), _fmt(s["n"]),
                         _fmt(r.get("p50_over_raw"), 2)])
        parts += ["", "### 4. Queries (round trip, us, one at a time)", "",
                  _table(["request", "p50", "p90", "p99", "samples", "p50 / raw"], rows)]
    sc = results.get("scale")
    if sc and "rss_held_mb" in sc:
        rows = [
            ["subscriptions (streams = leases)", f"{sc['subscriptions']:,} by {sc['clients']} "
             f"processes ({sc['per_client']} each)"],
            ["daemon RSS ready / holding / after renewals",
             f"{sc['rss_ready_mb']:.1f} / {sc['rss_held_mb']:.1f} / "
             f"{sc['rss_after_renewals_mb']:.1f} MB"],
            ["memory per live subscription", f"{sc['kb_per_subscription']:.1f} KB"],
            ["opening ramp", f"{sc['ramp_s']:.1f} s ({sc['ramp_subs_per_s']:.1f} new "
             f"instruments/s, TWS-paced), daemon CPU {sc['ramp_daemon_cpu_s']:.1f} s"],
            ["subscribe latency during the ramp p50 / p99",
             f"{sc['subscribe_us']['p50'] / 1000:,.0f} / {sc['subscribe_us']['p99'] / 1000:,.0f}"
             " ms"],
            ["attach to a live stream p50 / p99",
             f"{sc['attach_us']['p50']:,.0f} / {sc['attach_us']['p99']:,.0f} us"],
            [f"renew a batch of {sc['renew_batch']} (all processes at once) p50 / p99",
             f"{sc['renew_us']['p50']:,.0f} / {sc['renew_us']['p99']:,.0f} us"],
            ["daemon CPU per lease renewed", f"{sc['renew_cpu_us_per_lease']:.1f} us "
             f"({sc['renewed']:,} renewals in {sc['renew_wall_s']:.2f} s)"],
            ["daemon idle CPU holding them", f"{sc['daemon_idle_cpu_pct']:.1f} %"],
        ]
        parts += ["", "### 5. Scale", "", _table(["measure", "value"], rows)]
    dl = results.get("delivery")
    if dl and "wires" in dl:
        parts += ["", "### 6. Delivery (tick-by-tick AllLast bursts, every tick must arrive; "
                  "delivered ticks/s from the blast request to the last receiver's end)", "",
                  delivery.render(dl)]
        if dl.get("lost"):
            parts += ["", f"**{dl['lost']:,} ticks lost**: a failure whatever the rates say."]
    errors = {k: v["error"] for k, v in results.items() if isinstance(v, dict) and "error" in v}
    if errors:
        parts += ["", "### Errors", ""] + [f"- {k}: `{v}`" for k, v in errors.items()]
    return "\n".join(parts) + "\n"


def text_table(results: dict[str, Any]) -> str:
    lines = [f"{'benchmark':11s} {'measure':52s} {'value':>12s}  {'target':>10s}  result"]
    for r in targets(results):
        value = _fmt(r["value"], 2 if r["unit"] == "x" else 1)
        value += "x" if r["unit"] == "x" else " " + r["unit"]
        lines.append(f"{r['benchmark']:11s} {r['what']:52s} {value:>12s}  {r['target']:>10s}  "
                     + _verdict(r) + (f" ({r['inconclusive']})" if r.get("inconclusive")
                                      else ""))
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], path: Path = MD) -> None:
    """Replace the generated section of BENCHMARKS.md (between the markers) with the tables."""
    body = f"{BEGIN}\n{render(results)}{END}"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S)
    path.write_text(text)
