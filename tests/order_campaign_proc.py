"""A trading strategy stand-in for the order campaign: places orders through plain NATS and
retries every request with the same clientOrderId until it gets an answer that is not a 503 or
a timeout (what a careful strategy does while TWS or the daemon is away), waiting longer than the
daemon's own answer timeout (10 s).

Run as ``python order_campaign_proc.py NATS_URL NAME COUNT SEED``; prints one JSON line at the
end: what it placed, modified and cancelled, and how often it had to retry.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any

import nats

IBM = {"conId": 8314}


async def request(nc: Any, op: str, body: dict[str, Any], stats: dict[str, int],
                  ) -> tuple[int, dict[str, Any]]:
    while True:
        try:
            msg = await nc.request(f"tws.req.{op}", json.dumps(body).encode(), timeout=15)
        except Exception as exc:  # a timeout, no responders while the daemon restarts
            print(f"retry {op} {body.get('clientOrderId')}: {exc!r}", file=sys.stderr)
            stats["retries"] += 1
            await asyncio.sleep(0.2)
            continue
        code = int((msg.headers or {}).get("Nats-Service-Error-Code", 0))
        if code in (503, 408):
            print(f"retry {op} {body.get('clientOrderId')}: {code}", file=sys.stderr)
            stats["retries"] += 1
            await asyncio.sleep(0.2)
            continue
        return code, json.loads(msg.data)


async def one(nc: Any, name: str, i: int, rng: random.Random, stats: dict[str, int]) -> None:
    coid = f"{name}-{i}"
    resting = rng.random() < 0.6
    order: dict[str, Any] = {"action": rng.choice(["BUY", "SELL"]),
                             "totalQuantity": rng.randint(1, 5), "orderRef": coid}
    order |= {"orderType": "LMT", "lmtPrice": 1.0 if order["action"] == "BUY" else 9999.0} \
        if resting else {"orderType": "MKT"}
    body = {"contract": IBM, "order": order, "clientOrderId": coid, "strategy": name}
    code, reply = await request(nc, "place_order", body, stats)
    stats["placed"] += 1
    if code:
        stats[f"place_{code}"] = stats.get(f"place_{code}", 0) + 1
        return
    if not resting:
        return
    if rng.random() < 0.5:
        modified = {**order, "lmtPrice": order["lmtPrice"] + (0.5 if order["action"] == "BUY"
                                                              else -0.5)}
        code, _ = await request(nc, "place_order", {**body, "order": modified, "modify": True},
                                stats)
        stats["modified" if not code else f"modify_{code}"] = \
            stats.get("modified" if not code else f"modify_{code}", 0) + 1
    if rng.random() < 0.7:
        code, _ = await request(nc, "cancel_order", {"clientOrderId": coid}, stats)
        stats["cancelled" if not code else f"cancel_{code}"] = \
            stats.get("cancelled" if not code else f"cancel_{code}", 0) + 1


async def main(url: str, name: str, count: int, seed: int) -> None:
    nc = await nats.connect(url, max_reconnect_attempts=-1)
    rng = random.Random(seed)
    stats = {"placed": 0, "retries": 0}
    gate = asyncio.Semaphore(8)

    async def paced(i: int) -> None:
        async with gate:
            await one(nc, name, i, rng, stats)

    await asyncio.gather(*(paced(i) for i in range(count)))
    print(json.dumps(stats), flush=True)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
