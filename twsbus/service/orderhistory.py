"""The order stream's history, served by the daemon: ``tws.req.orders`` with ``"events": true``.

Clients get no JetStream API at all (a client allowed to create consumers could have the stream
pushed onto any subject, and JetStream answers any reply subject). The daemon reads for them,
and its replies go only to inboxes (``Requests.reply_prefixes``): an ephemeral pull consumer on
the stream, filtered by ``account`` / ``strategy`` / ``orderId`` (the tokens of the public
subject), starting at ``since`` (a stream sequence, an ISO time, ``"new"`` or the first), reads
up to ``limit`` events and as many as fit in NATS's max_payload. Each event goes back with its
stream sequence and its public subject, as the live copies the server republishes carry them in
``Nats-Sequence``, so a client merges the two (client/orderfeed.py).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import msgspec
import nats.errors
from nats.js import api

from twsbus.errors import BadRequest, NotConnected
from twsbus.orders.events import OrderEventsReply, OrdersRequest, StoredEvent
from twsbus.orders.journal import Journal, public, stored
from twsbus.subjects import Surface, token

log = logging.getLogger("twsbus.orders")

#: Events per reply when the request names no ``limit``.
LIMIT = 1000
#: Room in a reply for everything but the events.
_ROOM = 1024
#: The ephemeral consumer is gone this long after the read, should its delete be lost.
_INACTIVE = 10.0


def event_filter(surface: Surface, request: OrdersRequest) -> str:
    """The stored-subject filter of a request (``_TWSBUS.tws.orders.DU1.meanrev.*``)."""
    def part(value: str | int | None, field: str) -> str:
        return "*" if value is None else token(str(value), field)

    if request.account is None and request.strategy is None and request.orderId is None:
        return stored(surface.subject("order_events", account="*", strategy="*", orderId="*"))
    return stored(surface.subject(
        "order_events", account=part(request.account, "account"),
        strategy=part(request.strategy, "strategy"), orderId=part(request.orderId, "orderId")))


def start_of(since: int | str | None) -> api.ConsumerConfig:
    """Where a read starts, as consumer settings; BadRequest names ``since``."""
    if since is None or (isinstance(since, int) and since <= 1):
        return api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
    if isinstance(since, int):
        return api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=since)
    try:
        when = datetime.datetime.fromisoformat(since)
    except ValueError:
        raise BadRequest("since: a stream sequence, an ISO 8601 time or \"new\"") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_TIME,
                              opt_start_time=when)


async def read_events(journal: Journal | None, surface: Surface, request: OrdersRequest,
                      ) -> OrderEventsReply:
    if request.all:
        raise BadRequest("all: for the journal's records, not with events")
    if journal is None:
        raise NotConnected("the order stream is unavailable (JetStream)")
    subject = event_filter(surface, request)
    start = None if request.since == "new" else start_of(request.since)
    try:
        return await _read(journal, subject, start, request.limit or LIMIT)
    except (nats.errors.Error, TimeoutError) as exc:  # NATS or JetStream away, or busy
        raise NotConnected(f"the order stream cannot be read now ({exc!r})") from None


async def _read(journal: Journal, subject: str, start: api.ConsumerConfig | None,
                limit: int) -> OrderEventsReply:
    js = journal.nc.jetstream(timeout=5)
    last = int((await js.stream_info(journal.stream)).state.last_seq)
    if start is None:
        return OrderEventsReply([], last, False)
    start.filter_subject = subject
    start.ack_policy = api.AckPolicy.NONE
    start.mem_storage = True
    start.inactive_threshold = _INACTIVE
    start.num_replicas = 1
    consumer = await js.add_consumer(journal.stream, start)
    try:
        return await _page(js, journal, consumer, limit, last)
    finally:
        try:
            await js.delete_consumer(journal.stream, consumer.name)
        except Exception as exc:  # it goes by itself after _INACTIVE
            log.debug("orders: could not delete consumer %s: %r", consumer.name, exc)


async def _page(js: Any, journal: Journal, consumer: api.ConsumerInfo, limit: int, last: int,
                ) -> OrderEventsReply:
    wanted = min(limit, int(consumer.num_pending or 0))
    if not wanted:
        return OrderEventsReply([], last, False)
    sub = await js.pull_subscribe_bind(consumer.name, journal.stream)
    try:
        try:
            msgs = await sub.fetch(wanted, timeout=5)
        except TimeoutError:  # gone meanwhile (max_age): nothing to read
            msgs = []
    finally:
        await sub.unsubscribe()
    budget = journal.nc.max_payload - _ROOM
    events: list[StoredEvent] = []
    more = len(msgs) < int(consumer.num_pending or 0)
    for msg in msgs:
        meta = msg.metadata
        budget -= len(msg.data) + len(msg.subject) + 32
        if events and budget < 0:
            more = True
            break
        events.append(StoredEvent(meta.sequence.stream, public(msg.subject),
                                  msgspec.Raw(msg.data)))
        more = meta.num_pending > 0
    return OrderEventsReply(events, last, more)
