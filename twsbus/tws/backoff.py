"""When to try TWS again: the reconnect policy, pure (no clock, no socket), decided by how far
the last attempt got.

TWS runs on the same host or LAN, so a connect attempt costs nothing and a restarting TWS must be
picked up as soon as it listens again. A failure is one of three kinds. ``REFUSED``: nothing
answered the API (TCP refused or unreachable, or a peer that accepted and hung up before a byte of
handshake, as a port forwarder in front of a stopped Gateway does); retried every
``reconnect_refused`` seconds at most, jittered, however long it lasts. ``LOST``: a READY link
died (closed, probe unanswered); the first retry comes as fast, since a restarting TWS refuses
and a live one answers. ``HANDSHAKE``: a TWS answered the connect but the API session did not come
up (handshake timeout, closed after answering, error 326 client id in use, no nextValidId);
retrying fast would only repeat it, so these back off exponentially from ``backoff_initial`` to
``backoff_max``, jittered. Refusals neither grow nor reset that backoff; only READY resets it.
``max_attempts`` counts failures of every kind since the last READY.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

import msgspec


class Failure(enum.Enum):
    REFUSED = "refused"
    LOST = "lost"
    HANDSHAKE = "handshake"


class Stage(enum.IntEnum):
    """How far a connection attempt got."""

    CONNECT = 0  # opening the TCP connection
    HANDSHAKE = 1  # connected; waiting for the server's version answer
    START = 2  # answered; waiting for nextValidId
    READY = 3


def classify(stage: Stage, peer_spoke: bool, timed_out: bool) -> Failure:
    """The kind of a failed attempt. A peer that accepted and closed without a byte is nobody
    (a forwarder, a TWS going down); a peer that holds the connection silently is somebody."""
    if stage is Stage.READY:
        return Failure.LOST
    if stage is Stage.CONNECT:
        return Failure.REFUSED
    if stage is Stage.HANDSHAKE and not peer_spoke and not timed_out:
        return Failure.REFUSED
    return Failure.HANDSHAKE


class Retry(msgspec.Struct, frozen=True):
    """One scheduled reconnect, as the session records it (status and tests read these)."""

    failure: Failure
    delay: float
    attempt: int
    reason: str


class Backoff:
    """Delays between connect attempts. ``rand`` returns a float in [0, 1) (injectable so tests
    are deterministic). Refused delays fall in [refused / 2, refused]: never above the cap."""

    def __init__(self, refused: float = 0.5, initial: float = 1.0, maximum: float = 30.0,
                 max_attempts: int = 0, rand: Callable[[], float] = random.random) -> None:
        self.refused = refused
        self.initial = initial
        self.maximum = maximum
        self.max_attempts = max_attempts
        self._rand = rand
        self._next = initial  # the next HANDSHAKE delay, before jitter
        self.attempts = 0  # failures since the last READY

    def __repr__(self) -> str:
        return (f"<Backoff refused<={self.refused}s handshake {self.initial}..{self.maximum}s "
                f"next={self._next}s attempts={self.attempts}>")

    def ready(self) -> None:
        """A session came up: the next trouble starts from scratch."""
        self._next = self.initial
        self.attempts = 0

    def failed(self, failure: Failure) -> float | None:
        """Seconds to wait before the next attempt, or None when ``max_attempts`` is used up."""
        self.attempts += 1
        if self.max_attempts and self.attempts >= self.max_attempts:
            return None
        if failure is not Failure.HANDSHAKE:
            return self.refused * (0.5 + 0.5 * self._rand())
        delay = min(self._next * (0.8 + 0.4 * self._rand()), self.maximum)
        self._next = min(self._next * 2, self.maximum)
        return delay
