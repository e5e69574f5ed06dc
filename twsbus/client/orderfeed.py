"""The order-event feed: the daemon's replay of the order stream, then its live copies, merged.

``OrderFeed`` (``bus.orders(...)``, ``OrderHandle.events()``) needs no JetStream access. It
subscribes to the live subject first (``tws.orders.<account>.<strategy>.<orderId>``, wildcards
for what it does not filter on), where the server republishes every event the stream keeps, in
stream order, with its stream sequence (``Nats-Sequence``) and the previous sequence on the same
subject (``Nats-Last-Sequence``); then it asks the daemon for what came before
(``tws.req.orders`` with ``"events": true``, page by page from ``since``).

One number keeps the merge exact: ``known``, the stream sequence up to which every matching
event has been yielded or is queued to be. A replayed or live event at or below it is a repeat
and dropped; a live event whose previous one on its subject is above it means one was missed (a
dropped message, an outage), and the feed asks the daemon again from ``known + 1`` before going
on. A reconnect of the NATS connection (checked at least every ``HEARTBEAT`` seconds) does the
same, since what was republished meanwhile never reached the subscription. While the daemon is
away (a restart) the feed waits and asks again; the live copies come from the server either way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import nats.errors

from twsbus.client.feed import Feed
from twsbus.errors import NotConnected, Timeout
from twsbus.orders.events import OrderEvent

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

log = logging.getLogger("twsbus.client")

#: How often an idle feed checks that its connection has not reconnected meanwhile.
HEARTBEAT = 2.0
#: How long a replay request may take, and the longest wait between two while none is answered.
_ASK_TIMEOUT = 5.0
_RETRY_MAX = 2.0

#: Where a feed starts: a stream sequence, a time, ``None`` (all the stream keeps) or ``"new"``.
Since = int | datetime.datetime | Literal["new"] | None
Ask = Callable[[str, bytes, float], Awaitable[Any]]

_decode_event = msgspec.json.Decoder(OrderEvent).decode


class OrderUpdate(msgspec.Struct, frozen=True):
    """One item of ``bus.orders(...)``: the event and where it sits in the order stream. Keep
    ``stream_seq`` and resume with ``bus.orders(..., since=stream_seq + 1)``."""

    stream_seq: int
    subject: str
    event: OrderEvent


class _Stored(msgspec.Struct, frozen=True):
    seq: int
    subject: str
    event: Any


class _Page(msgspec.Struct, frozen=True):
    events: list[_Stored]
    last_seq: int
    more: bool


def since_value(since: Since) -> int | str | None:
    """``since`` as the request carries it; ValueError for anything else."""
    if since is None:
        return None
    if since == "new":
        return "new"
    if isinstance(since, datetime.datetime):
        return since.astimezone(datetime.UTC).isoformat()
    if isinstance(since, int) and not isinstance(since, bool) and since >= 0:
        return max(since, 1)
    raise ValueError(f"since: a stream sequence (int >= 0), a datetime, 'new' or None, "
                     f"not {since!r}")


class OrderFeed(Feed[OrderUpdate]):
    """Order events replayed from ``since``, then followed live.

    ``async for update in feed`` yields ``OrderUpdate``s (the stream sequence, the subject and
    the ``OrderEvent``); ``async with feed:`` keeps it open across several loops. ``last_seq``
    is the stream sequence of the last event read (yielded, or left out by ``match``)."""

    def __init__(self, nc: NATS, ask: Ask, request_subject: str, subject: str, since: Since,
                 match: Callable[[OrderEvent], bool] | None = None,
                 on_close: Callable[[OrderFeed], None] | None = None) -> None:
        self._nc = nc
        self._ask = ask
        self._request_subject = request_subject
        self.subject = subject
        self.since = since
        self._first: int | str | None = since_value(since)
        self._filter = _filter(subject)
        self._match = match
        self._on_close = on_close
        self._sub: Subscription | None = None
        self._opening: asyncio.Future[None] | None = None
        self._ended: asyncio.Future[None] | None = None  # done when the feed is closed
        self._getting: asyncio.Future[Msg] | None = None
        self._queue: collections.deque[OrderUpdate | None] = collections.deque()
        self._behind = True  # the daemon has more to tell from known + 1
        self._reconnects = 0
        self.known = 0
        self.closed = False
        self.last_seq = 0
        self.delivered = 0
        self.undecodable = 0
        self.replays = 0  # replay requests answered
        self.gaps = 0  # live gaps (or reconnects) that sent the feed back to the daemon

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self._sub is not None else "new"
        return (f"<OrderFeed {self.subject} {state} since={self.since!r} "
                f"last_seq={self.last_seq} delivered={self.delivered}>")

    async def open(self) -> None:
        """Subscribe to the live subject, then ask the daemon where ``since`` starts
        (idempotent); the rest of the replay follows in ``next``."""
        if self.closed:
            raise StopAsyncIteration
        if self._opening is not None:
            await asyncio.shield(self._opening)
            return
        loop = asyncio.get_running_loop()
        self._opening, self._ended = loop.create_future(), loop.create_future()
        try:
            self._sub = await self._nc.subscribe(self.subject)
            await self._nc.flush()  # the server has it: nothing stored from now on is missed
            self._reconnects = self._nc.stats["reconnects"]
            if isinstance(self._first, int):
                self.known = self._first - 1
            else:  # a time, "new" or the start: where it stands is settled now, not later
                self._absorb(await self._page())
            self._opening.set_result(None)
        except BaseException as exc:
            self._opening.set_exception(exc)
            self._opening.exception()  # retrieved: other waiters see it, nobody else must
            await self.aclose()
            raise

    async def next(self) -> OrderUpdate:
        """The next update; StopAsyncIteration once closed."""
        await self.open()
        while True:
            if self.closed:
                raise StopAsyncIteration
            if self._queue:
                update = self._queue.popleft()
                if update is None:
                    continue
                self.last_seq = update.stream_seq
                if self._match is not None and not self._match(update.event):
                    continue
                self.delivered += 1
                return update
            if self._nc.stats["reconnects"] != self._reconnects:
                self._reconnects = self._nc.stats["reconnects"]
                self._fell_behind("NATS reconnected")
            if self._behind:
                self._absorb(await self._page())
                continue
            msg = await self._receive()
            if msg is not None:
                self._live(msg)

    # ---- the two sources ------------------------------------------------------------------------

    async def _page(self) -> _Page:
        """The daemon's next page from ``known + 1`` (the first from ``since``), asked until
        answered: a daemon restarting, or NATS away, is waited for."""
        first = self._first
        since = first if first is not None and not isinstance(first, int) else self.known + 1
        body = msgspec.json.encode({**self._filter, "events": True, "since": since})
        delay = 0.25
        while True:
            try:
                raw = await self._ask(self._request_subject, body, _ASK_TIMEOUT)
                self.replays += 1
                return msgspec.convert(raw, _Page)
            except (NotConnected, Timeout) as exc:
                if self._nc.is_closed:
                    await self.aclose()
                    raise NotConnected("the NATS connection is closed") from None
                log.warning("order feed %s: replay: %s; asking again in %gs", self.subject, exc,
                            delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    def _absorb(self, page: _Page) -> None:
        if self._first == "new":
            self.known = page.last_seq
        for item in page.events:
            if item.seq > self.known:
                self._queue.append(self._update(item.seq, item.subject, item.event))
                self.known = item.seq
        self._first = None
        self._behind = page.more
        if not page.more:
            self.known = max(self.known, page.last_seq)

    def _live(self, msg: Msg) -> None:
        headers = msg.headers or {}
        try:
            seq = int(headers["Nats-Sequence"])
            previous = int(headers.get("Nats-Last-Sequence") or 0)
        except (KeyError, ValueError):
            self.undecodable += 1
            log.warning("%s: a message without its stream sequence, left out", msg.subject)
            return
        if seq <= self.known or self._behind:
            return  # a repeat; or the replay under way gets it
        if previous > self.known:
            self._fell_behind(f"missed stream seq {previous} on {msg.subject}")
            return
        self._queue.append(self._update(seq, msg.subject, msg.data))
        self.known = seq

    def _fell_behind(self, why: str) -> None:
        self.gaps += 1
        self._behind = True
        log.info("order feed %s: %s; asking the daemon from %d", self.subject, why,
                 self.known + 1)

    def _update(self, seq: int, subject: str, data: Any) -> OrderUpdate | None:
        try:
            event = (_decode_event(data) if isinstance(data, bytes)
                     else msgspec.convert(data, OrderEvent))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.undecodable += 1
            log.warning("%s seq %d is not an order event: %s", subject, seq, exc)
            return None
        return OrderUpdate(seq, subject, event)

    async def _receive(self) -> Msg | None:
        """The next live message, None after ``HEARTBEAT`` idle seconds, StopAsyncIteration as
        soon as the feed is closed. The pending read outlives a cancelled ``next()``, so a
        message is never taken and lost."""
        if self.closed or self._sub is None or self._ended is None:
            raise StopAsyncIteration
        if self._getting is None:
            self._getting = asyncio.ensure_future(self._sub.next_msg(timeout=None))
        getting = self._getting
        waits: set[asyncio.Future[Any]] = {getting, self._ended}
        await asyncio.wait(waits, timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED)
        if self.closed:
            raise StopAsyncIteration  # closed meanwhile (aclose cancels the read)
        if not getting.done():
            return None
        self._getting = None
        try:
            return getting.result()
        except (nats.errors.ConnectionClosedError, asyncio.CancelledError):
            await self.aclose()
            raise NotConnected("the NATS connection is closed") from None

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)
        if self._on_close is not None:
            self._on_close(self)
        if self._getting is not None:
            self._getting.cancel()
            with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
                await self._getting
            self._getting = None
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as exc:
                log.debug("order feed %s: close: %r", self.subject, exc)


def _filter(subject: str) -> dict[str, str]:
    """The request's filter from the live subject's last three tokens (``*``: any)."""
    tokens = subject.split(".")[-3:]
    return {name: value for name, value in zip(("account", "strategy", "orderId"), tokens,
                                               strict=True) if value != "*"}
