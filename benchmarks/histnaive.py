"""Baselines for the historical-data proof: one strategy process talking to TWS itself, the way
most code does, with stock ibapi or ib_async (each process its own client id).

``python -m benchmarks.histnaive --lib ibapi|ib_async --port P --client-id N``; the first stdin
line is the strategy's requests (``benchmarks.histproof`` bodies), the process prints "ready"
when connected, waits for a "go" line, then asks for each series in turn (the next once the
previous answered or failed: the usual loop) and prints one JSON line with every outcome. Neither
library knows IB's historical limits, nor what the other nine processes asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
import time
from typing import Any

TIMEOUT = 30.0


def _ibapi(port: int, client_id: int, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from ibapi.client import EClient
    from ibapi.contract import Contract
    from ibapi.wrapper import EWrapper

    class App(EWrapper, EClient):
        def __init__(self) -> None:
            EWrapper.__init__(self)
            EClient.__init__(self, self)
            self.cond = threading.Condition()
            self.done: dict[int, str] = {}
            self.ready = threading.Event()

        def nextValidId(self, orderId: int) -> None:
            self.ready.set()

        def historicalDataEnd(self, reqId: int, start: str, end: str) -> None:
            with self.cond:
                self.done[reqId] = "ok"
                self.cond.notify_all()

        def error(self, reqId: Any, *args: Any) -> None:  # 9.81 and 10.x differ
            # 10.x: (errorTime, errorCode, errorString, ...); 9.81: (errorCode, errorString)
            code = args[1] if len(args) >= 3 and isinstance(args[2], str) else args[0]
            if isinstance(reqId, int) and reqId > 0:
                with self.cond:
                    self.done[reqId] = str(code)
                    self.cond.notify_all()

    app = App()
    app.connect("127.0.0.1", port, client_id)
    threading.Thread(target=app.run, daemon=True).start()
    app.ready.wait(20)
    print("ready", flush=True)
    sys.stdin.readline()  # "go"
    rows = []
    for i, body in enumerate(bodies, start=1):
        c = Contract()
        c.conId, c.exchange = body["contract"]["conId"], body["contract"]["exchange"]
        start = time.time()
        app.reqHistoricalData(i, c, body["endDateTime"], body["durationStr"],
                              body["barSizeSetting"], body["whatToShow"], body["useRTH"],
                              body["formatDate"], False, [])
        with app.cond:
            app.cond.wait_for(lambda i=i: i in app.done, TIMEOUT)  # type: ignore[misc]
        rows.append({"start": start, "end": time.time(), "outcome": app.done.get(i, "timeout")})
    app.disconnect()
    return rows


async def _ib_async(port: int, client_id: int, bodies: list[dict[str, Any]]) -> list[
        dict[str, Any]]:
    import ib_async

    logging.disable(logging.CRITICAL)  # every 162 would be logged
    ib = ib_async.IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=20)
    errors: dict[int, int] = {}
    ib.errorEvent += lambda req_id, code, *_: errors.__setitem__(req_id, code)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    rows = []
    for body in bodies:
        contract = ib_async.Contract(conId=body["contract"]["conId"],
                                     exchange=body["contract"]["exchange"])
        start = time.time()
        before = set(errors)
        try:
            bars = await ib.reqHistoricalDataAsync(
                contract, body["endDateTime"], body["durationStr"], body["barSizeSetting"],
                body["whatToShow"], bool(body["useRTH"]), body["formatDate"], timeout=TIMEOUT)
            new = [errors[k] for k in set(errors) - before]
            outcome = "ok" if bars else str(new[0]) if new else "empty"
        except Exception as exc:
            outcome = type(exc).__name__
        rows.append({"start": start, "end": time.time(), "outcome": outcome})
    ib.disconnect()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", choices=("ibapi", "ib_async"), required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--client-id", type=int, required=True)
    args = ap.parse_args()
    bodies = json.loads(sys.stdin.readline())
    if args.lib == "ibapi":
        rows = _ibapi(args.port, args.client_id, bodies)
    else:
        rows = asyncio.run(_ib_async(args.port, args.client_id, bodies))
    print(json.dumps(rows), flush=True)


def run_naive(lib: str, port: int, deals: list[list[dict[str, Any]]],
              first_client_id: int = 100) -> dict[str, Any]:
    """Ten (len(deals)) strategy processes of ``lib``, released together; their outcomes."""
    import subprocess

    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.histnaive", "--lib", lib,
                               "--port", str(port), "--client-id", str(first_client_id + n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for n in range(len(deals))]
    try:
        for proc, deal in zip(procs, deals, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(deal) + "\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a {lib} strategy process did not start: {line!r}")
        t0 = time.time()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.close()
        per = []
        for proc in procs:
            assert proc.stdout is not None
            per.append(json.loads(proc.stdout.read()))
            proc.wait(TIMEOUT)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return {"t0": t0, "requesters": per}


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    rows = [r for rs in run["requesters"] for r in rs]
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {"requests": len(rows), "answered": outcomes.get("ok", 0),
            "refused_162": outcomes.get("162", 0), "outcomes": outcomes,
            "total_s": round(max(r["end"] for r in rows) - run["t0"], 3) if rows else 0.0}


if __name__ == "__main__":
    main()
