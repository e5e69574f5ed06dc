"""NATS request handling: one task per request, JSON replies, the error table on the wire.

nats-py's micro framework calls an endpoint's handler one request at a time, so a slow TWS query
would hold up every other request to the same endpoint. ``Requests.handler`` returns at once and
runs the work in its own task, tracked so that shutdown can answer or fail what is in flight.
Replies larger than the server's max_payload fail with 413 and a hint to narrow the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.micro.request import Request

from twsbus.errors import InternalError, NotConnected, PayloadTooLarge, TwsBusError, error_reply

log = logging.getLogger("twsbus.service")

Work = Callable[[bytes], Awaitable[Any]]

_encoder = msgspec.json.Encoder()


class Requests:
    """Spawns and tracks a task per request."""

    def __init__(self, max_payload: Callable[[], int]) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._max_payload = max_payload
        self.accepting = True
        self.answered = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"<Requests in-flight={len(self._tasks)} answered={self.answered}>"

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def handler(self, work: Work) -> Callable[[Request], Awaitable[None]]:
        async def handle(request: Request) -> None:
            task = asyncio.get_running_loop().create_task(self._answer(request, work))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return handle

    async def _answer(self, request: Request, work: Work) -> None:
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
            await self._respond_error(request, exc)
        except asyncio.CancelledError:
            await self._respond_error(request, NotConnected("twsbus is shutting down"))
            raise
        except Exception as exc:
            log.exception("request on %s failed", request.subject)
            await self._respond_error(request, InternalError(f"internal error: {exc!r}"))

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
