"""Baseline (b): ib_async in its own process, one TWS connection, a no-op ticker handler.

``python -m benchmarks.ibasync_client --port P --conid C --client-id N [--tbt]``

IB().connectAsync and reqMktData on the conId; ``pendingTickersEvent`` gets a no-op handler, so
ib_async does all its usual work (decoding, Ticker updates, events). ib_async turns tickType 45
strings into datetimes and rejects "blast-end" (it logs a ValueError), so the end of a burst is
seen by a hook on the wrapper's tickString in front of ib_async's own; tickPrice calls are
counted by a hook on priceSizeTick. With ``--tbt``: reqTickByTickData AllLast instead, and a
hook in front of the wrapper's tickByTickAllLast counts every trade (ib_async then does its usual
work: a TickByTickAllLast on the ticker, the pending-tickers event); the trade whose
specialConditions is "blast-end" ends a burst. Prints JSON lines like benchmarks.ibapi_client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
from typing import Any

from benchmarks.common import stdin_commands


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def main() -> None:
    import ib_async

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conid", type=int, required=True)
    ap.add_argument("--client-id", type=int, default=72)
    ap.add_argument("--tbt", action="store_true", help="tick-by-tick AllLast, count trades")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)  # "malformed value" for blast-end would flood stderr

    ib = ib_async.IB()
    await ib.connectAsync("127.0.0.1", args.port, clientId=args.client_id, timeout=20)
    count = {"ticks": 0}
    wrapper = ib.wrapper
    price_size_tick = wrapper.priceSizeTick
    tick_string = wrapper.tickString

    def counting_price_size_tick(*a: Any) -> None:
        count["ticks"] += 1
        price_size_tick(*a)

    def watching_tick_string(req_id: int, tick_type: int, value: str) -> None:
        if value == "blast-end":
            emit(end=time.time_ns(), received=count["ticks"])
            return
        tick_string(req_id, tick_type, value)

    tick_by_tick_all_last = wrapper.tickByTickAllLast

    def counting_tick_by_tick_all_last(req_id: int, tick_type: int, time_: int, price: float,
                                       size: Any, attrib: Any, exchange: str,
                                       special: str) -> None:
        count["ticks"] += 1
        tick_by_tick_all_last(req_id, tick_type, time_, price, size, attrib, exchange, special)
        if special == "blast-end":
            emit(end=time.time_ns(), received=count["ticks"])

    wrapper.priceSizeTick = counting_price_size_tick  # type: ignore[method-assign]
    wrapper.tickString = watching_tick_string  # type: ignore[method-assign]
    wrapper.tickByTickAllLast = counting_tick_by_tick_all_last  # type: ignore[method-assign]
    ib.pendingTickersEvent += lambda tickers: None  # the no-op ticker handler
    contract = ib_async.Contract(conId=args.conid, exchange="SMART")
    if args.tbt:  # no trade comes before a burst: ready once the request is out
        ib.reqTickByTickData(contract, "AllLast", 0, False)
        emit(ready=True, version=ib.client.serverVersion())
    else:
        ticker = ib.reqMktData(contract)
        deadline = time.monotonic() + 10
        while count["ticks"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if count["ticks"] == 0:
            emit(error="no first tick")
            return
        emit(ready=True, version=ib.client.serverVersion(), bid=ticker.bid)

    commands = stdin_commands()

    def progress() -> None:
        while True:
            time.sleep(0.25)
            emit(progress=count["ticks"])

    threading.Thread(target=progress, daemon=True).start()
    while True:
        command = await commands.get()
        if command == "quit":
            break
        if command == "reset":
            count["ticks"] = 0
            emit(reset=True)
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
