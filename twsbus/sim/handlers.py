"""The simulator's request table: which handler answers which client message id.

Each handler module (``h_*.py``) lists its handlers in ``HANDLERS``; ``table()`` joins them into
the table a ``Simulator`` is given (the full one by default). A handler gets the client's
session and the typed request (``requests``), and may be a plain function or a coroutine
function; ``guard`` wraps each one to read frames and answer failures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twsbus.sim import (
    h_account,
    h_history,
    h_market,
    h_news,
    h_orders,
    h_reference,
    h_scanner,
    h_session,
)
from twsbus.sim.session import ClientSession

Handler = Callable[[ClientSession, Any], Awaitable[None] | None]


def table() -> dict[int, Handler]:
    """Every handler, by message id."""
    out: dict[int, Handler] = {}
    for module in (h_session, h_market, h_history, h_reference, h_news, h_scanner, h_account,
                   h_orders):
        for msg_id, handler in module.HANDLERS.items():
            if msg_id in out:
                raise RuntimeError(f"two handlers for {msg_id!r}")
            out[int(msg_id)] = handler
    return out
