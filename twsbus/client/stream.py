"""One subscription as the caller sees it: subscribe-first ordering, the bounded inbox, seq checks.

``Subscription`` listens on the NATS data subject *before* it asks ``tws.sub.<kind>``, so nothing
published after the daemon took the image can be missed; it yields that image first and then only
messages whose seq is past the image's, in order, with ``gap`` set where seqs jump. The NATS
callback never waits for the consumer: it puts into an ``Inbox`` whose bound and policy are stated
there. Lease renewal and re-subscription are the client's ``LeaseKeeper``'s job; this module only
reports to it (a ``closed`` status, a new epoch) and applies what it gets back (a new image).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from twsbus.client.events import Image, StreamMessage, from_wire, items_from_wire
from twsbus.client.feed import Feed
from twsbus.errors import TwsBusError
from twsbus.messages import Contract

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsSubscription

    from twsbus.client.keeper import LeaseKeeper
    from twsbus.client.link import Link

log = logging.getLogger("twsbus.client")


class StreamClosed(TwsBusError):
    """The daemon closed the stream (TWS ended it) while still running: the iterator ends with
    this. Client-side only: never sent on the wire. ``reason`` is the daemon's."""

    def __init__(self, message: str, *, subject: str = "", reason: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject
        self.reason = reason


class SubState(enum.Enum):
    NEW = "new"
    OPENING = "opening"
    ACTIVE = "active"  # holds a lease
    RECOVERING = "recovering"  # lost its lease (restart, expiry, closed): re-subscribing
    CLOSED = "closed"


class Granted(msgspec.Struct):
    """The daemon's answer to ``tws.sub.<kind>`` (or, with no lease, to ``tws.req.snapshot``)."""

    subject: str
    seq: int
    epoch: str
    image: dict[str, Any]
    state: str = "ok"
    lease: str = ""
    ttl: float = 0.0
    conId: int | None = None
    reason: str | None = None


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


Item = dict[str, Any] | Image | _End


class Inbox:
    """The buffer between the NATS callback and the iterator.

    Bound: ``maxsize`` data messages. Policy: drop-oldest, counted in ``dropped``; the iterator
    then sees a seq jump and marks the next message with ``gap``. Images and the end marker are
    control items and never dropped. A new image supersedes buffered messages it already holds
    and any from an earlier daemon (another epoch): the caller sees the image instead.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("the inbox needs room for at least one message")
        self.maxsize = maxsize
        self._items: collections.deque[Item] = collections.deque()
        self._data = 0
        self._ready = asyncio.Event()
        self.peak = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, raw: dict[str, Any]) -> None:
        if self._data >= self.maxsize:
            for i, item in enumerate(self._items):
                if isinstance(item, dict):
                    del self._items[i]
                    self._data -= 1
                    self.dropped += 1
                    break
        self._items.append(raw)
        self._data += 1
        self.peak = max(self.peak, self._data)
        self._ready.set()

    def put_image(self, image: Image) -> None:
        if any(isinstance(item, _End) for item in self._items):
            return
        keep = [item for item in self._items if isinstance(item, dict) and
                item.get("epoch") == image.epoch and int(item.get("seq", 0)) > image.seq]
        self._items = collections.deque([image, *keep])
        self._data = len(keep)
        self._ready.set()

    def clear(self) -> None:
        self._items.clear()
        self._data = 0

    def put_end(self, error: BaseException | None) -> None:
        self._items.append(_End(error))
        self._ready.set()

    async def get(self) -> Item:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if isinstance(item, dict):
            self._data -= 1
        return item


class Subscription(Feed[StreamMessage]):
    """A lease on one data subject, iterated as ``Image`` then updates (see the module doc).

    ``async for msg in sub`` subscribes on first use and, when the loop is left, releases the
    lease (unless the subscription is held open by ``async with sub``, which releases on exit).
    """

    def __init__(self, link: Link, keeper: LeaseKeeper, kind: str, contract: Contract | None,
                 params: dict[str, Any], *, ttl: float, maxsize: int) -> None:
        self.kind = kind
        self.contract = contract
        self.params = params
        self.ttl = ttl
        self.state = SubState.NEW
        self.health = "stale"  # the stream's own state: ok | stale | closed
        self.reason: str | None = None
        self.lease: str | None = None
        self.subject: str | None = None
        self.epoch: str | None = None
        self.conId: int | None = None
        self.error: BaseException | None = None
        self.received = 0
        self.gaps = 0
        self.missed = 0
        self.resubscribes = 0
        self.check_closed = False  # the keeper asks the daemon whether a `closed` is final
        self._link = link
        self._keeper = keeper
        self._inbox = Inbox(maxsize)
        #: The kind's messages carry several items under this field (tick-by-tick's ``ticks``).
        self._collect = link.surface.subscriptions[kind].collect
        #: Items of the last message not handed over yet.
        self._pending: collections.deque[StreamMessage] = collections.deque()
        self._nats_sub: NatsSubscription | None = None
        self._listening: str | None = None
        self._held = False
        self._seq = 0
        self._seq_epoch: str | None = None
        self._granted_seq = 0
        self._opening: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        where = self.subject or (f"conId={self.contract.conId}" if self.contract and
                                 self.contract.conId else "")
        return (f"<Subscription {self.kind} {where} {self.state.name.title()}/"
                f"{self.health.title()} seq={self._seq} gaps={self.gaps} "
                f"dropped={self.dropped}>")

    @property
    def seq(self) -> int:
        """The seq of the last item handed to the caller."""
        return self._seq

    @property
    def dropped(self) -> int:
        return self._inbox.dropped

    def stats(self) -> dict[str, Any]:
        return {"state": self.state.value, "health": self.health, "seq": self._seq,
                "received": self.received, "gaps": self.gaps, "missed": self.missed,
                "dropped": self._inbox.dropped, "queued": len(self._inbox),
                "peak": self._inbox.peak, "bound": self._inbox.maxsize,
                "resubscribes": self.resubscribes}

    # ---- the caller's side ----------------------------------------------------------------

    async def next(self) -> StreamMessage:
        """The next item; StopAsyncIteration once closed, or the error that ended the stream."""
        await self.open()
        if self._pending:
            return self._pending.popleft()
        while True:
            item = await self._inbox.get()
            if isinstance(item, _End):
                self._inbox.put_end(item.error)  # stays ended for later calls
                if item.error is not None:
                    raise item.error
                raise StopAsyncIteration
            if isinstance(item, Image):
                self._seq, self._seq_epoch = item.seq, item.epoch
                return item
            seq = int(item.get("seq", 0))
            if item.get("epoch") != self._seq_epoch or seq <= self._seq:
                continue  # already in the image, or from a daemon we no longer listen to
            gap = seq - self._seq - 1
            if gap:
                self.gaps += 1
                self.missed += gap
            self._seq = seq
            if not self._collect:
                return from_wire(item, gap)
            self._pending.extend(items_from_wire(item, self._collect, gap))
            if self._pending:
                return self._pending.popleft()

    async def open(self) -> None:
        """Listen on the data subject, then take a lease; the image is the first item."""
        if self.state is not SubState.NEW:
            if self._opening is not None:
                await asyncio.shield(self._opening)
            return
        self.state = SubState.OPENING
        self._opening = asyncio.get_running_loop().create_future()
        try:
            await self._keeper.start()
            self.contract, self.params, predicted = await self._link.data_subject(
                self.kind, self.contract, self.params)
            if predicted:
                await self._listen(predicted)
            granted = await self._link.grant(self.kind, self._body())
            if self._link.closed:
                self._end(None)
            if self.state is SubState.CLOSED:  # closed while we waited
                await self._link.release([granted.lease])
            else:
                await self._apply(granted, resubscribed=False)
                self._keeper.track(self)
            self._opening.set_result(None)
        except BaseException as exc:
            self.state = SubState.CLOSED
            await self._unlisten()
            self._opening.set_exception(exc)
            self._opening.exception()  # retrieved: the caller gets it from here
            raise

    async def aclose(self) -> None:
        """Release the lease (tws.unsub) and stop listening; iteration ends."""
        if self.state is SubState.CLOSED and self._listening is None:
            return
        lease, self.lease = self.lease, None
        self._end(None, discard=True)
        if lease:
            await self._link.release([lease])
        await self._unlisten()

    # ---- the keeper's side ----------------------------------------------------------------

    def _body(self) -> bytes:
        body: dict[str, Any] = {k: v for k, v in self.params.items() if v is not None}
        if self.contract is not None:
            body["contract"] = self.contract
        body["ttl"] = self.ttl
        return msgspec.json.encode(body)

    async def _resubscribe(self) -> None:
        granted = await self._link.grant(self.kind, self._body())
        if self.state is SubState.CLOSED:
            await self._link.release([granted.lease])
            return
        self.resubscribes += 1
        await self._apply(granted, resubscribed=True)

    async def _apply(self, granted: Granted, resubscribed: bool) -> None:
        if granted.subject != self._listening:
            # The daemon chose a subject we did not predict: listen there now, and take the
            # image and seq from a snapshot taken after we listen, which keeps the ordering.
            await self._listen(granted.subject)
            snap = await self._link.snapshot(granted.subject)
            granted = msgspec.structs.replace(granted, seq=snap.seq, epoch=snap.epoch,
                                              image=snap.image, state=snap.state)
        self.lease, self.subject, self.epoch = granted.lease, granted.subject, granted.epoch
        self.conId, self._granted_seq = granted.conId, granted.seq
        self.health, self.reason = granted.state, granted.reason
        self.state = SubState.ACTIVE
        self.check_closed = False
        self._inbox.put_image(Image(
            seq=granted.seq, ts=time.time_ns(), epoch=granted.epoch, data=granted.image,
            kind=self.kind, subject=granted.subject, state=granted.state, reason=granted.reason,
            conId=granted.conId, resubscribed=resubscribed))

    def _fail(self, error: BaseException) -> None:
        """The keeper gave up on this subscription: the iterator raises ``error``."""
        log.warning("%r ended: %s", self, error)
        self.lease = None
        self._end(error)

    def _end(self, error: BaseException | None, *, discard: bool = False) -> None:
        """Closed: the iterator ends after what is queued (nothing, when the caller closed)."""
        if discard:
            self._inbox.clear()
        if self.state is not SubState.CLOSED:
            self.state = SubState.CLOSED
            self.error = error
            self._inbox.put_end(error)
            self._keeper.untrack(self)

    async def _listen(self, subject: str) -> None:
        await self._unlisten()
        self._nats_sub = await self._link.listen(subject, self._on_nats)
        self._listening = subject

    async def _unlisten(self) -> None:
        sub, self._nats_sub, self._listening = self._nats_sub, None, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # the connection may be closed already
                log.debug("unsubscribe: %r", exc)

    async def _on_nats(self, msg: Msg) -> None:
        try:
            raw = msgspec.json.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("%s: a message that is not JSON: %r", msg.subject, msg.data[:100])
            return
        if isinstance(raw, dict):
            self._on_message(raw)

    def _on_message(self, raw: dict[str, Any]) -> None:
        """Runs in the NATS callback: record, notice restarts and closes, never wait."""
        if self.state is SubState.CLOSED:
            return
        self.received += 1
        if self.state is SubState.ACTIVE and raw.get("epoch") not in (None, self.epoch):
            self._keeper.recover(self)  # another daemon publishes here: it restarted
        elif raw.get("type") == "status" and raw.get("epoch") == self.epoch and \
                int(raw.get("seq", 0)) > self._granted_seq:  # not one the image already has
            self.health, self.reason = str(raw.get("state")), raw.get("reason")
            if self.health == "closed" and self.state is SubState.ACTIVE:
                self._keeper.recover(self, check_closed=True)
        self._inbox.put(raw)
