"""The daemon's NATS connection, kept alive end to end: connect, serve, watch, replace.

nats-py reconnects by itself after a network failure, but some failures close its connection for
good (a protocol error the server answers with ``-ERR`` and a hang-up; a reconnect budget spent),
and then a daemon that only trusts nats-py stays alive but deaf. ``NatsLink.run`` owns the
connection instead:

- it connects, retrying forever (cancellable: SIGTERM works while NATS is down), then hands the
  connection to ``on_up`` (register the micro service, attach the publisher);
- it watches it: a closed connection ends this round at once, and a watchdog asks the daemon's own
  ``status`` subject through NATS every ``interval`` seconds; ``failures`` misses in a row while
  the connection claims to be up mean the daemon is deaf, and that ends the round too;
- at the end of a round ``on_down`` runs, the old connection is discarded and a fresh one made
  (counted in ``restarts``). A round that ends deaf right after a restart, with no answered ping
  in between, means replacing the connection does not help: ``run`` raises ``LinkFailed`` so the
  supervisor (systemd, docker) restarts the process.

Slow consumers are counted here too: nats-py reports the daemon's own as ``SlowConsumerError``s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.errors import SlowConsumerError

log = logging.getLogger("twsbus.nats")


class LinkFailed(Exception):
    """The NATS side cannot be brought back in this process."""


class NatsLink:
    def __init__(self, options: Callable[[], dict[str, Any]], ping_subject: str, *,
                 on_up: Callable[[NATS], Awaitable[None]], on_down: Callable[[], None],
                 interval: float = 5.0, timeout: float = 2.0, failures: int = 3,
                 retry: float = 1.0, redact: Callable[[str], str] = str) -> None:
        self._options = options
        self.ping_subject = ping_subject
        self.on_up = on_up
        self.on_down = on_down
        self.interval = interval
        self.timeout = timeout
        self.failures = failures
        self.retry = retry
        self.redact = redact
        self.nc: NATS | None = None
        self.up = asyncio.Event()
        self.restarts = 0
        self.pings = 0
        self.missed = 0
        self.slow_consumers = 0
        self.last_error: str | None = None
        self._closed = asyncio.Event()
        self._closing = False
        self._discovered: list[str] = []

    def __repr__(self) -> str:
        state = "up" if self.up.is_set() else "down"
        return f"<NatsLink {state} restarts={self.restarts} missed={self.missed}>"

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def run(self) -> None:
        answered_since_restart = True
        while not self._closing:
            nc = await self._connect()
            if nc is None:  # closed while no server answered
                return
            self.nc = nc
            try:
                if not await self._set_up(nc):
                    continue  # the finally block discards the connection; try a fresh one
                self.up.set()
                deaf, answered = await self._watch(nc)
            finally:
                self._discovered = [u.geturl() for u in nc.discovered_servers]
                self.up.clear()
                self.on_down()
                await _discard(nc)
            if self._closing:
                return
            if deaf and not answered and not answered_since_restart:
                raise LinkFailed(f"the daemon stays deaf on NATS after a fresh connection "
                                 f"({self.last_error})")
            answered_since_restart = answered
            self.restarts += 1
            log.error("NATS: replacing the connection (%s)", self.last_error)

    async def close(self) -> None:
        """Drain the connection (shutdown); ``run`` then returns."""
        self._closing = True
        nc = self.nc
        if nc is not None and nc.is_connected:
            try:
                await asyncio.wait_for(nc.drain(), 5.0)
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("NATS drain: %r", exc)
        if nc is not None:
            await _discard(nc)
        # The watch ends now even when nats-py never calls back (it was reconnecting to a
        # server that is gone): SIGTERM works in every state.
        self._closed.set()

    # ---- one round --------------------------------------------------------------------------

    async def _connect(self) -> NATS | None:
        options = self._options()
        # Members the cluster told the last connection about, after the configured ones: a
        # daemon given one URL must not retry only that member when it is the one that hung.
        known = list(options.get("servers", []))
        options["servers"] = known + [s for s in self._discovered if s not in known]
        servers = ", ".join(self.redact(s) for s in options.get("servers", []))
        while not self._closing:
            self._closed = asyncio.Event()
            try:
                nc = await nats.connect(**options, closed_cb=self._on_closed,
                                        error_cb=self._on_error)
                log.info("NATS connected to %s", self.redact(str(nc.connected_url.geturl()
                                                                 if nc.connected_url else "")))
                return nc
            except Exception as exc:  # nats-py raises several kinds: all mean "not yet"
                self.last_error = f"cannot connect to {servers}: {exc!r}"
                log.warning("NATS: %s; retrying in %gs", self.last_error, self.retry)
                await asyncio.sleep(self.retry)
        return None

    async def _set_up(self, nc: NATS) -> bool:
        """``on_up``; False (after ``retry`` seconds) when NATS failed it. On a cluster, a member
        that dies leaves JetStream without leaders for seconds, and the order journal's requests
        time out: that ends this round, not the daemon. Other errors (a twin) still raise."""
        try:
            await self.on_up(nc)
        except nats.errors.Error as exc:
            self.last_error = f"setting up on NATS failed: {exc!r}"
            log.warning("NATS: %s; retrying in %gs", self.last_error, self.retry)
            await asyncio.sleep(self.retry)
            return False
        return True

    async def _watch(self, nc: NATS) -> tuple[bool, bool]:
        """Until the connection closes (False) or goes deaf (True); also says whether any ping
        was answered in this round."""
        missed = 0
        answered = False
        while True:
            try:
                await asyncio.wait_for(self._closed.wait(), self.interval)
                self.last_error = self.last_error or "connection closed"
                return False, answered
            except TimeoutError:
                pass
            if not nc.is_connected:
                continue  # nats-py is reconnecting: an outage, not deafness
            self.pings += 1
            try:
                await nc.request(self.ping_subject, b"{}", timeout=self.timeout)
                missed = 0
                answered = True
            except Exception as exc:
                if nc.is_closed:
                    return False, answered
                if not nc.is_connected:
                    continue
                missed += 1
                self.missed += 1
                log.warning("NATS watchdog: %s unanswered (%d in a row): %r",
                            self.ping_subject, missed, exc)
                if missed >= self.failures:
                    self.last_error = f"{self.ping_subject} unanswered {missed} times in a row"
                    return True, answered

    async def _on_closed(self) -> None:
        self._closed.set()

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            self.slow_consumers += 1
        self.last_error = repr(exc)
        log.warning("NATS: %r", exc)


async def _discard(nc: NATS) -> None:
    if not nc.is_closed:
        try:
            await asyncio.wait_for(nc.close(), 2.0)
        except Exception as exc:
            log.debug("NATS close: %r", exc)


async def find_twins(nc: NATS, service: str, prefix: str, wait: float = 0.5,
                     ) -> list[dict[str, Any]]:
    """Other live instances of the micro service ``service`` serving ``prefix`` (the micro
    framework's own discovery: every instance answers ``$SRV.INFO.<service>``)."""
    import json

    inbox = nc.new_inbox()
    found: list[dict[str, Any]] = []
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(f"$SRV.INFO.{service}", b"", reply=inbox)
        await nc.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except TimeoutError:
                break
            except nats.errors.TimeoutError:
                break
            try:
                info = json.loads(msg.data)
            except ValueError:
                continue
            if (info.get("metadata") or {}).get("prefix") == prefix:
                found.append(info)
    finally:
        await sub.unsubscribe()
    return found
