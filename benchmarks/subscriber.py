"""A strategy-process stand-in on plain nats-py: leases ticks subscriptions, receives, measures.

``python -m benchmarks.subscriber --nats URL --conids 1,2,3 [--raw | --tbt]``

Without ``--raw`` it takes a ``tws.sub.ticks`` lease per conId (renewed in one batch on
``tws.lease.renew``) and subscribes to each ``tws.ticks.<conId>``; with ``--raw`` it subscribes
to ``bench.raw.<conId>`` (the raw publisher's subjects: the NATS floor). Every message is decoded
(msgspec); a ``lastTimestamp`` that is a nanosecond time gives a latency sample (receive time -
send time), ``"blast-end"`` ends a burst. With ``--tbt`` it leases ``tws.sub.tbt`` (tickType
AllLast) instead and counts every trade it receives (a message carries one tick, or a list of
them under ``ticks``); the trade whose specialConditions is ``"blast-end"`` ends a burst.
Prints JSON lines: ``ready``, ``progress`` (every 0.25 s while messages arrive), ``end`` (a
burst's end: its receive time and the count). Commands on stdin: ``reset`` (zero counters and
samples), ``report [path]`` (write the latency samples, int64 ns, to path, and receive - the
message's ``ts`` to path.hop; print the counts), ``renew K`` (renew every lease, in one batch, K
times back to back; print the round trips), ``quit``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import sys
import time

import msgspec
import nats

from benchmarks.common import stdin_commands

_decode = msgspec.json.Decoder().decode


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats", required=True)
    ap.add_argument("--conids", required=True)
    ap.add_argument("--raw", action="store_true")
    ap.add_argument("--tbt", action="store_true", help="lease tick-by-tick AllLast, count ticks")
    ap.add_argument("--ttl", type=float, default=60.0)
    args = ap.parse_args()
    con_ids = [int(c) for c in args.conids.split(",") if c]

    nc = await nats.connect(args.nats, max_reconnect_attempts=-1,
                            pending_size=256 * 1024 * 1024)
    state = {"received": 0, "bytes": 0}
    samples = array.array("q")
    hops = array.array("q")  # receive - the message's ts (daemon receive time / raw send time)
    time_ns = time.time_ns

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        state["received"] += 1
        data = _decode(msg.data)
        stamp = data.get("lastTimestamp")
        if stamp is None:
            return
        if stamp == "blast-end":
            emit(end=time_ns(), received=state["received"])
        elif len(stamp) >= 16:  # nanoseconds (regular ticks carry seconds)
            now = time_ns()
            samples.append(now - int(stamp))
            hops.append(now - data.get("ts", now))

    async def on_tbt(msg: nats.aio.msg.Msg) -> None:
        data = _decode(msg.data)
        if data.get("type") != "tbt":
            return  # a stream status
        ticks = data.get("ticks") or (data,)
        state["received"] += len(ticks)
        if ticks[-1].get("specialConditions") == "blast-end":
            emit(end=time_ns(), received=state["received"])

    leases: list[str] = []
    subscribe_us: list[float] = []
    errors: list[object] = []
    unknown = {"count": 0}

    async def renew() -> None:
        # runs from the start: opening many subscriptions can take longer than the ttl
        while True:
            await asyncio.sleep(args.ttl / 3)
            if leases:
                reply = await nc.request("tws.lease.renew", json.dumps(
                    {"leases": leases}).encode(), timeout=10)
                unknown["count"] += len(json.loads(reply.data).get("unknown") or [])

    renewer = asyncio.create_task(renew())
    for con_id in con_ids:
        if args.raw:
            await nc.subscribe(f"bench.raw.{con_id}", cb=on_msg,
                               pending_msgs_limit=10_000_000, pending_bytes_limit=-1)
            continue
        for _attempt in range(5):
            t0 = time.perf_counter()
            kind, extra = ("tbt", {"tickType": "AllLast"}) if args.tbt else ("ticks", {})
            reply = await nc.request(f"tws.sub.{kind}", json.dumps(
                {"contract": {"conId": con_id}, "ttl": args.ttl, **extra}).encode(), timeout=120)
            body = json.loads(reply.data)
            if "lease" in body:
                break
            errors.append(body)  # counted and retried (reported in the ready line)
            await asyncio.sleep(0.5)
        else:
            emit(error=body)
            return
        subscribe_us.append((time.perf_counter() - t0) * 1e6)
        leases.append(body["lease"])
        await nc.subscribe(body["subject"], cb=on_tbt if args.tbt else on_msg,
                           pending_msgs_limit=10_000_000, pending_bytes_limit=-1)
    await nc.flush()
    emit(ready=len(con_ids), subscribe_us=subscribe_us, errors=errors[:5],
         error_count=len(errors))

    commands = stdin_commands()

    async def progress() -> None:
        last = -1
        while True:
            await asyncio.sleep(0.25)
            if state["received"] != last:
                last = state["received"]
                emit(progress=last)

    tasks = [renewer, asyncio.create_task(progress())]
    while True:
        command, *rest = ((await commands.get()) or "noop").split()
        if command == "quit":
            break
        if command == "reset":
            state["received"] = 0
            del samples[:]
            del hops[:]
            emit(reset=True)
        elif command == "renew":
            rtts = []
            for _ in range(int(rest[0]) if rest else 1):
                t0 = time.perf_counter()
                reply = await nc.request("tws.lease.renew", json.dumps(
                    {"leases": leases}).encode(), timeout=30)
                rtts.append((time.perf_counter() - t0) * 1e6)
                unknown["count"] += len(json.loads(reply.data).get("unknown") or [])
            emit(renewed=len(leases), renew_us=rtts, unknown_leases=unknown["count"])
        elif command == "report":
            if rest:
                with open(rest[0], "wb") as fh:
                    samples.tofile(fh)
                with open(rest[0] + ".hop", "wb") as fh:
                    hops.tofile(fh)
            emit(report=True, received=state["received"], samples=len(samples),
                 unknown_leases=unknown["count"])
    for task in tasks:
        task.cancel()
    if leases:
        try:
            await nc.request("tws.unsub", json.dumps({"leases": leases}).encode(), timeout=2)
        except Exception:
            pass
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
