"""What the NATS side needs of TWS: the ``Upstream`` protocol (``TwsSession`` implements it).

The lease registry, the query executor and the order desk depend on this and on a clock, not on
``TwsSession``: ``tests/service/`` drives them in-process with a scripted upstream (it records
the calls and lets the test emit TWS's answers through the router) and a fake clock, so linger,
expiry, budgets, coalescing, timeouts and reconnects are asserted without sockets or sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twsbus.tws.pacing import Ticket

#: Seconds, monotonic: ``time.monotonic`` in the daemon, a fake in tests.
Clock = Callable[[], float]


class StateLike(Protocol):
    @property
    def value(self) -> str: ...


class Upstream(Protocol):
    """The TWS session as the service sees it."""

    @property
    def ready(self) -> bool:
        """Requests are accepted (connected, handshake done, nextValidId received)."""
        ...

    @property
    def state(self) -> StateLike: ...

    @property
    def accounts(self) -> list[str]: ...

    @property
    def server_version(self) -> int | None: ...

    def next_id(self) -> int:
        """A request or order id, never one handed out before."""
        ...

    def reserve_ids(self, highest_used: int) -> None:
        """Never hand out an id up to ``highest_used``."""
        ...

    def call(self, method: str, key: int | None = None,
             args: dict[str, Any] | None = None) -> Ticket:
        """Send ``EClient.<method>`` (paced); NotConnected when not ready."""
        ...

    def withdraw(self, ticket: Ticket) -> bool:
        """Take a request back if none of it was written yet."""
        ...
