"""What every benchmark shares: the processes (simulator, daemon, helpers), /proc readings and
percentiles.

Every measured party runs in its own process, as it would in production: the TWS simulator
(``python -m benchmarks.simproc``), nats-server, the daemon (``twsbus run``) and the subscribers
or baseline clients. The orchestrator only starts them, throws the simulator's switches through
its HTTP control endpoint and reads /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twsbus.sim.control import ControlClient
from twsbus.sim.universe import SYNTHETIC_BASE
from twsbus.testing import DaemonProcess, NatsServer, free_port, wait_for_port

PY = sys.executable
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

#: The wires a benchmark can run on: the simulator's highest server version for each. The daemon
#: and stock ibapi 10.46 offer up to 225, so they negotiate this; ib_async offers at most 178 and
#: stays on the text wire whatever the simulator offers.
WIRES = {"text": 200, "protobuf": 225}

#: Synthetic stocks the benchmark simulator adds (SYN0001.. = 900_000_001..).
EXTRA_INSTRUMENTS = 1200
AAPL = 265598


def stdin_commands() -> asyncio.Queue[str]:
    """Lines from stdin as a queue on the running loop (the parent steers a child this way);
    "quit" when stdin closes."""
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    threading.Thread(target=read_stdin, daemon=True).start()
    return commands


def syn(n: int) -> list[int]:
    """conIds of the first n synthetic stocks."""
    return [SYNTHETIC_BASE + i for i in range(1, n + 1)]


# ---- /proc -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


class CpuMeter:
    """CPU seconds used by some processes between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._t0 = 0.0
        self._c0: dict[str, float] = {}
        self.wall = 0.0
        self.cpu: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._c0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self._t0 = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        self.wall = time.monotonic() - self._t0
        self.cpu = {k: cpu_seconds(p) - self._c0[k] for k, p in self.pids.items()}
        return self.cpu


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return float(ordered[k])


def summary(values: Sequence[float], ps: Sequence[float] = (50, 99, 99.9)) -> dict[str, float]:
    ordered = sorted(values)
    out = {f"p{p:g}": pct(ordered, p) for p in ps}
    out["n"] = len(ordered)
    out["max"] = float(ordered[-1]) if ordered else math.nan
    return out


# ---- child processes ---------------------------------------------------------------------------


class Child:
    """A helper process (``python -m benchmarks.<module>``) that speaks JSON lines on stdout and
    takes one-word commands on stdin."""

    def __init__(self, module: str, *args: str, name: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name or module
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.proc = subprocess.Popen(
            [PY, "-m", f"benchmarks.{module}", *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=full_env)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.last: dict[str, Any] = {}
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                continue

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            del self.stderr[:-50]

    def expect(self, key: str, timeout: float) -> dict[str, Any]:
        """The next line that has ``key`` (lines without it update ``last`` only)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {key!r} line within {timeout:g}s; "
                                   f"last {self.last}; stderr:\n{''.join(self.stderr[-20:])}")
            if self.proc.poll() is not None and self.lines.empty():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; last "
                                   f"{self.last}:\n{''.join(self.stderr[-30:])}")
            try:
                line = self.lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            self.last.update(line)
            if key in line:
                return line

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class SimProcess:
    """The TWS simulator in a process of its own (so it never shares a GIL with what it feeds)."""

    def __init__(self, *, extra: int = EXTRA_INSTRUMENTS, line_limit: int = 2000,
                 tick_interval: float = 0.25, max_version: int | None = None) -> None:
        self.port = free_port()
        self.control_port = free_port()
        version = ["--max-version", str(max_version)] if max_version else []
        self.child = Child("simproc", "--port", str(self.port), "--control-port",
                           str(self.control_port), "--extra", str(extra), "--line-limit",
                           str(line_limit), "--tick-interval", str(tick_interval), *version,
                           name="sim")
        wait_for_port(self.port, 90)  # a loaded machine (CI runs tests side by side)
        wait_for_port(self.control_port, 90)
        self.control = ControlClient(f"http://127.0.0.1:{self.control_port}")

    @property
    def pid(self) -> int:
        return self.child.pid

    def wait_pace(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state: dict[str, Any] = self.control.call("GET", "/pace")
            if not state.get("running") or time.monotonic() > deadline:
                return state
            time.sleep(0.1)

    def versions(self) -> dict[int, int]:
        """The server version each connected client negotiated, by clientId."""
        clients = self.control.call("GET", "/state")["clients"]
        return {c["clientId"]: c["version"] for c in clients if c["clientId"] is not None}

    def wait_subscribed(self, kind: str, con_id: int, n: int, timeout: float) -> int:
        """Wait until ``n`` sessions hold a ``kind`` subscription on ``con_id`` (the simulator's
        view: a lease or a request has reached it); the count seen last."""
        deadline = time.monotonic() + timeout
        while True:
            subs = self.control.call("GET", "/state")["subscriptions"]
            have = int(subs.get(kind, {}).get(str(con_id), 0))
            if have >= n or time.monotonic() > deadline:
                return have
            time.sleep(0.05)

    def stop(self) -> None:
        self.child.proc.terminate()
        try:
            self.child.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.child.kill()


@dataclass
class Stack:
    nats: NatsServer
    sim: SimProcess
    daemon: DaemonProcess
    children: list[Child] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nats.url

    @property
    def daemon_pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid

    @property
    def nats_pid(self) -> int:
        assert self.nats.pid is not None
        return self.nats.pid

    def child(self, module: str, *args: str, name: str | None = None) -> Child:
        c = Child(module, *args, name=name)
        self.children.append(c)
        return c


@contextlib.contextmanager
def stack(*, daemon_env: dict[str, str] | None = None, tick_interval: float = 0.25,
          client_id: int = 0, max_version: int | None = None) -> Iterator[Stack]:
    """nats-server + simulator process + daemon process (+ children, stopped on exit).
    ``max_version`` caps the simulator's server version (``WIRES``: 200 text, 225 protobuf);
    None leaves the simulator's default (200, or ``TWSBUS_SIM_MAX_VERSION``)."""
    with NatsServer() as ns:
        sim = SimProcess(tick_interval=tick_interval, max_version=max_version)
        daemon = DaemonProcess(ns.url, sim.port, client_id=client_id, env={
            "TWSBUS_MAX_LINES": "2000", "TWSBUS_LOG_LEVEL": "WARNING",
            "TWSBUS_PROBE_INTERVAL": "10", "TWSBUS_PROBE_TIMEOUT": "10",
            "TWSBUS_STATUS_INTERVAL": "5", **(daemon_env or {})})
        s = Stack(ns, sim, daemon)
        try:
            daemon.start()
            yield s
        finally:
            for c in s.children:
                c.stop(2)
            daemon.stop(timeout=5)
            sim.stop()


def start_all(children: list[Child], key: str = "ready", timeout: float = 60) -> list[
        dict[str, Any]]:
    return [c.expect(key, timeout) for c in children]


def reset_all(children: list[Child]) -> None:
    """Zero every receiver's counters (all asked first, then each answer awaited)."""
    for c in children:
        c.send("reset")
    for c in children:
        c.expect("reset", 10)


def write_json(name: str, data: Any) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(data, indent=1, default=str))
    return path


def stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S")
