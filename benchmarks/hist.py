"""6. Historical data for a desk: ten strategies warming up at once, under IB's historical-data
limits (shrunk to a 6 s window, same shape; the simulator enforces them, error 162).

The same mix (``benchmarks.histproof``: 300 requests for completed series, 120 distinct, some
BID_ASK, strategies of very different sizes) three ways, each against a fresh rule book:
through twsbus (one daemon; ten processes ask over NATS), and from ten processes of stock ibapi
and of ib_async used naively (each its own client id, one request after another). Reported:
violations at the simulator, answered requests, total time against the rules' lower bound for
the mix, the smallest strategy's longest wait, and, through twsbus, a latecomer asking for every
series again (cache hits, round trip, requests reaching TWS).

``python -m benchmarks.hist [--quick|--tiny] [--markdown]`` (``--markdown`` writes the table
into BENCHMARKS.md between its own markers); also ``python -m benchmarks --only hist``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import nats

from benchmarks import histnaive, histproof
from benchmarks.common import stack, summary
from benchmarks.report import MD

BEGIN, END = "<!-- hist:begin -->", "<!-- hist:end -->"


def sizes(quick: bool, tiny: bool) -> tuple[int, int, int, int]:
    """requesters, requests, distinct series, BID_ASK series."""
    if tiny:
        return 3, 12, 8, 2
    if quick:
        return 10, 100, 50, 5
    return 10, 300, 120, 10


async def _latecomer(url: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """One request at a time for every series again: round trips and cache verdicts."""
    nc = await nats.connect(url)
    rtt, hits = [], 0
    try:
        for body in bodies:
            t0 = time.perf_counter()
            msg = await nc.request(f"tws.req.{histproof.OP}", json.dumps(body).encode(),
                                   timeout=30)
            rtt.append((time.perf_counter() - t0) * 1e6)
            hits += (msg.headers or {}).get("Twsbus-Cache") == "hit"
    finally:
        await nc.close()
    return {"requests": len(bodies), "cache_hits": hits, "rtt_us": summary(rtt, (50, 90, 99))}


def _hist_state(st: Any) -> dict[str, Any]:
    state = st.sim.control.state()
    return {"violations": state["historical"]["violations"],
            "rate_violations": state["pacing_violations"],  # 50 messages/s (error 100)
            "by_rule": state["historical"]["by_rule"],
            "upstream": state["requests"].get("REQ_HISTORICAL_DATA", 0)}


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    requesters, total, distinct, bid_ask = sizes(quick, tiny)
    deals = histproof.mix(requesters, total, distinct, bid_ask)
    out: dict[str, Any] = {"rules": histproof.RULES, "requesters": requesters,
                           "requests": total, "distinct": distinct, "bid_ask": bid_ask,
                           "lower_bound_s": histproof.lower_bound(deals)}
    with stack(daemon_env=histproof.env()) as st:
        st.sim.control.post("/config", hist_pacing=True, **histproof.RULES)
        st.sim.control.post("/reset")
        twsbus = histproof.summarize(histproof.run_workers(st.url, "tws", deals), deals)
        twsbus.update(_hist_state(st))
        st.sim.control.post("/reset")
        twsbus["latecomer"] = asyncio.run(_latecomer(st.url, histproof.distinct(deals)))
        twsbus["latecomer"]["upstream"] = _hist_state(st)["upstream"]
        out["twsbus"] = twsbus
        print(f"  twsbus   {_line(twsbus, out['lower_bound_s'])}", flush=True)
        for lib in ("ibapi", "ib_async"):
            st.sim.control.post("/reset")
            naive = histnaive.summarize(histnaive.run_naive(lib, st.sim.port, deals))
            naive.update(_hist_state(st))
            out[lib] = naive
            print(f"  {lib:8s} {_line(naive, out['lower_bound_s'])}", flush=True)
    return out


def _line(r: dict[str, Any], bound: float) -> str:
    return (f"{r['requests']} requests, {r['violations']} violations, {r['answered']} answered, "
            f"{r['total_s']:.1f} s (lower bound {bound:.1f} s)")


def render(r: dict[str, Any]) -> str:
    bound = r["lower_bound_s"]
    rows = []
    for name, label in (("twsbus", "twsbus (10 processes over NATS, one daemon)"),
                        ("ibapi", "stock ibapi, naive (10 processes, 10 client ids)"),
                        ("ib_async", "ib_async, naive (10 processes, 10 client ids)")):
        x = r.get(name)
        if not x:
            continue
        missing = x["requests"] - x["answered"]
        ratio = f"{x['total_s'] / bound:.2f}x" if bound and not missing else \
            f"- ({missing} not answered)"
        hit = f"{x['coalesced']} / {x['cache_hits']}" if "cache_hits" in x else "-"
        smallest = x.get("smallest_requester", {}).get("longest_wait_s")
        rows.append(f"| {label} | {x['requests']} | {x['violations']} | {x['answered']} | "
                    f"{x['rate_violations']} | {x['total_s']:.1f} s | {ratio} | "
                    f"{'-' if smallest is None else f'{smallest:.2f} s'} | {hit} |")
    late = r.get("twsbus", {}).get("latecomer")
    lines = [f"### 6. Historical data for a desk ({r['requests']} requests, {r['distinct']} "
             f"distinct series, {r['bid_ask']} BID_ASK, {r['requesters']} strategies; IB's "
             f"limits with a {r['rules']['hist_window']:g} s window, lower bound "
             f"{bound:.1f} s)", "",
             "| client | requests | violations (162) | answered | 50 msg/s violations (100) "
             "| total time | vs lower bound | smallest strategy's longest wait "
             "| served without TWS (coalesced / cache) |",
             "|---|---|---|---|---|---|---|---|---|", *rows]
    if late:
        lines += ["", f"A latecomer asking for all {late['requests']} series again: "
                  f"{late['cache_hits']} cache hits, {late['upstream']} requests reaching TWS, "
                  f"round trip p50 {late['rtt_us']['p50'] / 1000:.2f} ms, p99 "
                  f"{late['rtt_us']['p99'] / 1000:.2f} ms (NATS included)."]
    return "\n".join(lines) + "\n"


def write_markdown(r: dict[str, Any]) -> None:
    body = f"{BEGIN}\n{render(r)}{END}"
    text = MD.read_text() if MD.exists() else "# Benchmarks\n"
    if BEGIN not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    MD.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: body, text,
                         flags=re.S))


if __name__ == "__main__":
    import sys

    result = run("--quick" in sys.argv, "--tiny" in sys.argv)
    print(json.dumps(result, indent=1))
    if "--markdown" in sys.argv:
        write_markdown(result)
        print(render(result))
