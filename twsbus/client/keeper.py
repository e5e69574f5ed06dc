"""The lease keeper: one task per Client that renews every lease and re-subscribes lost ones.

Every ``renew_every`` seconds (default: a third of the shortest lease ttl) the keeper renews all
of the client's leases in one ``tws.lease.renew`` request. A NATS failure (no daemon, timeout,
reconnecting) is retried after a short backoff, well inside the ttl. A lease the daemon calls
``unknown`` (expired, or a new daemon), a data message or ``tws.status`` from a new ``epoch``, and
a ``closed`` status from a daemon that is going away all put the subscription in RECOVERING: the
keeper subscribes again (new lease, new image marked ``resubscribed``) until a daemon accepts,
backing off while none answers. A ``closed`` status from a daemon that still runs with the same
epoch is final: the subscription ends with ``StreamClosed``. A refusal (404, 409, 429...) ends it
with that error; only ``NotConnected`` and ``Timeout`` are worth retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import msgspec

from twsbus.client.stream import StreamClosed, Subscription, SubState
from twsbus.errors import NotConnected, Timeout, TwsBusError

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsSubscription

    from twsbus.client.link import Link

log = logging.getLogger("twsbus.client")

_RETRYABLE = (NotConnected, Timeout)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.2, 2.0


class LeaseKeeper:
    def __init__(self, link: Link, default_ttl: float, renew_every: float | None,
                 recover_timeout: float | None) -> None:
        self._link = link
        self.default_ttl = default_ttl
        self.renew_every = renew_every
        self.recover_timeout = recover_timeout
        self.subs: set[Subscription] = set()
        self.recovering: dict[Subscription, float] = {}  # -> when recovery started
        self._wake = asyncio.Event()
        self._next_renew = 0.0
        self._retry_at = 0.0
        self._backoff = _BACKOFF_FIRST
        self._status_epoch: str | None = None
        self.renewals = 0
        self.renew_failures = 0
        self._task: asyncio.Task[None] | None = None
        self._status_sub: NatsSubscription | None = None

    def __repr__(self) -> str:
        return (f"<LeaseKeeper leases={len(self.subs)} recovering={len(self.recovering)} "
                f"renewals={self.renewals} failures={self.renew_failures}>")

    @property
    def period(self) -> float:
        if self.renew_every is not None:
            return self.renew_every
        ttls = [s.ttl for s in self.subs] or [self.default_ttl]
        return max(min(ttls) / 3, 0.05)

    # ---- what subscriptions and the client report ---------------------------------------------

    def track(self, sub: Subscription) -> None:
        first = not self.subs
        self.subs.add(sub)
        due = time.monotonic() + self.period
        if first or due < self._next_renew:  # a shorter ttl moves the next renewal closer
            self._next_renew = due
            self._wake.set()

    def untrack(self, sub: Subscription) -> None:
        self.subs.discard(sub)
        self.recovering.pop(sub, None)

    def recover(self, sub: Subscription, check_closed: bool = False) -> None:
        if sub.state is not SubState.ACTIVE:
            return
        sub.state = SubState.RECOVERING
        sub.check_closed = check_closed
        self.recovering.setdefault(sub, time.monotonic())
        self._retry_at = 0.0
        self._wake.set()

    def daemon_epoch(self, epoch: str) -> None:
        """``tws.status`` said which daemon runs; leases from another epoch are gone."""
        if epoch == self._status_epoch:
            return
        self._status_epoch = epoch
        for sub in list(self.subs):
            if sub.epoch is not None and sub.epoch != epoch:
                self.recover(sub)

    # ---- the task ----------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        """Run the keeper and follow the daemon's ``tws.status`` (idempotent)."""
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self.run(),
                                                            name="twsbus-lease-keeper")
        self._status_sub = await self._link.listen(self._link.surface.subject("status"),
                                                   self._on_status)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._status_sub is not None:
            with contextlib.suppress(Exception):
                await self._status_sub.unsubscribe()

    async def _on_status(self, msg: Msg) -> None:
        try:
            epoch = msgspec.json.decode(msg.data).get("epoch")
        except (msgspec.DecodeError, AttributeError):
            return
        if isinstance(epoch, str):
            self.daemon_epoch(epoch)

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            due = self._next_renew if self.subs else now + 3600
            if self.recovering:
                due = min(due, self._retry_at)
            try:
                async with asyncio.timeout(max(due - now, 0)):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            now = time.monotonic()
            if self._link.nats_closed:  # nothing can be renewed or recovered any more
                for sub in list(self.subs):
                    sub._fail(NotConnected("the NATS connection is closed"))
                return
            try:
                if self.recovering and now >= self._retry_at:
                    await self._recover_all()
                if self.subs and now >= self._next_renew:
                    await self._renew()
            except Exception:  # keep renewing whatever went wrong once
                log.exception("lease keeper")
                self._next_renew = time.monotonic() + _BACKOFF_MAX

    async def _renew(self) -> None:
        held = {s.lease: s for s in self.subs if s.state is SubState.ACTIVE and s.lease}
        if not held:
            self._next_renew = time.monotonic() + self.period
            return
        try:
            reply = await self._link.renew(list(held), min(5.0, max(self.period, 1.0)))
        except TwsBusError as exc:
            self.renew_failures += 1
            retry = min(self._backoff, self.period / 2)
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
            log.info("lease renewal failed (%s); retrying in %.1fs", exc, retry)
            self._next_renew = time.monotonic() + retry
            return
        self.renewals += 1
        self._backoff = _BACKOFF_FIRST
        self._next_renew = time.monotonic() + self.period
        for lease in reply.unknown:
            sub = held.get(lease)
            if sub is not None and sub.lease == lease:
                log.info("%r: the daemon no longer knows its lease; subscribing again", sub)
                self.recover(sub)

    async def _recover_all(self) -> None:
        await asyncio.gather(*(self._recover(sub) for sub in list(self.recovering)))
        if self.recovering:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
        else:
            self._backoff = _BACKOFF_FIRST

    async def _recover(self, sub: Subscription) -> None:
        if sub.state is not SubState.RECOVERING:
            self.recovering.pop(sub, None)
            return
        try:
            if sub.check_closed:
                running = await self._link.daemon_epoch()
                if running is not None and running == sub.epoch:
                    sub._fail(StreamClosed(f"{sub.subject} closed: {sub.reason}",
                                           subject=sub.subject or "", reason=sub.reason))
                    return
                sub.check_closed = False  # the daemon went away: wait for the next one
            await sub._resubscribe()
            self.recovering.pop(sub, None)
            log.info("%r: subscribed again", sub)
        except _RETRYABLE as exc:
            started = self.recovering.get(sub, time.monotonic())
            if self.recover_timeout is not None and \
                    time.monotonic() - started > self.recover_timeout:
                sub._fail(exc)
        except TwsBusError as exc:
            sub._fail(exc)
        except Exception:  # a bug must not stop the renewals of every other lease
            log.exception("%r: re-subscribing failed; will retry", sub)
