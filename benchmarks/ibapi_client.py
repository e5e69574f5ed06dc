"""Baseline (a): IB's stock ``ibapi`` in its own process, one TWS connection, a no-op callback.

``python -m benchmarks.ibapi_client --port P --conid C --client-id N [--tbt]``

EClient.connect, then ``run()`` on its own thread (the stock EReader thread feeds its queue), and
reqMktData on the conId. ``tickPrice`` only counts (the no-op callback); the ``tickString``
"blast-end" ends a burst. With ``--tbt``: reqTickByTickData AllLast instead, and
``tickByTickAllLast`` counts every trade; the one whose specialConditions is "blast-end" ends a
burst (``ready`` comes once the request is sent: the simulator sends no trade until a burst).
Prints JSON lines: ``ready``, ``progress`` (every 0.25 s), ``end`` (its time in ns and the
count); commands on stdin: ``reset``, ``quit``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.wrapper import EWrapper


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class NoOp(EWrapper):
    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self.first = threading.Event()
        self.ready = threading.Event()

    def nextValidId(self, orderId: int) -> None:
        self.ready.set()

    def error(self, *args: Any, **kwargs: Any) -> None:
        return None

    def tickPrice(self, reqId: Any, tickType: Any, price: Any, attrib: Any) -> None:
        self.ticks += 1
        self.first.set()

    def tickString(self, reqId: Any, tickType: Any, value: str) -> None:
        if value == "blast-end":
            emit(end=time.time_ns(), received=self.ticks)

    def tickByTickAllLast(self, reqId: Any, tickType: Any, time_: Any, price: Any, size: Any,
                          tickAttribLast: Any, exchange: Any, specialConditions: Any) -> None:
        self.ticks += 1
        if specialConditions == "blast-end":
            emit(end=time.time_ns(), received=self.ticks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conid", type=int, required=True)
    ap.add_argument("--client-id", type=int, default=71)
    ap.add_argument("--tbt", action="store_true", help="tick-by-tick AllLast, count trades")
    args = ap.parse_args()
    wrapper = NoOp()
    client = EClient(wrapper)
    client.connect("127.0.0.1", args.port, args.client_id)
    threading.Thread(target=client.run, daemon=True).start()
    if not wrapper.ready.wait(10):
        emit(error="no nextValidId")
        return
    contract = Contract()
    contract.conId = args.conid
    contract.exchange = "SMART"
    if args.tbt:
        client.reqTickByTickData(1, contract, "AllLast", 0, False)
    else:
        client.reqMktData(1, contract, "", False, False, [])
    if not args.tbt and not wrapper.first.wait(10):
        emit(error="no first tick")
        return
    emit(ready=True, version=client.serverVersion())

    def progress() -> None:
        while True:
            time.sleep(0.25)
            emit(progress=wrapper.ticks)

    threading.Thread(target=progress, daemon=True).start()
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "reset":
            wrapper.ticks = 0
            emit(reset=True)
    os._exit(0)  # a collapsed reader may still be chewing its backlog: do not wait for it


if __name__ == "__main__":
    main()
