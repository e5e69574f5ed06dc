"""The NATS floor: a raw nats-py publisher, paced exactly like the simulator's ``POST /pace``.

``python -m benchmarks.rawpub --nats URL --conids 1,2,3 --rate 10000 --seconds 5 [--on-go]``

Publishes ``rate`` messages a second round-robin over ``bench.raw.<conId>``, each shaped like a
twsbus ticks message (msgspec-encoded) with ``lastTimestamp`` = the send time in ns, then prints
``{"done": sent, "elapsed": s}``. Same batching as the simulator's paced sender: wake every
0.5 ms, send what has come due, each message stamped when it is built. With ``--on-go`` it
connects, prints ``{"ready": true}`` and starts on a ``go`` line on stdin (so a CPU meter
started between the two counts the publishing only, not the start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import msgspec
import nats

PACE_STEP = 0.0005


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats", required=True)
    ap.add_argument("--conids", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--on-go", action="store_true")
    args = ap.parse_args()
    subjects = [f"bench.raw.{c}" for c in args.conids.split(",") if c]
    nc = await nats.connect(args.nats, pending_size=256 * 1024 * 1024)
    if args.on_go:
        sys.stdout.write(json.dumps({"ready": True}) + "\n")
        sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.readline)
    encode = msgspec.json.Encoder().encode
    loop = asyncio.get_running_loop()
    rate, total, n = args.rate, int(args.rate * args.seconds), len(subjects)
    seqs = [0] * n
    sent = 0
    start = loop.time()
    while sent < total:
        due = min(total, int((loop.time() - start) * rate) + 1)
        while sent < due:
            k = sent % n
            seqs[k] += 1
            now = time.time_ns()
            await nc.publish(subjects[k], encode({
                "type": "ticks", "ts": now, "bid": 190.01 if (sent // n) % 2 else 190.0,
                "bidSize": 100 + sent % 9, "lastTimestamp": str(now), "seq": seqs[k],
                "epoch": "20260101T000000-abcdef"}))
            sent += 1
        next_due = start + sent / rate
        await asyncio.sleep(max(0.0, min(PACE_STEP, next_due - loop.time())))
    elapsed = loop.time() - start
    await nc.flush()
    sys.stdout.write(json.dumps({"done": sent, "elapsed": elapsed}) + "\n")
    sys.stdout.flush()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
