"""NATS request handling: one task per request, JSON replies, the error table on the wire.

nats-py's micro framework calls an endpoint's handler one request at a time, so a slow TWS query
would hold up every other request to the same endpoint. ``Requests.handler`` returns at once and
runs the work in its own task, tracked so that shutdown can answer or fail what is in flight.
Replies larger than the server's max_payload fail with 413 and a hint to narrow the request.

Replies go only to reply subjects under ``reply_prefixes`` (the requesters' inboxes): the daemon
may publish where clients may not, so a forged reply subject (a data subject, an order subject)
would otherwise make it write there. That holds for the micro framework's own discovery
handlers (``$SRV.PING|INFO|STATS``, which any role may ask) too: ``bind`` wraps them (their
subscriptions' callbacks, private to nats-py, checked when bound). A refused request is answered
nowhere and counted in ``refused_replies``.

Because the handler returns before the work is done, the micro framework's own endpoint stats
would time only the task's start and never see an error. So the task keeps the books itself:
when it has answered, it writes the endpoint's ``num_errors``, ``last_error`` and
``processing_time`` (arrival to reply, the sum over answered requests) and the average over them
into the framework's endpoint object (``bind`` maps subjects to those objects), which is what
``$SRV.STATS`` (``nats micro stats twsbus``) reports. ``observe`` (the metrics) gets the same
measurement with the op and the result code.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.micro.request import Request
from nats.micro.service import Service

from twsbus.errors import InternalError, NotConnected, PayloadTooLarge, TwsBusError, error_reply
from twsbus.service.histpacing import REQUESTER

log = logging.getLogger("twsbus.service")

Work = Callable[[bytes], Awaitable[Any]]
Observe = Callable[[str, float, int], None]

_encoder = msgspec.json.Encoder()


class _Books:
    """One endpoint's real numbers (the framework's object only holds what we write there)."""

    __slots__ = ("answered", "endpoint", "nanos")

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint
        self.answered = 0
        self.nanos = 0

    def settle(self, nanos: int, error: TwsBusError | None) -> None:
        self.answered += 1
        self.nanos += nanos
        ep = self.endpoint
        if error is not None:
            ep._num_errors += 1
            ep._last_error = f"{error.code}: {error.message}"
        ep._processing_time = self.nanos
        ep._average_processing_time = self.nanos // self.answered


class Requests:
    """Spawns and tracks a task per request."""

    def __init__(self, max_payload: Callable[[], int], observe: Observe | None = None,
                 reply_prefixes: tuple[str, ...] = ("_INBOX",)) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._max_payload = max_payload
        #: Replies go only to subjects under these prefixes: a reply subject is the
        #: requester's to choose, and the daemon may publish where clients may not (a forged
        #: reply subject would make it write into a data subject or the order stream).
        self.reply_prefixes = reply_prefixes
        self.refused_replies = 0
        self._books: dict[str, _Books] = {}
        self.observe = observe
        self.accepting = True
        self.answered = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"<Requests in-flight={len(self._tasks)} answered={self.answered}>"

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def bind(self, service: Service) -> None:
        """Keep the books of ``service``'s endpoints (a new service starts from zero), and
        guard its discovery handlers (``guard_discovery``)."""
        _check(service, "_endpoints")
        self._books = {ep._subject: _Books(ep) for ep in service._endpoints}
        self.guard_discovery(service)

    def guard_discovery(self, service: Service) -> None:
        """Make ``service``'s discovery handlers (``$SRV.PING|INFO|STATS``) refuse reply
        subjects outside ``reply_prefixes`` as ``handler`` does (idempotent; the sooner after
        ``add_service`` the better: until then they answer anywhere)."""
        _check(service, "_subscriptions")
        for sub in service._subscriptions.values():
            if not getattr(sub._cb, "twsbus_guarded", False):
                sub._cb = self._guarded(sub._cb)

    def _guarded(self, answer: Callable[[Msg], Awaitable[None]],
                 ) -> Callable[[Msg], Awaitable[None]]:
        async def discovery(msg: Msg) -> None:
            if self._allowed(msg.reply, msg.subject):
                await answer(msg)

        discovery.twsbus_guarded = True  # type: ignore[attr-defined]
        return discovery

    def _allowed(self, reply: str | None, subject: str) -> bool:
        """May a reply go to ``reply``? Counted and logged when not."""
        if (reply or "").startswith(self.reply_prefixes):
            return True
        self.refused_replies += 1  # answered nowhere, and nothing done
        log.warning("a request on %s asked for its reply on %r: refused (replies go only to "
                    "%s...)", subject, (reply or "")[:80], "|".join(self.reply_prefixes),
                    extra={"subject": subject})
        return False

    def handler(self, work: Work) -> Callable[[Request], Awaitable[None]]:
        async def handle(request: Request) -> None:
            if not self._allowed(request._msg.reply, request.subject):
                return
            started = time.perf_counter_ns()
            task = asyncio.get_running_loop().create_task(self._answer(request, work, started))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return handle

    async def _answer(self, request: Request, work: Work, started: int) -> None:
        error: TwsBusError | None = None
        # Who asks (their inbox, without the per-request token): fair turns key on it.
        REQUESTER.set((request._msg.reply or "").rpartition(".")[0])
        try:
            if not self.accepting:
                raise NotConnected("twsbus is shutting down")
            result = await work(request.data)
            data = result if isinstance(result, bytes) else _encoder.encode(result)
            limit = self._max_payload()
            if len(data) > limit:
                raise PayloadTooLarge(
                    f"the reply is {len(data)} bytes, over the NATS max_payload of {limit}: "
                    "narrow the request (a shorter durationStr, fewer ticks, a more specific "
                    "contract)"
                )
            await request.respond(data)
            self.answered += 1
        except TwsBusError as exc:
            error = exc
            await self._respond_error(request, exc)
        except asyncio.CancelledError:
            error = NotConnected("twsbus is shutting down")
            await self._respond_error(request, error)
            raise
        except Exception as exc:
            log.exception("request on %s failed", request.subject,
                          extra={"subject": request.subject, "code": InternalError.code})
            error = InternalError(f"internal error: {exc!r}")
            await self._respond_error(request, error)
        finally:
            self._settle(request.subject, time.perf_counter_ns() - started, error)

    def _settle(self, subject: str, nanos: int, error: TwsBusError | None) -> None:
        books = self._books.get(subject)
        if books is not None:
            books.settle(nanos, error)
        op = books.endpoint._name if books is not None else subject
        code = error.code if error is not None else 0
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s in %.1f ms", op, code or "ok", nanos / 1e6,
                      extra={"op": op, "subject": subject, "code": code})
        if self.observe is not None:
            try:
                self.observe(op, nanos / 1e9, code)
            except Exception as exc:  # metrics must never fail a request
                log.debug("metrics: %r", exc)

    async def _respond_error(self, request: Request, exc: TwsBusError) -> None:
        self.failed += 1
        body, headers = error_reply(exc)
        try:
            await request.respond(body, headers=headers)
        except Exception as send_exc:  # the requester may be gone, or NATS down
            log.debug("could not send error reply: %r", send_exc)

    async def drain(self, timeout: float) -> None:
        """Stop accepting; give in-flight requests ``timeout`` seconds, then cancel them."""
        self.accepting = False
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)


def _check(service: Service, name: str) -> None:
    """The micro framework's private parts used here are there (nats-py 2.9 to 2.16 have them)."""
    if not hasattr(service, name):
        raise RuntimeError(f"twsbus needs nats-py 2.9 to 2.x; nats-py "
                           f"{importlib.metadata.version('nats-py')} has no Service.{name}")
