"""Shared by the role tests: a real nats-server loaded with `twsbus nats-config`'s output, the
simulator and the daemon logged in as `daemon`, and one connection per client role.

A request the server refuses is seen as nats-py's permissions-violation error (the server drops
the message: there is no reply to wait for); an allowed one gets an answer from the daemon, any
answer (a 400 for an empty body proves the daemon saw it).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from waiting import wait_until

from twsbus.deploy import Role
from twsbus.subjects import OpClass
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

#: Letters first, letters and digits after: what nats-server reads back unchanged.
PASSWORDS = {role: f"pw{role}{secrets.token_hex(12)}" for role in Role}
MAY = {  # the role table of CONTRACT.md, spelled out independently of subjects.yaml
    Role.MARKET: {OpClass.REFERENCE, OpClass.MARKET},
    Role.ACCOUNT: {OpClass.REFERENCE, OpClass.MARKET, OpClass.ACCOUNT},
    Role.TRADE: {OpClass.REFERENCE, OpClass.MARKET, OpClass.ACCOUNT, OpClass.TRADE},
    Role.ADMIN: set(OpClass),
}
AAPL = {"symbol": "AAPL", "secType": "STK", "exchange": "SMART", "currency": "USD"}


def role_url(server: NatsServer, role: Role, password: str | None = None) -> str:
    return server.url.replace("nats://", f"nats://{role}:{password or PASSWORDS[role]}@")


@dataclass
class Stack:
    nats: NatsServer
    sim: SimulatorThread
    daemon: DaemonProcess
    conf: str

    def url(self, role: Role) -> str:
        return role_url(self.nats, role)


@dataclass
class Login:
    """One client connection and the permission errors the server sent it."""

    nc: NATS
    errors: list[str] = field(default_factory=list)

    def denied(self, what: str, subject: str, since: int) -> bool:
        # nats-py lowercases the server's -ERR text
        needle = f'permissions violation for {what} to "{subject}"'.lower()
        return any(needle in e.lower() for e in self.errors[since:])

    async def outcome(self, subject: str, body: bytes = b"{}", timeout: float = 15.0) -> str:
        """"answered" or "denied" (the server refused to deliver the request)."""
        mark = len(self.errors)
        task = asyncio.ensure_future(self.nc.request(subject, body, timeout=timeout))
        try:
            await wait_until(lambda: task.done() or self.denied("Publish", subject, mark),
                             timeout + 1, f"{subject}: answered or denied")
        finally:
            if not task.done():
                task.cancel()
        if self.denied("Publish", subject, mark):
            return "denied"
        if task.exception() is not None:  # a timeout, no responders: neither
            return f"failed: {task.exception()!r}"
        return "answered"

    async def subscribe(self, subject: str, cb: Any = None) -> Subscription | None:
        """The subscription, or None when the server refused it."""
        mark = len(self.errors)
        sub = await self.nc.subscribe(subject, cb=cb)
        await self.nc.flush()
        # nats-server may write a refusal's -ERR just after the PONG of the PING that followed
        # the SUB in the same read; a second PING, sent only once that PONG is in, is read
        # later, so its PONG comes after any -ERR about the SUB.
        await self.nc.flush()
        if self.denied("Subscription", subject, mark):
            await sub.unsubscribe()
            return None
        return sub

    async def may_subscribe(self, subject: str) -> bool:
        sub = await self.subscribe(subject)
        if sub is not None:
            await sub.unsubscribe()
        return sub is not None


async def refused_replies(me: Login) -> int:
    """The daemon's count of requests refused for their reply subject (tws.req.status)."""
    msg = await me.nc.request("tws.req.status", b"{}", timeout=5)
    return int(json.loads(msg.data)["queries"].get("refused_replies", 0))
