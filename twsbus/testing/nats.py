"""A real nats-server on a free loopback port, stoppable and restartable on the same port and
store (``NatsServer``), and the port helpers the other fixtures use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any


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


@contextlib.contextmanager
def nats_server(**kwargs: Any) -> Iterator[NatsServer]:
    with NatsServer(**kwargs) as server:
        yield server
