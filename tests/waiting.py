"""The one way tests wait: poll a condition until it holds (its value is returned) or a deadline
passes (an AssertionError naming what was awaited). Never a fixed sleep before an assert.

``wait_until`` is for async tests with a cheap predicate, ``eventually`` for async tests whose
check blocks (a control-endpoint call, a subprocess: it runs in a thread) or is itself async (a
NATS request on the test's own connection: a coroutine function is awaited on the test's loop),
``poll`` for plain tests.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        await asyncio.sleep(0.02)
    return value


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "",
                     interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check() if inspect.iscoroutinefunction(check) else \
            await asyncio.to_thread(check)
        if inspect.iscoroutine(last):  # a lambda around an async call: never true by accident
            last.close()
            raise TypeError(f"{what or check} returns a coroutine: pass an async def instead")
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what or check} not true after {timeout}s; last value {last!r}")


def poll(check: Callable[[], Any], timeout: float = 15.0, what: str = "",
         interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(interval)
    return value
