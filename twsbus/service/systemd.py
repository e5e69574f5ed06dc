"""systemd's notify protocol (``Type=notify``), without a dependency: datagrams to $NOTIFY_SOCKET.

``READY=1`` is sent once the daemon serves on NATS and TWS is ready (so ``systemctl start``
returns when twsbus is usable, and units ordered after it start then); ``WATCHDOG=1`` every half
``WatchdogSec`` ($WATCHDOG_USEC) while the event loop runs, so a hung daemon is restarted;
``STOPPING=1`` at shutdown; ``STATUS=`` lines show in ``systemctl status``. Outside systemd
($NOTIFY_SOCKET unset) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger("twsbus.systemd")


def notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send one notify datagram; False when not under systemd (or the socket is gone)."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        # Non-blocking: a reader that stops reading (its queue holds a few datagrams) must cost
        # a lost ping, never the event loop (a blocking send stalled the daemon for good).
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC |
                           socket.SOCK_NONBLOCK) as sock:
            sock.connect(address)
            sock.send(message.encode())
        return True
    except OSError as exc:  # BlockingIOError included
        log.debug("sd_notify %s: %r", address, exc)
        return False


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half of systemd's WatchdogSec, in seconds, when the watchdog is on for this process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


async def keep_alive(ready: Callable[[], bool], status: Callable[[], str]) -> None:
    """Send READY=1 the first time ``ready()`` holds, then WATCHDOG=1 pings (and STATUS=
    on change) for as long as the loop runs. Cancelled at shutdown."""
    interval = watchdog_interval()
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    announced = False
    last = ""
    while True:
        text = status()
        if ready() and not announced:
            notify(f"READY=1\nSTATUS={text}")
            announced = True
        elif text != last:
            notify(f"STATUS={text}")
        last = text
        if interval is not None:
            notify("WATCHDOG=1")
        await asyncio.sleep(min(interval, 1.0) if interval is not None else 1.0)
