"""The TWS simulator and its control endpoint on a private event loop in a background thread
(``SimulatorThread``), so blocking code (IB's own ``EClient``) and asyncio code can both talk to
it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from twsbus.sim.control import ControlClient, ControlServer
from twsbus.sim.server import SimConfig, Simulator

T = TypeVar("T")


class SimulatorThread:
    """The TWS simulator on its own event loop in a daemon thread."""

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        config = config or SimConfig(port=0)
        if overrides:
            import msgspec

            config = msgspec.structs.replace(config, **overrides)
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.sim: Simulator | None = None
        self.control_server: ControlServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="twsbus-sim",
                                        daemon=True)

    @property
    def port(self) -> int:
        assert self.sim is not None
        return self.sim.port

    @property
    def control_url(self) -> str:
        assert self.control_server is not None
        return f"http://127.0.0.1:{self.control_server.port}"

    @property
    def control(self) -> ControlClient:
        return ControlClient(self.control_url)

    def start(self) -> SimulatorThread:
        self._thread.start()

        async def boot() -> None:
            self.sim = Simulator(self.config)
            await self.sim.start()
            self.control_server = ControlServer(self.sim, "127.0.0.1", 0)
            await self.control_server.start()

        self.run(boot())
        return self

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the simulator's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[Simulator], T], timeout: float = 30.0) -> T:
        """Call ``fn(simulator)`` on the simulator's loop (its state is not thread-safe)."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def invoke() -> None:
            try:
                assert self.sim is not None
                fut.set_result(fn(self.sim))
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(invoke)
        return fut.result(timeout)

    def stop(self) -> None:
        if self.sim is not None and self.loop.is_running():
            async def shutdown() -> None:
                assert self.sim is not None
                if self.control_server is not None:
                    await self.control_server.stop()
                await self.sim.stop()

            with contextlib.suppress(Exception):
                self.run(shutdown(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def simulator(**overrides: Any) -> Iterator[SimulatorThread]:
    with SimulatorThread(**overrides) as sim:
        yield sim
