"""Several ``NatsServer``s clustered on loopback with routes and JetStream (``NatsCluster``),
with one member killed, frozen or restarted for failover tests.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from twsbus.testing.nats import NatsServer, free_port


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
