"""``twsbus run`` as a child process (``DaemonProcess``), for tests that need the daemon as its
own process; none outlives the test process.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import subprocess
import tempfile
import time
from typing import Any

#: Daemons started and not yet stopped: killed when the test process exits, so a test that
#: forgets one (or fails before stopping it) leaves no daemon reconnecting for ever.
_RUNNING: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_RUNNING):
        with contextlib.suppress(OSError):
            proc.kill()


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

        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self!r} is already running")  # a second would be orphaned

        env = {k: v for k, v in os.environ.items() if not k.startswith("TWSBUS_")}
        env.update(self.env)
        cmd = [sys.executable, "-m", "twsbus", "run", "--nats", self.nats_url,
               "--tws-port", str(self.tws_port), "--client-id", str(self.client_id),
               "--prefix", self.prefix, *self.args]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        _RUNNING.add(self.proc)
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
        _RUNNING.discard(self.proc)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        import signal

        self.stop(signal.SIGKILL)

    def __enter__(self) -> DaemonProcess:
        # ``with DaemonProcess(...).start() as d`` is fine too: started once, stopped on exit.
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
