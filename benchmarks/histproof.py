"""The historical-data proof: many strategies warming up at once, through one daemon.

``mix`` deals ``total`` requests for completed series (an ``endDateTime`` in the past) to
``requesters`` strategies of very different sizes: ``distinct`` different series, every one asked
at least once, some by several strategies (identical requests), ``bid_ask`` of them ``BID_ASK``.
``lower_bound`` is the shortest time IB's rules allow for sending that mix's distinct series
once each (the weighted window, and the per-contract burst rule). ``run_workers`` starts one
process per strategy (``python -m benchmarks.histproof``), releases them together and returns
every answer with its timing; ``summarize`` turns that into the numbers the test asserts and
the benchmark reports. The rules are IB's with every time divided by ``SCALE`` (a 6 s window).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

SCALE = 100.0
#: IB's limits with the times divided by SCALE: settings of both the daemon and the simulator.
RULES: dict[str, Any] = {"hist_window": 600 / SCALE, "hist_window_max": 60,
                         "hist_identical_gap": 15 / SCALE, "hist_burst_window": 2 / SCALE,
                         "hist_burst_max": 5, "hist_bidask_weight": 2, "hist_max_open": 50}
SYNTHETIC_BASE = 900_000_000  # the simulator's SYN0001.. stocks (extra_instruments)
CONTRACTS = 40
OP = "historical_data"


def env(rules: dict[str, Any] | None = None, pacing: bool = True) -> dict[str, str]:
    """The daemon's environment for these rules."""
    out = {f"TWSBUS_{k.upper()}": str(v) for k, v in (rules or RULES).items()}
    out["TWSBUS_HIST_PACING"] = "true" if pacing else "false"
    return out


def series(n: int, bid_ask: int) -> list[dict[str, Any]]:
    """``n`` different completed series, the first ``bid_ask`` of them BID_ASK."""
    shapes = [("2 D", "1 hour"), ("5 D", "30 mins"), ("1 M", "1 day"), ("3 D", "15 mins"),
              ("1 W", "1 hour"), ("2 W", "4 hours")]
    ends = ["20261113 16:00:00 US/Eastern", "20261106 16:00:00 US/Eastern"]
    out = []
    for i in range(n):
        duration, bar = shapes[i % len(shapes)]
        out.append({"contract": {"conId": SYNTHETIC_BASE + 1 + i % CONTRACTS,
                                 "exchange": "SMART"},
                    "endDateTime": ends[(i // len(shapes)) % len(ends)],
                    "durationStr": duration, "barSizeSetting": bar,
                    "whatToShow": "BID_ASK" if i < bid_ask else "TRADES", "useRTH": 1,
                    "formatDate": 1})
    return out


def mix(requesters: int = 10, total: int = 300, distinct: int = 120,
        bid_ask: int = 10) -> list[list[dict[str, Any]]]:
    """Each strategy's requests: sizes from a few to many, every series asked at least once,
    the rest repeats of others' series (deterministic)."""
    pool = series(distinct, bid_ask)
    weights = list(range(1, requesters + 1))
    sizes = [max(1, total * w // sum(weights)) for w in weights]
    sizes[-1] += total - sum(sizes)
    deals: list[list[dict[str, Any]]] = [[] for _ in range(requesters)]
    k = 0
    for r, size in enumerate(sizes):
        for _ in range(size):
            # Every distinct series once first, then repeats of others' series (overlaps).
            deals[r].append(pool[k if k < distinct else (k * 7 + r) % distinct])
            k += 1
    return deals


def weight(body: dict[str, Any], rules: dict[str, Any]) -> int:
    return int(rules["hist_bidask_weight"]) if body.get("whatToShow") == "BID_ASK" else 1


def key(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


def distinct(deals: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every series of the mix once."""
    return list({key(b): b for deal in deals for b in deal}.values())


def lower_bound(deals: list[list[dict[str, Any]]], rules: dict[str, Any] | None = None) -> float:
    """Seconds IB's rules need at least to send every distinct series once: ``k`` windows hold
    ``k * window_max`` weight, and one contract/exchange/tick type takes ``burst_max`` per
    burst window."""
    rules = rules or RULES
    distinct = {key(b): b for deal in deals for b in deal}
    total = sum(weight(b, rules) for b in distinct.values())
    windows = -(-total // int(rules["hist_window_max"]))
    by_burst: dict[tuple[Any, ...], int] = defaultdict(int)
    for b in distinct.values():
        by_burst[(b["contract"]["conId"], b["whatToShow"])] += 1
    bursts = max(by_burst.values(), default=0)
    burst_bound = (-(-bursts // int(rules["hist_burst_max"])) - 1) * rules["hist_burst_window"]
    return max((windows - 1) * rules["hist_window"], burst_bound)


# ---- the strategies, one process each --------------------------------------------------------


async def _worker(nats_url: str, prefix: str, go: str, bodies: list[dict[str, Any]],
                  timeout: float) -> list[dict[str, Any]]:
    import nats

    nc = await nats.connect(nats_url)
    sub = await nc.subscribe(go)
    await nc.flush()
    print("ready", flush=True)
    await sub.next_msg(timeout=300)

    async def one(i: int, body: dict[str, Any]) -> dict[str, Any]:
        start = time.time()
        try:
            msg = await nc.request(f"{prefix}.req.{OP}",
                                   json.dumps({**body, "timeout": timeout}).encode(),
                                   timeout=timeout + 5)
        except Exception as exc:  # no answer at all: the proof fails on it
            return {"i": i, "start": start, "end": time.time(), "code": -1, "error": repr(exc)}
        headers = dict(msg.headers or {})
        data = json.loads(msg.data) if msg.data else None
        code = int(headers.get("Nats-Service-Error-Code", 0))
        row: dict[str, Any] = {"i": i, "key": key(body), "start": start, "end": time.time(),
                               "code": code, "waited_ms": _float(headers.get("Twsbus-Waited-Ms")),
                               "cache": headers.get("Twsbus-Cache"),
                               "coalesced": headers.get("Twsbus-Coalesced") == "1"}
        if code:
            row["retry_after"] = data["error"].get("retry_after") if data else None
        else:
            row["bars"] = len(data or [])
        return row

    rows = await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    await nc.close()
    return list(rows)


def _float(text: str | None) -> float | None:
    return float(text) if text is not None else None


def run_workers(nats_url: str, prefix: str, deals: list[list[dict[str, Any]]],
                timeout: float = 120.0) -> dict[str, Any]:
    """One process per strategy; all released at once (a NATS message); their answers."""
    import nats

    go = f"histproof.go.{time.monotonic_ns()}"
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.histproof", nats_url, prefix, go,
                               str(timeout)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in deals]
    try:
        for proc, deal in zip(procs, deals, strict=True):
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(deal))
            proc.stdin.close()
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line == "ready", f"a strategy process did not start: {line!r}"

        async def release() -> float:
            nc = await nats.connect(nats_url)
            t0 = time.time()
            await nc.publish(go, b"")
            await nc.flush()
            await nc.close()
            return t0

        t0 = asyncio.run(release())
        per: list[list[dict[str, Any]]] = []
        for proc in procs:
            assert proc.stdout is not None
            per.append(json.loads(proc.stdout.read()))
            proc.wait(timeout=timeout + 60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return {"t0": t0, "requesters": per}


def summarize(run: dict[str, Any], deals: list[list[dict[str, Any]]],
              rules: dict[str, Any] | None = None) -> dict[str, Any]:
    t0, per = run["t0"], run["requesters"]
    rows = [r for rs in per for r in rs]
    answered = [r for r in rows if r["code"] == 0]
    refused = [r for r in rows if r["code"] == 429]
    end = max(r["end"] for r in rows)
    smallest = min(range(len(per)), key=lambda i: len(per[i]))
    waits = [[r["end"] - r["start"] for r in rs] for rs in per]
    bound = lower_bound(deals, rules)
    cached = sum(1 for r in answered if r.get("cache") == "hit")
    return {
        "requests": len(rows), "answered": len(answered), "refused_429": len(refused),
        "refused_with_retry_after": sum(1 for r in refused if r.get("retry_after")),
        "other": len(rows) - len(answered) - len(refused),
        "distinct": len({key(b) for d in deals for b in d}),
        "total_s": round(end - t0, 3), "lower_bound_s": round(bound, 3),
        "ratio": round((end - t0) / bound, 3) if bound else None,
        "smallest_requester": {"requests": len(per[smallest]),
                               "longest_wait_s": round(max(waits[smallest]), 3)},
        "largest_requester": {"requests": max(len(rs) for rs in per),
                              "longest_wait_s": round(max(max(w) for w in waits if w), 3)},
        "cache_hits": cached, "cache_hit_rate": round(cached / len(rows), 3) if rows else 0.0,
        "coalesced": sum(1 for r in answered if r.get("coalesced")),
        "max_waited_ms": max((r["waited_ms"] or 0 for r in answered), default=0),
    }


def main() -> None:
    nats_url, prefix, go, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    bodies = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_worker(nats_url, prefix, go, bodies, timeout))), flush=True)


if __name__ == "__main__":
    main()
