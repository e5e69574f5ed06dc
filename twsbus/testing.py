"""Fixtures that users and our own tests share: a real nats-server and a simulator on free ports.

``NatsServer`` starts the ``nats-server`` binary on a free loopback port, with JetStream (the
order stream and journal need it) unless asked not to, and can stop and restart it on the same
port and store, for reconnect tests. ``SimulatorThread`` runs the TWS simulator and
its control endpoint on a private event loop in a background thread, so blocking code (IB's own
``EClient``) and asyncio code can both talk to it. Neither depends on a NATS server that may
already listen on 4222.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from twsbus.sim.control import ControlClient, ControlServer
from twsbus.sim.server import SimConfig, Simulator

T = TypeVar("T")

__all__ = [
    "DaemonProcess", "NatsServer", "SimulatorThread", "free_port", "nats_server", "simulator",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.02)


def nats_server_binary() -> str:
    found = os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server")
    if found:
        return found
    if os.path.exists("/usr/sbin/nats-server"):
        return "/usr/sbin/nats-server"
    raise FileNotFoundError("nats-server not found: apt-get install -y nats-server")


class NatsServer:
    """A private nats-server process on a free loopback port."""

    def __init__(self, port: int | None = None, max_payload: int | None = None,
                 jetstream: bool = True, monitor: bool = False,
                 config: str = "") -> None:
        self.port = port or free_port()
        self.max_payload = max_payload
        self.jetstream = jetstream
        #: nats-server's HTTP monitoring port (``-m``), when asked for.
        self.monitor_port = free_port() if monitor else None
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="twsbus-nats-")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<NatsServer {self.url} {state}>"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> NatsServer:
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:  # the store survives restart(), as a real server's does
            args += ["-js", "-sd", os.path.join(self._dir, "jetstream")]
        if self.monitor_port:
            args += ["-m", str(self.monitor_port)]
        if self.max_payload or self.config:
            conf = os.path.join(self._dir, "nats.conf")
            with open(conf, "w") as fh:
                if self.max_payload:
                    fh.write(f"max_payload: {self.max_payload}\n")
                fh.write(self.config)
            args += ["-c", conf]
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


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
def nats_server(**kwargs: Any) -> Iterator[NatsServer]:
    with NatsServer(**kwargs) as server:
        yield server


@contextlib.contextmanager
def simulator(**overrides: Any) -> Iterator[SimulatorThread]:
    with SimulatorThread(**overrides) as sim:
        yield sim


class DaemonProcess:
    """``twsbus run`` as a child process, for tests that need the daemon as its own process."""

    def __init__(self, nats_url: str, tws_port: int, *, client_id: int = 0, prefix: str = "tws",
                 env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.nats_url = nats_url
        self.tws_port = tws_port
        self.client_id = client_id
        self.prefix = prefix
        self.env = {
            # Fast failure detection and reconnects, so tests of them take seconds.
            "TWSBUS_BACKOFF_INITIAL": "0.2",
            "TWSBUS_BACKOFF_MAX": "1",
            "TWSBUS_PROBE_INTERVAL": "1",
            "TWSBUS_PROBE_TIMEOUT": "1",
            "TWSBUS_STATUS_INTERVAL": "1",
            "TWSBUS_CONNECT_TIMEOUT": "3",
            **(env or {}),
        }
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(tempfile.mkdtemp(prefix="twsbus-daemon-"), "daemon.log")

    def __repr__(self) -> str:
        return f"<DaemonProcess pid={self.proc.pid if self.proc else None}>"

    def start(self, wait: bool = True) -> DaemonProcess:
        import sys

        env = {k: v for k, v in os.environ.items() if not k.startswith("TWSBUS_")}
        env.update(self.env)
        cmd = [sys.executable, "-m", "twsbus", "run", "--nats", self.nats_url,
               "--tws-port", str(self.tws_port), "--client-id", str(self.client_id),
               "--prefix", self.prefix, *self.args]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def status(self, timeout: float = 2.0) -> dict[str, Any] | None:
        import json

        async def ask() -> dict[str, Any] | None:
            import nats

            nc = await nats.connect(self.nats_url, connect_timeout=1, max_reconnect_attempts=0)
            try:
                msg = await nc.request(f"{self.prefix}.req.status", b"{}", timeout=timeout)
                data: dict[str, Any] = json.loads(msg.data)
                return data
            finally:
                await nc.close()

        # A thread of its own, so that async tests (which already run a loop) can call this.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            try:
                return pool.submit(asyncio.run, ask()).result()
            except Exception:
                return None

    def wait_ready(self, timeout: float = 20.0, state: str = "ready") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"twsbus exited with {self.proc.returncode}:\n{self.log()}")
            last = self.status(timeout=0.5)
            if last and last["tws"]["state"] == state:
                return last
            time.sleep(0.1)
        raise TimeoutError(f"daemon not {state} after {timeout}s (last status {last}):\n"
                           f"{self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()[-5000:]
        except OSError:
            return ""

    def stop(self, sig: int | None = None, timeout: float = 15.0) -> int | None:
        import signal

        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        import signal

        self.stop(signal.SIGKILL)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
