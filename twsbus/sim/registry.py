"""The simulator's request table: which handler answers which client message id.

Handler modules (``h_*.py``) register with ``@handles(FromClient.X)``; the server looks the id
of each incoming frame up here. A handler gets the client's session and a field cursor positioned
just after the message id. It may be a plain function or a coroutine function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from twsbus.sim.msgids import FromClient

if TYPE_CHECKING:
    from twsbus.sim.session import ClientSession
    from twsbus.sim.wire import Fields

Handler = Callable[["ClientSession", "Fields"], Awaitable[None] | None]

HANDLERS: dict[int, Handler] = {}


def handles(*msg_ids: FromClient) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for msg_id in msg_ids:
            if msg_id in HANDLERS:
                raise RuntimeError(f"two handlers for {msg_id!r}")
            HANDLERS[int(msg_id)] = fn
        return fn

    return register


def load_all() -> dict[int, Handler]:
    """Import every handler module once so their registrations run."""
    from twsbus.sim import (  # noqa: F401
        h_account,
        h_history,
        h_market,
        h_news,
        h_orders,
        h_reference,
        h_scanner,
        h_session,
    )

    return HANDLERS

