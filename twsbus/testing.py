"""Fixtures that users and our own tests share: a real nats-server and a simulator on free ports.

``NatsServer`` starts the ``nats-server`` binary on a free loopback port, with JetStream (the
order stream and journal need it) unless asked not to, and can stop and restart it on the same
port and store, for reconnect tests. ``SimulatorThread`` runs the TWS simulator and
its control endpoint on a private event loop in a background thread, so blocking code (IB's own
``EClient``) and asyncio code can both talk to it. Neither depends on a NATS server that may
already listen on 4222. ``NatsCluster`` clusters several ``NatsServer``s on loopback with routes
and JetStream, and kills, freezes or restarts one member, for failover tests.
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
    "DaemonProcess", "NatsCluster", "NatsServer", "SimulatorThread", "free_port", "nats_cluster",
    "nats_server", "simulator",
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
                 config: str = "", env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.max_payload = max_payload
        self.jetstream = jetstream
        #: nats-server's HTTP monitoring port (``-m``), when asked for.
        self.monitor_port = free_port() if monitor else None
        self.config = config
        #: Extra environment for the server process (a config's ``$VAR`` references read it).
        self.env = env
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
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env} if self.env else None,
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

            nc = await nats.connect(self.nats_url.split(","), connect_timeout=1,
                                    max_reconnect_attempts=0)
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


class NatsCluster:
    """Several nats-servers clustered on loopback with routes: the way to grow past one host.

    Each member is a ``NatsServer`` of its own (a free client port, a free cluster port, a
    monitoring port, its own ``server_name`` and JetStream store) whose ``cluster`` block routes
    to every other member. ``start`` returns once the cluster is formed: every running member
    has a route to every other running one and, with JetStream, agrees on a meta leader and
    reports itself healthy. ``kill`` ends one member with SIGKILL (a crashed host),
    ``stop_member`` with SIGTERM, ``freeze`` stops it with SIGSTOP (a hung host: connections stay
    open, nothing answers); ``restart`` and ``thaw`` bring it back (same ports, same store).
    """

    def __init__(self, size: int = 3, jetstream: bool = True, name: str = "twsbus",
                 config: str = "") -> None:
        """``config``: more nats-server configuration for every member (``ping_interval``)."""
        self.name = name
        self.jetstream = jetstream
        self.cluster_ports = [free_port() for _ in range(size)]
        self.members: list[NatsServer] = []
        for i, cport in enumerate(self.cluster_ports):
            routes = ", ".join(f"nats-route://127.0.0.1:{p}"
                               for p in self.cluster_ports if p != cport)
            text = (f"server_name: {self.member_name(i)}\n"
                    f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{cport}\n"
                    f"  routes: [{routes}]\n}}\n{config}\n")
            self.members.append(NatsServer(jetstream=jetstream, monitor=True, config=text))
        self._frozen: set[int] = set()

    def member_name(self, index: int) -> str:
        return f"{self.name}-{index}"

    def __repr__(self) -> str:
        up = sum(m.running for m in self.members)
        return f"<NatsCluster {self.name} {up}/{len(self.members)} running>"

    def __getitem__(self, index: int) -> NatsServer:
        return self.members[index]

    @property
    def urls(self) -> list[str]:
        """Every member's client URL, in member order."""
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        """All members' URLs comma-separated: what ``twsbus run --nats`` takes."""
        return ",".join(self.urls)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for member in self.members:
            if not member.running:
                member.start()
        self.wait_formed(timeout)
        return self

    def index_of(self, member: NatsServer | str) -> int:
        """A member's index, from the member itself or its ``server_name``."""
        if isinstance(member, NatsServer):
            return self.members.index(member)
        names = [self.member_name(i) for i in range(len(self.members))]
        return names.index(member)

    def kill(self, member: NatsServer | str | int) -> NatsServer:
        """SIGKILL one member, as a host that dies does; returns it (``restart`` brings it
        back)."""
        import signal

        server = self._member(member)
        if server.pid is not None and server.running:
            os.kill(server.pid, signal.SIGKILL)
        server.stop()  # reaps it
        self._frozen.discard(self.members.index(server))
        return server

    def stop_member(self, member: NatsServer | str | int) -> NatsServer:
        """SIGTERM one member: a clean shutdown that closes its clients' connections."""
        server = self._member(member)
        server.stop()
        return server

    def freeze(self, member: NatsServer | str | int) -> NatsServer:
        """SIGSTOP one member: a host that hangs or drops off the network. Its TCP connections
        stay open and nothing answers on them, so its clients notice only by their own pings
        or timeouts. ``thaw`` (and leaving the cluster) continues it."""
        import signal

        server = self._member(member)
        if server.pid is not None and server.running:
            os.kill(server.pid, signal.SIGSTOP)
            self._frozen.add(self.members.index(server))
            _wait_stopped(server.pid)
        return server

    def thaw(self, member: NatsServer | str | int) -> NatsServer:
        import signal

        server = self._member(member)
        if server.pid is not None and server.running:
            os.kill(server.pid, signal.SIGCONT)
        self._frozen.discard(self.members.index(server))
        return server

    def restart(self, member: NatsServer | str | int, timeout: float = 30.0) -> NatsServer:
        """Start a stopped member again (same ports, same store) and wait for it to rejoin."""
        server = self._member(member)
        if not server.running:
            server.start()
        self.wait_formed(timeout)
        return server

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def monitor(self, member: NatsServer | str | int, path: str,
                timeout: float = 2.0) -> dict[str, Any]:
        """One member's HTTP monitoring answer (``routez``, ``jsz``, ``connz?...``)."""
        import json
        import urllib.request

        server = self._member(member)
        url = f"http://127.0.0.1:{server.monitor_port}/{path.lstrip('/')}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def formed(self) -> bool:
        """Every running member routes to every other running one and (with JetStream) is
        healthy with a meta leader."""
        running = [m for i, m in enumerate(self.members)
                   if m.running and i not in self._frozen]
        try:
            for member in running:
                if self.monitor(member, "routez")["num_routes"] < len(running) - 1:
                    return False
                if self.jetstream:
                    meta = self.monitor(member, "jsz").get("meta_cluster") or {}
                    if not meta.get("leader"):
                        return False
                    if self.monitor(member, "healthz").get("status") != "ok":
                        return False
        except OSError:  # also urllib's HTTPError: healthz answers 503 until JetStream is current
            return False
        return True

    def wait_formed(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.formed():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self!r} not formed after {timeout}s")
            time.sleep(0.1)

    def serving(self, client_name: str) -> NatsServer | None:
        """The running member that holds a client connection whose name starts with
        ``client_name`` (a daemon names its connection ``twsbus-<epoch>``), if any."""
        for index, member in enumerate(self.members):
            if not member.running or index in self._frozen:
                continue
            try:
                conns = self.monitor(member, "connz?limit=1024").get("connections") or []
            except OSError:
                continue
            if any(str(c.get("name", "")).startswith(client_name) for c in conns):
                return member
        return None

    def _member(self, member: NatsServer | str | int) -> NatsServer:
        if isinstance(member, int):
            return self.members[member]
        return self.members[self.index_of(member)]

    def __enter__(self) -> NatsCluster:
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        for index in list(self._frozen):
            self.thaw(index)
        for member in self.members:
            member.__exit__()


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Until the kernel shows ``pid`` stopped (Linux ``/proc``; elsewhere, return at once)."""
    path = f"/proc/{pid}/stat"
    deadline = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < deadline:
        with open(path) as fh:
            if fh.read().rsplit(")", 1)[-1].split()[0] in ("T", "t"):
                return
        time.sleep(0.005)


@contextlib.contextmanager
def nats_cluster(**kwargs: Any) -> Iterator[NatsCluster]:
    with NatsCluster(**kwargs) as cluster:
        yield cluster
