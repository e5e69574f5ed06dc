"""Readiness as the CLI sees it: fail-fast NATS connections and the health verdict.

Command-line tools must never hang on a NATS that is down: ``connect`` tries each server once
(``allow_reconnect`` off, a connect timeout) and raises ``NatsUnreachable`` with one line saying
why, without nats-py's tracebacks on stderr. ``check`` is ``twsbus health``: the daemon's
``status`` asked through NATS, judged by ``verdict`` (ready means TWS ``ready`` and the daemon's
own NATS link up), all within one deadline, so a container health check gets an answer in
seconds in every state.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client as NATS

from twsbus.logs import redact


class NatsUnreachable(Exception):
    """No NATS server of the given URL(s) accepted a connection."""


async def connect(url: str, *, timeout: float = 3.0, keep_reconnecting: bool = False,
                  **options: Any) -> NATS:
    """A connection that fails within about ``timeout`` seconds per server instead of
    reconnecting forever. ``options`` are nats-py ``connect()`` arguments (credentials...).
    ``keep_reconnecting``: once connected, ride out later outages (live views) as nats-py does
    by default; only the first connect fails fast."""
    import nats

    servers = [s.strip() for s in url.split(",") if s.strip()]
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:  # instead of nats-py's traceback per attempt
        errors.append(exc)

    # nats-py reads max_reconnect_attempts=0 as "no limit", even for the first connect: 1 and a
    # short wait mean each server is tried twice, then NoServersError.
    options = {"connect_timeout": timeout, "allow_reconnect": False,
               "max_reconnect_attempts": 1, "reconnect_time_wait": 0.1,
               "error_cb": remember, **options}
    try:
        nc = await asyncio.wait_for(nats.connect(servers, **options),
                                    2 * timeout * max(1, len(servers)) + 1.0)
    except Exception as exc:
        cause = errors[-1] if errors else exc
        reason = str(cause) or type(cause).__name__
        if isinstance(cause, TimeoutError):
            reason = f"no answer within {timeout:g}s"
        raise NatsUnreachable(f"cannot reach NATS at {redact(url)}: {reason}") from None
    if keep_reconnecting:  # nats-py reads these at each disconnect
        nc.options.update(allow_reconnect=True, max_reconnect_attempts=-1,
                          reconnect_time_wait=2)
    return nc


def verdict(status: dict[str, Any]) -> tuple[bool, str]:
    """Whether a daemon status means ready, and one line saying so or why not."""
    tws = status.get("tws") or {}
    nats = status.get("nats") or {}
    state = tws.get("state", "unknown")
    if state != "ready":
        why = f": {tws['lastError']}" if tws.get("lastError") else ""
        return False, f"TWS {state} ({tws.get('host')}:{tws.get('port')}){why}"
    if not nats.get("connected", True):
        return False, "the daemon's NATS link is down"
    accounts = ",".join(tws.get("accounts") or [])
    return True, (f"ready: TWS {tws.get('host')}:{tws.get('port')} v{tws.get('serverVersion')}"
                  f" ({accounts}), epoch {status.get('epoch')}")


async def check(url: str, prefix: str, timeout: float = 5.0, **options: Any) -> tuple[bool, str]:
    """``twsbus health``: (ready, one line). Never takes much longer than ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    subject = f"{prefix}.req.status"
    try:
        nc = await connect(url, timeout=min(timeout / 2, 3.0), **options)
    except NatsUnreachable as exc:
        return False, str(exc)
    try:
        msg = await nc.request(subject, b"{}", timeout=max(0.1, deadline - loop.time()))
    except Exception as exc:
        return False, f"no daemon answered on {subject} ({type(exc).__name__})"
    finally:
        await nc.close()
    try:
        status = json.loads(msg.data)
    except ValueError:
        return False, f"{subject}: the answer is not JSON"
    if not isinstance(status, dict) or "error" in status:
        return False, f"{subject}: {status}"
    return verdict(status)
