"""The benchmark load generator: ``blast`` (a burst of prebuilt frames, as fast as each
subscriber's socket drains: tickPrice frames to market-data subscribers, or tick-by-tick trades,
never conflated, to tick-by-tick subscribers) and ``pace`` (ticks at a fixed rate, each stamped
with its send time in nanoseconds for latency measurement). Both write into the subscriptions
clients already hold (``h_market``), pausing their regular market-data ticks meanwhile; the
control endpoint starts them (``POST /blast``, ``POST /pace``, ``GET /pace``).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any

from twsbus.sim.market import Quote, tick_round, venues
from twsbus.sim.msgids import ToClient
from twsbus.sim.session import ClientSession, SessionState, Subscription
from twsbus.sim.values import size_field

if TYPE_CHECKING:
    from twsbus.sim.server import Simulator

__all__ = ["PACE_STATE", "blast", "pace"]

BID, ASK, LAST_TIMESTAMP = 1, 2, 45  # tick types


# ---- blast ------------------------------------------------------------------------------------

BLAST_DISTINCT = 1000
BLAST_CHUNK = 256 * 1024


#: The burst kinds ``blast`` takes.
BLAST_KINDS = ("ticks", "tbt")
#: The specialConditions of a tick-by-tick burst's last trade (its receiver's end mark).
BLAST_END = "blast-end"
#: Tick-by-tick subscriptions a trade burst goes to, and the tickType their frames carry.
TBT_TRADES = {"Last": 1, "AllLast": 2}


def blast(sim: Simulator, con_id: int, count: int, kind: str = "ticks") -> dict[str, Any]:
    """Send ``count`` prebuilt frames to every subscriber of ``con_id`` as fast as their sockets
    drain. ``ticks``: tickPrice frames to each market-data subscriber, then a LAST_TIMESTAMP
    tickString "blast-end". ``tbt``: ``count`` tick-by-tick trades to each Last / AllLast
    tick-by-tick subscriber, the last one with specialConditions "blast-end" (so the burst is
    exactly ``count`` ticks; its regular trades keep flowing, so benchmarks switch them off)."""
    if kind not in BLAST_KINDS:
        raise ValueError(f"kind must be one of {', '.join(BLAST_KINDS)}, not {kind!r}")
    if kind == "tbt":
        return _blast_tbt(sim, con_id, count)
    targets: list[tuple[ClientSession, Subscription]] = []
    for s in sim.ready_sessions():
        sub = next((x for x in s.subs_of("mkt_data") if x.con_id == con_id), None)
        if sub is not None:
            sub.params["paused"] = True  # regular ticks would interleave with the burst
            targets.append((s, sub))
    if targets:
        q = sim.market.quote(con_id)
        tick = sim.universe.by_con_id[con_id].min_tick
        for s, sub in targets:
            sim.spawn(_blast_one(s, sub, q, tick, count))
    return {"sessions": len(targets), "count": count, "kind": kind}


async def _blast_one(s: ClientSession, sub: Subscription, q: Quote, tick: float,
                     count: int) -> None:
    # One block of distinct frames, repeated: a million ticks cost one join, not a million
    # encodes. Chunks hold whole blocks so the session's other writes never split a frame.
    frames = []
    for i in range(BLAST_DISTINCT):
        bid_side = i % 2 == 0
        offset = (i // 2) % 50 * tick
        price = tick_round(q.bid - offset if bid_side else q.ask + offset, tick)
        frames.append(s.encode((ToClient.TICK_PRICE, 6, sub.req_id, BID if bid_side else ASK,
                                price, size_field(s.version, 100 * (1 + i % 9)), 1)))
    block = b"".join(frames)
    per_chunk = max(1, BLAST_CHUNK // len(block))
    chunk = block * per_chunk
    full, rest = divmod(count, BLAST_DISTINCT)
    try:
        while full > 0 and s.state is SessionState.READY:
            n = min(per_chunk, full)
            s.send_raw(chunk if n == per_chunk else block * n)
            full -= n
            await s.drain()
        s.send_raw(b"".join(frames[:rest]))
        s.send(ToClient.TICK_STRING, 6, sub.req_id, LAST_TIMESTAMP, "blast-end")
        await s.drain()
    except ConnectionError:
        pass
    finally:
        sub.params["paused"] = False


def _blast_tbt(sim: Simulator, con_id: int, count: int) -> dict[str, Any]:
    if count < 1:
        raise ValueError("count must be at least 1")
    targets = [(s, sub) for s in sim.ready_sessions() for sub in s.subs_of("tbt")
               if sub.con_id == con_id and sub.params.get("tick_type") in TBT_TRADES]
    if targets:
        inst = sim.universe.by_con_id[con_id]
        last = sim.market.quote(con_id).last
        for s, sub in targets:
            sim.spawn(_blast_tbt_one(s, sub, last, inst.min_tick, venues(inst), count))
    return {"sessions": len(targets), "count": count, "kind": "tbt"}


async def _blast_tbt_one(s: ClientSession, sub: Subscription, last: float, tick: float,
                         exchanges: tuple[str, ...], count: int) -> None:
    tick_type = TBT_TRADES[sub.params["tick_type"]]
    now = int(time.time())

    def trade(i: int, special: str = "") -> bytes:
        price = tick_round(last + (i % 21 - 10) * tick, tick)
        return s.encode((ToClient.TICK_BY_TICK, sub.req_id, tick_type, now, price,
                         size_field(s.version, 100 * (1 + i % 9)), 0,
                         exchanges[i % len(exchanges)], special))

    # As in _blast_one: one block of distinct trades, repeated in chunks of whole frames.
    block = b"".join(trade(i) for i in range(min(BLAST_DISTINCT, count - 1)))
    per_chunk = max(1, BLAST_CHUNK // max(1, len(block)))
    full, rest = divmod(count - 1, BLAST_DISTINCT)
    try:
        while full > 0 and s.state is SessionState.READY:
            n = min(per_chunk, full)
            s.send_raw(block * n)
            full -= n
            await s.drain()
        if rest:
            s.send_raw(b"".join(trade(i) for i in range(rest)))
        s.send_raw(trade(count - 1, BLAST_END))
        await s.drain()
    except ConnectionError:
        pass


# ---- pace -------------------------------------------------------------------------------------

#: The paced sender wakes this often and sends every tick that has come due since.
PACE_STEP = 0.0005
#: Progress of the running (or last) paced send, per simulator: GET /pace reads it.
PACE_STATE: weakref.WeakKeyDictionary[Simulator, dict[str, Any]] = weakref.WeakKeyDictionary()


def pace(sim: Simulator, con_ids: list[int], rate: float, seconds: float) -> dict[str, Any]:
    """Send ``rate`` ticks a second for ``seconds``, round-robin over ``con_ids``, to every
    market-data subscriber of each. A tick is a tickPrice (BID, alternating between two prices so
    it always changes) followed by a LAST_TIMESTAMP tickString carrying the send time in integer
    nanoseconds (``time.time_ns()``), so a receiver can compute its latency. The regular ticks of
    those subscriptions are paused meanwhile (their LAST_TIMESTAMP is in seconds)."""
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")
    targets: dict[int, list[tuple[ClientSession, Subscription, float, float]]] = {}
    for con_id in con_ids:
        inst = sim.universe.by_con_id.get(con_id)
        if inst is None:
            continue
        q = sim.market.quote(con_id)
        lo = tick_round(q.bid, inst.min_tick)
        hi = tick_round(q.bid - inst.min_tick, inst.min_tick)
        for s in sim.ready_sessions():
            for sub in s.subs_of("mkt_data"):
                if sub.con_id == con_id:
                    sub.params["paused"] = True
                    targets.setdefault(con_id, []).append((s, sub, lo, hi))
    order = [c for c in con_ids if c in targets]
    total = int(rate * seconds)
    state: dict[str, Any] = {"running": bool(order), "rate": rate, "seconds": seconds,
                             "conIds": len(order), "count": total if order else 0, "sent": 0,
                             "frames": 0, "elapsed": 0.0, "late": 0}
    PACE_STATE[sim] = state
    if order:
        sim.spawn(_pace_run(sim, order, targets, rate, total, state))
    return dict(state)


#: A stand-in for the send time while a stamp frame is encoded once: ``time.time_ns()`` has 19
#: digits (until the year 2286), so the real time takes its place byte for byte, length prefix
#: and protobuf lengths unchanged, on either wire.
STAMP_PLACEHOLDER = b"1" * 19


class _PacedTarget:
    """One subscription's paced frames, built once: the BID tickPrices (two prices, nine sizes)
    and the LAST_TIMESTAMP tickString around its value, which is the send time. Encoding it per
    tick (protobuf, from 206) would count the simulator's own encoding in the latency measured."""

    __slots__ = ("prices", "session", "stamp_head", "stamp_tail")

    def __init__(self, s: ClientSession, sub: Subscription, lo: float, hi: float) -> None:
        self.session = s
        self.prices = [s.encode((ToClient.TICK_PRICE, 6, sub.req_id, BID, price,
                                 size_field(s.version, 100 + k), 1))
                       for price in (lo, hi) for k in range(9)]
        stamp = s.encode((ToClient.TICK_STRING, 6, sub.req_id, LAST_TIMESTAMP,
                          STAMP_PLACEHOLDER.decode()))
        if stamp.count(STAMP_PLACEHOLDER) != 1:
            raise RuntimeError(f"the stamp frame cannot be templated: {stamp!r}")
        self.stamp_head, _, self.stamp_tail = stamp.partition(STAMP_PLACEHOLDER)

    def frames(self, odd: int, k: int) -> bytes:
        return b"".join((self.prices[9 * odd + k], self.stamp_head,
                         str(time.time_ns()).encode(), self.stamp_tail))


async def _pace_run(sim: Simulator, order: list[int],
                    targets: dict[int, list[tuple[ClientSession, Subscription, float, float]]],
                    rate: float, total: int, state: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    paced = {con_id: [_PacedTarget(*t) for t in ts] for con_id, ts in targets.items()}
    start = loop.time()
    sent = frames = 0
    n = len(order)
    try:
        while sent < total:
            due = min(total, int((loop.time() - start) * rate) + 1)
            if due - sent > rate * 0.05:  # more than 50 ms behind: we cannot keep the rate
                state["late"] += 1
            batches: dict[ClientSession, list[bytes]] = {}
            while sent < due:
                odd = (sent // n) % 2
                for target in paced[order[sent % n]]:
                    if target.session.state is SessionState.READY:
                        batches.setdefault(target.session, []).append(
                            target.frames(odd, sent % 9))
                        frames += 2
                sent += 1
            for s, parts in batches.items():  # one write per session per wake, like nats-py
                s.send_raw(b"".join(parts))
            state["sent"], state["frames"] = sent, frames
            state["elapsed"] = loop.time() - start
            next_due = start + sent / rate
            await asyncio.sleep(max(0.0, min(PACE_STEP, next_due - loop.time())))
    finally:
        state["sent"], state["frames"] = sent, frames
        state["elapsed"] = loop.time() - start
        state["running"] = False
        for subs in targets.values():
            for _s, sub, _lo, _hi in subs:
                sub.params["paused"] = False
