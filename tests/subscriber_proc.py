"""A strategy process stand-in: subscribes over plain NATS, renews its lease, counts messages.

Run as ``python subscriber_proc.py NATS_URL KIND CONTRACT_JSON TTL``; prints one JSON line with
its lease, then one line per second with the messages received. Tests SIGKILL it to play a
crashed strategy.
"""

from __future__ import annotations

import asyncio
import json
import sys

import nats


async def main(url: str, kind: str, contract: str, ttl: float) -> None:
    nc = await nats.connect(url)
    received = 0

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        nonlocal received
        received += 1

    reply = await nc.request(f"tws.sub.{kind}", json.dumps(
        {"contract": json.loads(contract), "ttl": ttl}).encode(), timeout=10)
    sub = json.loads(reply.data)
    await nc.subscribe(sub["subject"], cb=on_msg)
    print(json.dumps({"lease": sub["lease"], "subject": sub["subject"]}), flush=True)
    while True:
        await asyncio.sleep(ttl / 3)
        await nc.request("tws.lease.renew", json.dumps({"leases": [sub["lease"]]}).encode(),
                         timeout=5)
        print(json.dumps({"received": received}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
