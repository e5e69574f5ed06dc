"""The NATS floor for queries: a raw nats-py responder in its own process.

``python -m benchmarks.responder --nats URL`` answers ``bench.echo`` with a small JSON body (the
size of a current_time answer) and prints ``{"ready": true}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import msgspec
import nats


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats", required=True)
    args = ap.parse_args()
    nc = await nats.connect(args.nats)
    encode = msgspec.json.Encoder().encode
    decode = msgspec.json.Decoder().decode

    async def on_request(msg: nats.aio.msg.Msg) -> None:
        decode(msg.data or b"{}")
        await msg.respond(encode({"currentTime": int(time.time())}))

    await nc.subscribe("bench.echo", cb=on_request)
    await nc.flush()
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
