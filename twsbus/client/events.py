"""What a subscription yields: the image first, then data and status messages, as frozen structs.

Every item is a ``StreamMessage`` subclass tagged by ``type`` (the wire's own tag, plus ``image``):
``seq``/``ts``/``epoch`` come from the daemon, ``data`` holds the message's fields under IB's names
(``tick["bid"]`` or ``tick.bid``), and ``gap`` is how many messages were missed just before this
one (a seq jump upstream, or messages this client dropped because the consumer was slow). An
``Image`` is the stream's state as the daemon held it when the lease was granted; after a
re-subscription (daemon restart, lost lease) a new ``Image`` arrives with ``resubscribed=True``
and everything before it is a discontinuity. ``msgspec.json.encode(item)`` gives the JSON form.

The shapes are the published ones (``twsbus.datamessages``, the structs the AsyncAPI document is
written from): each class names its struct in ``fields_type``, and ``item.fields`` is ``data``
decoded by it (typed attributes; it raises if the daemon sent what the document does not allow).
A message that carries several items (tick-by-tick: the ``ticks`` one TWS read brought) is
handed over one item at a time, each with the message's ``seq``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from twsbus import datamessages as dm

_ENVELOPE = ("type", "seq", "ts", "epoch")


class StreamMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The common shape; see the module docstring for the meaning of each field."""

    #: The published struct of ``data`` (``twsbus.datamessages``).
    fields_type: ClassVar[type[msgspec.Struct] | None] = None

    seq: int
    ts: int = 0
    epoch: str = ""
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    gap: int = 0

    @property
    def fields(self) -> Any:
        """``data`` as its published struct (``twsbus.datamessages``): typed attributes."""
        if self.fields_type is None:
            raise TypeError(f"{type(self).__name__} has no published struct")
        return msgspec.convert(self.data, self.fields_type)

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)


class Image(StreamMessage, frozen=True, kw_only=True, tag="image"):
    """The first item of every subscription (and of every re-subscription)."""

    kind: str
    subject: str
    state: str = "ok"
    reason: str | None = None
    conId: int | None = None
    resubscribed: bool = False

    @property
    def fields(self) -> Any:
        """``data`` as the kind's published image struct (``twsbus.datamessages.IMAGES``)."""
        return msgspec.convert(self.data, dm.IMAGES[self.kind])


class Tick(StreamMessage, frozen=True, kw_only=True, tag="ticks"):
    """Market data fields that changed (reqMktData), by IB tick name."""

    fields_type = dm.TicksFields

    @property
    def bid(self) -> float | None:
        return self.data.get("bid")

    @property
    def ask(self) -> float | None:
        return self.data.get("ask")

    @property
    def last(self) -> float | None:
        return self.data.get("last")

    @property
    def bidSize(self) -> float | None:
        return self.data.get("bidSize")

    @property
    def askSize(self) -> float | None:
        return self.data.get("askSize")

    @property
    def lastSize(self) -> float | None:
        return self.data.get("lastSize")

    @property
    def volume(self) -> float | None:
        return self.data.get("volume")


class TickByTick(StreamMessage, frozen=True, kw_only=True, tag="tbt"):
    """One tick-by-tick tick (reqTickByTickData), fields as IB's callback names them."""

    fields_type = dm.TickByTickFields


class Bar(StreamMessage, frozen=True, kw_only=True, tag="bar"):
    """A 5-second real-time bar, or an update of the current historical bar (keepUpToDate)."""

    fields_type = dm.BarFields

    @property
    def time(self) -> Any:
        return self.data.get("time", self.data.get("date"))

    @property
    def open(self) -> float | None:
        return self.data.get("open")

    @property
    def high(self) -> float | None:
        return self.data.get("high")

    @property
    def low(self) -> float | None:
        return self.data.get("low")

    @property
    def close(self) -> float | None:
        return self.data.get("close")

    @property
    def volume(self) -> float | None:
        return self.data.get("volume")


class Depth(StreamMessage, frozen=True, kw_only=True, tag="depth"):
    """The whole order book after a change: ``bids`` and ``asks``, best first."""

    fields_type = dm.DepthFields

    @property
    def bids(self) -> list[dict[str, Any]]:
        return list(self.data.get("bids", []))

    @property
    def asks(self) -> list[dict[str, Any]]:
        return list(self.data.get("asks", []))


class PnL(StreamMessage, frozen=True, kw_only=True, tag="pnl"):
    """Account PnL fields that changed: dailyPnL, unrealizedPnL, realizedPnL."""

    fields_type = dm.PnLFields


class PnLSingle(StreamMessage, frozen=True, kw_only=True, tag="pnl_single"):
    """One position's PnL fields that changed: pos, dailyPnL, unrealizedPnL, value..."""

    fields_type = dm.PnLSingleFields


class AccountValue(StreamMessage, frozen=True, kw_only=True, tag="accountValue"):
    """updateAccountValue: key, val, currency, accountName."""

    fields_type = dm.AccountValueFields


class Portfolio(StreamMessage, frozen=True, kw_only=True, tag="portfolio"):
    """updatePortfolio: contract, position, marketPrice, marketValue, averageCost..."""

    fields_type = dm.PortfolioFields


class AccountTime(StreamMessage, frozen=True, kw_only=True, tag="accountTime"):
    """updateAccountTime: timeStamp."""

    fields_type = dm.AccountTimeFields


class Position(StreamMessage, frozen=True, kw_only=True, tag="position"):
    """position: account, contract, position, avgCost."""

    fields_type = dm.PositionFields


class Scan(StreamMessage, frozen=True, kw_only=True, tag="scan"):
    """A market scanner's whole ranked list after a scan: ``rows`` (rank, contract, ...)."""

    fields_type = dm.ScanFields

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.data.get("rows", []))


class StreamStatus(StreamMessage, frozen=True, kw_only=True, tag="status"):
    """The stream's health as the daemon publishes it, in order with the data."""

    fields_type = dm.StreamStatusFields

    state: str
    reason: str | None = None


class Other(StreamMessage, frozen=True, kw_only=True, tag="other"):
    """A message type this client does not know; ``data["type"]`` keeps the wire's tag."""


_BY_TYPE: dict[str, type[StreamMessage]] = {
    str(cls.__struct_config__.tag): cls
    for cls in (Tick, TickByTick, Bar, Depth, PnL, PnLSingle, AccountValue, Portfolio,
                AccountTime, Position, Scan)
}


def from_wire(raw: dict[str, Any], gap: int = 0) -> StreamMessage:
    """A decoded data-subject message (of one item) as the matching struct."""
    kind = raw.get("type")
    seq, ts, epoch = int(raw.get("seq", 0)), int(raw.get("ts", 0)), str(raw.get("epoch", ""))
    data = {k: v for k, v in raw.items() if k not in _ENVELOPE}
    if kind == "status":
        return StreamStatus(seq=seq, ts=ts, epoch=epoch, data=data, gap=gap,
                            state=str(raw.get("state", "")), reason=raw.get("reason"))
    cls = _BY_TYPE.get(str(kind))
    if cls is None:
        return Other(seq=seq, ts=ts, epoch=epoch, data={"type": kind, **data}, gap=gap)
    return cls(seq=seq, ts=ts, epoch=epoch, data=data, gap=gap)


def items_from_wire(raw: dict[str, Any], field: str, gap: int = 0) -> list[StreamMessage]:
    """A message that carries its items under ``field`` (the kind's ``collect``): one struct per
    item, oldest first, each with the message's envelope; ``gap`` goes on the first. A message
    without the field (a ``status``) is one item, as ``from_wire`` makes it."""
    items = raw.get(field)
    if not isinstance(items, list):
        return [from_wire(raw, gap)]
    envelope = {k: raw[k] for k in _ENVELOPE if k in raw}
    return [from_wire({**envelope, **item}, gap if i == 0 else 0)
            for i, item in enumerate(items) if isinstance(item, dict)]
