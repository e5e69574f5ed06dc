"""A real ibapi client for tests: EClient + an EWrapper that records every callback.

Tests drive IB's own client against the simulator and assert on what its callbacks received.
The recorder works with ibapi 10.x and 9.81 alike: it records each callback's positional
arguments by name, and normalises ``error`` (whose signature differs) to (reqId, code, message).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from ibapi.client import EClient
from ibapi.wrapper import EWrapper

Call = tuple[str, tuple[Any, ...]]


class Recorder(EWrapper):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.cond = threading.Condition()

    def record(self, name: str, args: tuple[Any, ...]) -> None:
        with self.cond:
            self.calls.append((name, args))
            self.cond.notify_all()

    def error(self, reqId: Any, *args: Any) -> None:
        # 10.x: (reqId, errorTime, errorCode, errorString, advancedOrderRejectJson)
        # 9.81: (reqId, errorCode, errorString)
        if len(args) >= 3 and isinstance(args[2], str):
            code, msg = args[1], args[2]
        else:
            code, msg = args[0], args[1]
        self.record("error", (int(reqId), int(code), str(msg)))

    def of(self, name: str) -> list[tuple[Any, ...]]:
        with self.cond:
            return [args for n, args in self.calls if n == name]

    def wait_for(
        self,
        name: str,
        pred: Callable[[tuple[Any, ...]], bool] = lambda _: True,
        timeout: float = 5.0,
        count: int = 1,
    ) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [a for n, a in self.calls if n == name and pred(a)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({n for n, _ in self.calls})
                    raise TimeoutError(f"no {count}x {name} within {timeout}s; saw {seen}")
                self.cond.wait(left)

    def clear(self) -> None:
        with self.cond:
            self.calls.clear()


def _make_recording(name: str) -> Callable[..., None]:
    def method(self: Recorder, *args: Any) -> None:
        self.record(name, args)

    method.__name__ = name
    return method


for _name, _fn in inspect.getmembers(EWrapper, inspect.isfunction):
    if not _name.startswith("_") and _name not in ("error", "logAnswer") and \
            _name not in Recorder.__dict__:
        setattr(Recorder, _name, _make_recording(_name))


class IBClient(EClient):
    """EClient with its run loop on a thread and a Recorder as wrapper."""

    def __init__(self) -> None:
        self.rec = Recorder()
        super().__init__(self.rec)
        self._thread: threading.Thread | None = None

    def start(self, port: int, client_id: int = 0, host: str = "127.0.0.1") -> IBClient:
        self.connect(host, port, client_id)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.rec.wait_for("nextValidId")
        return self

    def _run(self) -> None:
        try:
            self.run()
        except TypeError:
            # ibapi 10.x's run() compares serverVersion() after taking a message; a disconnect
            # in between (ours, or the server closing) has set it to None. Only that is expected.
            if self.isConnected() or self.serverVersion() is not None:
                raise

    def stop(self) -> None:
        self.disconnect()
        if self._thread is not None:
            self._thread.join(5)
