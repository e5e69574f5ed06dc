"""Where orders are kept: a JetStream stream of every order event, and a KV bucket of orders.

The stream (``TWSBUS_ORDERS_<PREFIX>``, file storage, bounded by age and size) keeps every order
event. The daemon publishes them into a namespace only it may publish on or read
(``_TWSBUS.<prefix>.orders.>``, ``stored``), and the server itself republishes each one, once
stored and in stream order, onto the public subject ``<prefix>.orders.<account>.<strategy>.
<orderId>`` (JetStream's RePublish) with its stream sequence in the ``Nats-Sequence`` header and
the previous sequence of the same subject in ``Nats-Last-Sequence``: a live reader can merge it
with a replay (the daemon's ``tws.req.orders`` with ``"events": true``, service/orderhistory.py)
with no gap and no repeat, and no client needs JetStream's API. Each event is published with a
``Nats-Msg-Id`` made of TWS facts (an execution's execId, an order's status and fill), so the
server drops a second copy inside ``duplicate_window`` whatever path it came by (and republishes
nothing for it).

nats-server 2.9 cannot add RePublish to an existing stream: a stream made by an older twsbus
(subjects ``<prefix>.orders.>``, no RePublish) is refused with the way out (``Unavailable``).

The KV bucket (``twsbus_orders_<prefix>``) holds one ``OrderRecord`` per order, keyed by
``clientOrderId`` (``perm-<permId>`` for orders placed elsewhere): the ``clientOrderId -> orderId
-> permId`` journal. ``create`` is atomic at the server, so two places of one ``clientOrderId``,
even from two daemons, make one order.

A NATS server without JetStream raises ``Unavailable`` with the reason; the daemon then serves
everything but orders.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.errors import KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from twsbus.orders.events import OrderEvent, OrderRecord

log = logging.getLogger("twsbus.orders")

_encode = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(OrderRecord).decode


class Unavailable(Exception):
    """JetStream cannot be used on this NATS connection; the message says why."""


class JournalSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_age: float = 90 * 86400.0
    max_bytes: int = 1024**3
    replicas: int = 1
    duplicate_window: float = 3600.0


#: The namespace the stream's own subjects live in (the daemon's alone; clients read the
#: republished copies on the public subjects).
STORED = "_TWSBUS"


def stored(subject: str) -> str:
    """The subject an event is kept under (``tws.orders.X`` -> ``_TWSBUS.tws.orders.X``)."""
    return f"{STORED}.{subject}"


def public(subject: str) -> str:
    """The public subject of a kept one (the inverse of ``stored``)."""
    return subject.removeprefix(f"{STORED}.")


def names(prefix: str) -> tuple[str, str]:
    """The stream and bucket names for a subject prefix (``tws.paper`` -> ``..._TWS_PAPER``)."""
    flat = "".join(c if c.isalnum() else "_" for c in prefix)
    return f"TWSBUS_ORDERS_{flat.upper()}", f"twsbus_orders_{flat.lower()}"


class Journal:
    def __init__(self, nc: NATS, kv: KeyValue, stream: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.kv = kv
        self.stream = stream
        self.published = 0
        self.duplicates = 0

    def __repr__(self) -> str:
        return f"<Journal {self.stream} published={self.published}>"

    @classmethod
    async def open(cls, nc: NATS, prefix: str, settings: JournalSettings) -> Journal:
        stream, bucket = names(prefix)
        js = nc.jetstream(timeout=5)
        try:
            await js.account_info()
        except Exception as exc:
            raise Unavailable(f"JetStream is not enabled on this NATS server ({exc!r}): orders "
                              "need it to keep their events and journal (nats-server -js)"
                              ) from None
        config = api.StreamConfig(
            name=stream, subjects=[stored(f"{prefix}.orders.>")], storage=api.StorageType.FILE,
            max_age=settings.max_age, max_bytes=settings.max_bytes,
            num_replicas=settings.replicas, duplicate_window=settings.duplicate_window,
            republish=api.RePublish(src=stored(f"{prefix}.orders.>"), dest=f"{prefix}.orders.>"),
            description="twsbus: every order event of the account")
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:  # exists: take the configured limits
            await _check_layout(js, config)
            await js.update_stream(config)
        try:
            kv = await js.create_key_value(api.KeyValueConfig(
                bucket=bucket, history=1, ttl=settings.max_age, storage=api.StorageType.FILE,
                replicas=settings.replicas,
                description="twsbus: clientOrderId -> orderId -> permId"))
        except nats.js.errors.BadRequestError:  # exists with other limits: use it as it is
            log.warning("orders: journal %s exists with other limits; they are kept", bucket)
            kv = await js.key_value(bucket)
        log.info("orders: stream %s, journal %s", stream, bucket)
        return cls(nc, kv, stream)

    async def load(self) -> list[OrderRecord]:
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return []
        records = []
        for key in keys:
            entry = await self.kv.get(key)
            if entry.value:
                records.append(_decode_record(entry.value))
        return records

    async def create(self, record: OrderRecord) -> bool:
        """Journal a new order; False when the key exists already (a duplicate)."""
        try:
            await self.kv.create(record.key, _encode(record))
        except KeyWrongLastSequenceError:
            return False
        return True

    async def put(self, key: str, value: bytes) -> None:
        await self.kv.put(key, value)

    async def delete(self, key: str) -> None:
        await self.kv.purge(key)

    async def publish(self, subject: str, event: OrderEvent, msg_id: str) -> None:
        """Keep ``event`` (the server republishes it on ``subject``)."""
        ack = await self.js.publish(stored(subject), _encode(event), timeout=5,
                                    headers={"Nats-Msg-Id": msg_id})
        if ack.duplicate:
            self.duplicates += 1
        else:
            self.published += 1


async def _check_layout(js: Any, config: api.StreamConfig) -> None:
    """An existing stream must have this layout: nats-server 2.9 cannot add RePublish later."""
    have = (await js.stream_info(config.name)).config
    if have.republish is None or have.subjects != config.subjects:
        raise Unavailable(
            f"the order stream {config.name} was made by an older twsbus (subjects "
            f"{have.subjects}, no RePublish), and nats-server cannot change that in place: back "
            f"it up (nats stream backup {config.name} DIR) and remove it (nats stream rm "
            f"{config.name}); this daemon then makes it again")
