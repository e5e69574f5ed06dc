"""4. Queries: ``tws.req.current_time`` and ``tws.req.contract_details`` round trips through
twsbus, next to a raw nats-py request-reply round trip (the floor).

One nats-py client (this process) asks in turn: raw ``bench.echo`` (answered by the
benchmarks.responder process), ``current_time``, raw again, ``contract_details`` of AAPL, ...
one request at a time. TWS allows 50 messages a second and twsbus paces at 45/s, so TWS-bound
requests are spaced 25 ms apart (40/s): the numbers are round trips, not pacing queue waits.
Every request, raw or not, follows a 12.5 ms pause, so both see the same idle-wakeup conditions.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats

from benchmarks.common import CpuMeter, stack, summary

SPACING = 0.025
OPS = {
    "raw": ("bench.echo", b"{}"),
    "current_time": ("tws.req.current_time", b"{}"),
    "contract_details": ("tws.req.contract_details", b'{"conId": 265598}'),
}


async def _measure(url: str, samples: int) -> dict[str, list[float]]:
    nc = await nats.connect(url)
    times: dict[str, list[float]] = {k: [] for k in OPS}
    errors: dict[str, int] = {k: 0 for k in OPS}
    try:
        async def ask(op: str) -> float:
            subject, body = OPS[op]
            t0 = time.perf_counter()
            msg = await nc.request(subject, body, timeout=10)
            dt = (time.perf_counter() - t0) * 1e6
            if (msg.headers or {}).get("Nats-Service-Error-Code"):
                errors[op] += 1
            return dt

        for _ in range(5):  # warm-up
            for op in OPS:
                await ask(op)
                await asyncio.sleep(SPACING)
        for _ in range(samples):
            for op in ("current_time", "contract_details"):
                times["raw"].append(await ask("raw"))
                await asyncio.sleep(SPACING / 2)
                times[op].append(await ask(op))
                await asyncio.sleep(SPACING / 2)
    finally:
        await nc.close()
    if any(errors.values()):
        raise RuntimeError(f"query errors: {errors}")
    return times


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    samples = 5 if tiny else 30 if quick else 300
    with stack() as st:
        responder = st.child("responder", "--nats", st.url, name="responder")
        responder.expect("ready", 30)
        meter = CpuMeter({"daemon": st.daemon_pid}).start()
        times = asyncio.run(_measure(st.url, samples))
        meter.stop()
    out: dict[str, Any] = {"samples": samples, "spacing_s": SPACING, "ops": {}}
    for op, values in times.items():
        out["ops"][op] = {"rtt_us": summary(values, (50, 90, 99))}
    raw50 = out["ops"]["raw"]["rtt_us"]["p50"]
    for op in ("current_time", "contract_details"):
        s = out["ops"][op]["rtt_us"]
        out["ops"][op]["p50_over_raw"] = s["p50"] / raw50
        print(f"  query {op:16s} p50 {s['p50']:.0f} us p99 {s['p99']:.0f} us "
              f"({s['p50'] / raw50:.2f}x raw p50 {raw50:.0f} us)", flush=True)
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
