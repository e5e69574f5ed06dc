"""Where orders are kept: a JetStream stream of every order event, and a KV bucket of orders.

The stream (``TWSBUS_ORDERS_<PREFIX>``, subjects ``<prefix>.orders.>``, file storage, bounded by
age and size) keeps every event published on an order subject, so a strategy that restarts
replays what it missed with nats-py's own JetStream consumers. Each event is published with a
``Nats-Msg-Id`` made of TWS facts (an execution's execId, an order's status and fill), so the
server drops a second copy inside ``duplicate_window`` whatever path it came by.

The KV bucket (``twsbus_orders_<prefix>``) holds one ``OrderRecord`` per order, keyed by
``clientOrderId`` (``perm-<permId>`` for orders placed elsewhere): the ``clientOrderId -> orderId
-> permId`` journal. ``create`` is atomic at the server, so two places of one ``clientOrderId``,
even from two daemons, make one order.

A NATS server without JetStream raises ``Unavailable`` with the reason; the daemon then serves
everything but orders.
"""

from __future__ import annotations

import logging

import msgspec
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
            name=stream, subjects=[f"{prefix}.orders.>"], storage=api.StorageType.FILE,
            max_age=settings.max_age, max_bytes=settings.max_bytes,
            num_replicas=settings.replicas, duplicate_window=settings.duplicate_window,
            description="twsbus: every order event of the account")
        try:
            await js.add_stream(config)
        except Exception:
            await js.update_stream(config)  # exists with other limits: take the configured ones
        kv = await js.create_key_value(api.KeyValueConfig(
            bucket=bucket, history=1, ttl=settings.max_age, storage=api.StorageType.FILE,
            replicas=settings.replicas, description="twsbus: clientOrderId -> orderId -> permId"))
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
        ack = await self.js.publish(subject, _encode(event), timeout=5,
                                    headers={"Nats-Msg-Id": msg_id})
        if ack.duplicate:
            self.duplicates += 1
        else:
            self.published += 1
