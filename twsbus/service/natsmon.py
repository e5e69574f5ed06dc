"""What nats-server itself knows about our subscribers: slow consumers, from its monitoring port.

When a subscriber stops reading (a stalled strategy, a frozen dashboard), nats-server cuts it as a
*slow consumer*: that protects everyone else, but the daemon, which only publishes, never hears
of it. The server counts them in its monitoring endpoint (``/varz``: ``slow_consumers``, and per
kind under ``slow_consumer_stats``). With ``nats_monitor_url`` set (``http://127.0.0.1:8222``,
nats-server's ``-m 8222``), ``NatsMonitor`` reads it every ``interval`` seconds so ``tws.status``
shows the count; without it the status says ``null`` (unknown), never 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("twsbus.nats")


class NatsMonitor:
    def __init__(self, url: str, interval: float = 5.0, timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 8222
        self.interval = interval
        self.timeout = timeout
        self.slow_consumers: int | None = None
        self.by_kind: dict[str, int] = {}
        self.error: str | None = None

    def __repr__(self) -> str:
        return f"<NatsMonitor {self.host}:{self.port} slow_consumers={self.slow_consumers}>"

    def stats(self) -> dict[str, Any]:
        return {"slow_consumers": self.slow_consumers, "slow_consumer_kinds": self.by_kind,
                "monitor_error": self.error}

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.interval)

    async def poll(self) -> None:
        try:
            varz = await asyncio.wait_for(self._get("/varz"), self.timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            self.error = f"{self.host}:{self.port}/varz: {exc!r}"
            return
        self.error = None
        count = int(varz.get("slow_consumers", 0))
        if self.slow_consumers is not None and count > self.slow_consumers:
            log.warning("nats-server cut %d slow consumer(s) (%d in all)",
                        count - self.slow_consumers, count)
        self.slow_consumers = count
        self.by_kind = {k: int(v) for k, v in (varz.get("slow_consumer_stats") or {}).items()}

    async def _get(self, path: str) -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {self.host}\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()  # HTTP/1.0: the server closes after the body
        finally:
            writer.close()
        _, _, body = raw.partition(b"\r\n\r\n")
        data: dict[str, Any] = json.loads(body)
        return data
