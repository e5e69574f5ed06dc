"""Shared upstream subscriptions: one ``Stream`` per key, and what each kind does with TWS data.

A ``Stream`` is one live TWS request (reqMktData, reqRealTimeBars...) that many leases share.
It keeps the current image (last value of every tick field, the last bar, the book), turns each
TWS callback into a message for its data subject through the publisher, and carries two explicit
states: its lifecycle (``StreamState``) and the health its subscribers see (``Health``), which is
published on the subject itself, never inferred from silence.

A ``Kind`` says how one subscription kind talks to TWS: which EClient method, with which
arguments, which callbacks it receives and how they change the image and the subject. A subclass
that names its kind (``name = "ticks"``) registers itself in ``Kind.registry``, where
``kinds.make_kinds`` finds it by the name subjects.yaml gives the kind.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any, ClassVar, Protocol

from twsbus.service.publisher import Outbox, Publisher
from twsbus.subjects import SubscriptionSpec
from twsbus.tws.callbacks import Event
from twsbus.tws.ticks import VOLUME_TICKS


class StreamState(enum.Enum):
    STARTING = "starting"  # requested; no answer from TWS yet
    LIVE = "live"
    LINGERING = "lingering"  # no leases left; cancelled upstream when the linger ends
    CLOSED = "closed"


class Health(enum.Enum):
    OK = "ok"
    STALE = "stale"
    CLOSED = "closed"


class StreamOwner(Protocol):
    def stream_answered(self, stream: Stream, complete: bool) -> None: ...

    def stream_error(self, stream: Stream, code: int, message: str) -> None: ...


class Stream:
    def __init__(self, kind: Kind, key: tuple[Any, ...], subject: str, params: dict[str, Any],
                 box: Outbox) -> None:
        self.kind = kind
        self.key = key
        self.subject = subject
        self.params = params
        self.box = box
        self.req_id: int | None = None
        self.state = StreamState.STARTING
        self.health = Health.STALE
        self.reason = "starting"
        self.leases: set[str] = set()
        self.permanent = False
        self.linger_until = 0.0
        self.image: dict[str, Any] = {}
        #: Volume ticks times this are shares (100 for US stocks below server version 220).
        self.volume_scale = 1
        self.events = 0
        self.owner: StreamOwner | None = None
        #: The first subscriber waits on this for TWS's first answer (or refusal).
        self.waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        con = f" conId={self.params.get('conId')}" if self.params.get("conId") else ""
        return (f"<Stream {self.kind.name}{con} refs={len(self.leases)} "
                f"{self.state.name.title()}/{self.health.name.title()}>")

    @property
    def con_id(self) -> int | None:
        value = self.params.get("conId")
        return int(value) if value else None

    @property
    def held(self) -> bool:
        return self.permanent or bool(self.leases)

    # ---- from TWS (the router calls these) ---------------------------------------------------

    def on_event(self, event: Event) -> None:
        self.events += 1
        if self.state is StreamState.STARTING:
            self.state = StreamState.LIVE
        # Only the first answers (and those after a stale spell) concern the owner; told first,
        # so that the ``ok`` it publishes goes out ahead of the data that proves it.
        if self.owner is not None and (self.waiter is not None or self.health is not Health.OK):
            ready_on = self.kind.ready_on
            complete = event.name == ready_on if ready_on else \
                event.name not in self.kind.preamble
            self.owner.stream_answered(self, complete)
        self.kind.on_event(self, event)

    def on_error(self, code: int, message: str) -> None:
        if self.owner is not None:
            self.owner.stream_error(self, code, message)

    # ---- to NATS ----------------------------------------------------------------------------

    def set_health(self, health: Health, reason: str, publisher: Publisher) -> None:
        if health is self.health and reason == self.reason:
            return
        self.health = health
        self.reason = reason
        publisher.offer(self.box, {"type": "status", "state": health.value, "reason": reason})


class Kind:
    """How one subscription kind behaves. What it is (its EClient method and cancel, parameters
    and defaults, subject, message type, budget costs) is declared in subjects.yaml and read
    here from its ``SubscriptionSpec``; a subclass says only how TWS is asked (``request``) and
    how TWS's callbacks change the image and become messages (``on_event``)."""

    name: ClassVar[str]
    #: Every kind's class by its ``name``, filled as the classes are defined.
    registry: ClassVar[dict[str, type[Kind]]] = {}
    #: Callbacks that carry no request id, routed by name (reqPositions, reqAccountUpdates).
    unkeyed: ClassVar[tuple[str, ...]] = ()
    #: The callback that ends the initial state (None: the first data callback will do).
    ready_on: ClassVar[str | None] = None
    #: Callbacks TWS sends ahead of the data, which do not make an image.
    preamble: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:  # a base for other kinds (it inherits a name, or has none yet)
            return
        if (other := Kind.registry.get(name)) is not None:
            raise TypeError(f"subscription kind {name!r} has two classes: "
                            f"{other.__module__}.{other.__qualname__} and "
                            f"{cls.__module__}.{cls.__qualname__}")
        Kind.registry[name] = cls

    def __init__(self, publisher: Publisher, spec: SubscriptionSpec) -> None:
        self.publisher = publisher
        self.spec = spec
        self.method = spec.method
        #: The data message type and whether successive updates merge (latest value wins).
        self.type_name = spec.message
        self.conflate = spec.conflate
        self.collect = spec.collect
        self.lines, self.depth, self.tbt = spec.lines, spec.depth, spec.tbt
        self.scanner = spec.scanner
        #: Sent under IB's historical-data limits (``histpacing``), like historical queries.
        self.paced = spec.paced
        #: Request parameters a lease may give, with defaults; those in ``key_params`` make a
        #: different upstream request (and subject), those in ``mergeable`` may widen the live
        #: one (``merge_params``), the others must agree with it.
        self.params: dict[str, Any] = dict(spec.defaults)
        self.key_params = spec.key_params
        self.mergeable = spec.merge
        self.needs_contract = spec.needs_contract

    @property
    def keyed(self) -> bool:
        return not self.unkeyed

    def request(self, stream: Stream) -> dict[str, Any]:
        """EClient arguments (besides the reqId) for this stream."""
        return {"contract": stream.params["contract"], **{
            k: stream.params[k] for k in self.params}}

    def cancel(self, stream: Stream) -> tuple[str, dict[str, Any]]:
        """The EClient call that ends the stream (besides its reqId): ``cancel`` in the file."""
        cancel = self.spec.cancel
        if isinstance(cancel, str):
            return cancel, {}
        return cancel.method, dict(cancel.args)

    def on_event(self, stream: Stream, event: Event) -> None:
        raise NotImplementedError

    def merge_params(self, stream: Stream, params: dict[str, Any]) -> bool:
        """A new lease's parameters joined the stream; True when TWS must be asked again."""
        return False


def _publish(stream: Stream, message: dict[str, Any], publisher: Publisher) -> None:
    publisher.offer(stream.box, message)


class Ticks(Kind):
    name = "ticks"
    preamble = ("tickReqParams", "marketDataType")

    def request(self, stream: Stream) -> dict[str, Any]:
        return {"contract": stream.params["contract"],
                "genericTickList": stream.params["genericTickList"],
                "snapshot": False, "regulatorySnapshot": False}

    def merge_params(self, stream: Stream, params: dict[str, Any]) -> bool:
        have = {t for t in stream.params["genericTickList"].split(",") if t}
        want = {t.strip() for t in str(params.get("genericTickList", "")).split(",") if t.strip()}
        if want <= have:
            return False
        stream.params["genericTickList"] = ",".join(sorted(have | want, key=_tick_order))
        return True

    def on_event(self, stream: Stream, event: Event) -> None:
        data = event.data
        name = event.name
        value_key = _TICK_VALUE.get(name)
        if value_key is not None:
            field = data["field"]
            value = data[value_key]
            if stream.volume_scale != 1 and name == "tickSize" and value is not None and \
                    data["tickType"] in VOLUME_TICKS:
                value *= stream.volume_scale
        elif name == "tickOptionComputation":
            field = _option_field(data["tickType"])
            value = {k: v for k, v in data.items() if k not in ("tickType",)}
        elif name == "marketDataType":
            field, value = "marketDataType", data["marketDataType"]
        elif name == "tickReqParams":
            stream.image.update({k: v for k, v in data.items()})
            return
        else:
            return
        stream.image[field] = value
        self.publisher.merge_field(stream.box, field, value)


#: The tick callbacks, and the key of their value in the event's data.
_TICK_VALUE = {"tickPrice": "price", "tickSize": "size", "tickString": "value",
               "tickGeneric": "value"}


def _tick_order(tick: str) -> tuple[int, str]:
    return (int(tick), tick) if tick.isdigit() else (10**9, tick)


def _option_field(tick_type: int) -> str:
    return {10: "bidOption", 11: "askOption", 12: "lastOption", 13: "modelOption",
            80: "delayedBidOption", 81: "delayedAskOption", 82: "delayedLastOption",
            83: "delayedModelOption"}.get(tick_type, f"option{tick_type}")


class TickByTick(Kind):
    name = "tbt"

    def on_event(self, stream: Stream, event: Event) -> None:
        if not event.name.startswith("tickByTick"):
            return
        stream.image["last"] = event.data
        self.publisher.add(stream.box, event.data)


class Bars(Kind):
    name = "bars"

    def request(self, stream: Stream) -> dict[str, Any]:
        return {"contract": stream.params["contract"], "barSize": 5,
                "whatToShow": stream.params["whatToShow"], "useRTH": stream.params["useRTH"]}

    def on_event(self, stream: Stream, event: Event) -> None:
        if event.name != "realtimeBar":
            return
        bar = dict(event.data)
        bar["open"] = bar.pop("open_", bar.get("open"))
        stream.image["bar"] = bar
        _publish(stream, {"type": "bar", **bar}, self.publisher)


class HistoricalBars(Kind):
    name = "hist_bars"
    max_image_bars = 500

    def request(self, stream: Stream) -> dict[str, Any]:
        p = stream.params
        return {"contract": p["contract"], "endDateTime": "", "durationStr": p["durationStr"],
                "barSizeSetting": p["barSize"], "whatToShow": p["whatToShow"],
                "useRTH": p["useRTH"], "formatDate": 2, "keepUpToDate": True}

    def on_event(self, stream: Stream, event: Event) -> None:
        bars: list[dict[str, Any]] = stream.image.setdefault("bars", [])
        if event.name == "historicalData":
            bars.append(event.data["bar"])
            del bars[:-self.max_image_bars]
        elif event.name == "historicalDataUpdate":
            bar = event.data["bar"]
            if bars and bars[-1].get("date") == bar.get("date"):
                bars[-1] = bar
            else:
                bars.append(bar)
                del bars[:-self.max_image_bars]
            _publish(stream, {"type": "bar", **bar}, self.publisher)


class Depth(Kind):
    name = "depth"

    def request(self, stream: Stream) -> dict[str, Any]:
        p = stream.params
        return {"contract": p["contract"], "numRows": p["numRows"],
                "isSmartDepth": p["isSmartDepth"]}

    def cancel(self, stream: Stream) -> tuple[str, dict[str, Any]]:
        method, args = super().cancel(stream)
        return method, {**args, "isSmartDepth": stream.params["isSmartDepth"]}

    def merge_params(self, stream: Stream, params: dict[str, Any]) -> bool:
        rows = int(params.get("numRows", 0) or 0)
        if rows > stream.params["numRows"]:
            stream.params["numRows"] = rows
            return True
        return False

    def on_event(self, stream: Stream, event: Event) -> None:
        if event.name not in ("updateMktDepth", "updateMktDepthL2"):
            return
        d = event.data
        side = "bids" if d["side"] == 1 else "asks"
        book: list[dict[str, Any]] = stream.image.setdefault(side, [])
        stream.image.setdefault("bids" if side == "asks" else "asks", [])
        row = {"price": d["price"], "size": d["size"]}
        if d.get("marketMaker"):
            row["marketMaker"] = d["marketMaker"]
        pos, op = int(d["position"]), int(d["operation"])
        if op == 0:
            book.insert(min(pos, len(book)), row)
        elif op == 1 and pos < len(book):
            book[pos] = row
        elif op == 1:
            book.append(row)
        elif op == 2 and pos < len(book):
            del book[pos]
        self.publisher.merge(stream.box, {"bids": list(stream.image["bids"]),
                                          "asks": list(stream.image["asks"])})


class PnL(Kind):
    name = "pnl"

    def request(self, stream: Stream) -> dict[str, Any]:
        return {"account": stream.params["account"], "modelCode": stream.params["modelCode"]}

    def on_event(self, stream: Stream, event: Event) -> None:
        if event.name in ("pnl", "pnlSingle"):
            stream.image.update(event.data)
            self.publisher.merge(stream.box, event.data)


class PnLSingle(PnL):
    name = "pnl_single"

    def request(self, stream: Stream) -> dict[str, Any]:
        return {"account": stream.params["account"], "modelCode": stream.params["modelCode"],
                "conid": stream.params["conId"]}


class Account(Kind):
    name = "account"
    unkeyed = ("updateAccountValue", "updatePortfolio", "updateAccountTime",
               "accountDownloadEnd")
    ready_on = "accountDownloadEnd"

    def request(self, stream: Stream) -> dict[str, Any]:
        return {"subscribe": True, "acctCode": stream.params["account"]}

    def cancel(self, stream: Stream) -> tuple[str, dict[str, Any]]:
        method, args = super().cancel(stream)  # reqAccountUpdates(subscribe=False)
        return method, {**args, "acctCode": stream.params["account"]}

    def on_event(self, stream: Stream, event: Event) -> None:
        d = event.data
        account = stream.params["account"]
        if event.name == "updateAccountValue" and d.get("accountName") in (account, ""):
            values = stream.image.setdefault("values", {})
            values[f"{d['key']}:{d['currency']}" if d.get("currency") else d["key"]] = d["val"]
            _publish(stream, {"type": "accountValue", **d}, self.publisher)
        elif event.name == "updatePortfolio" and d.get("accountName") in (account, ""):
            portfolio = stream.image.setdefault("portfolio", {})
            portfolio[str(d["contract"].get("conId"))] = d
            _publish(stream, {"type": "portfolio", **d}, self.publisher)
        elif event.name == "updateAccountTime":
            stream.image["time"] = d["timeStamp"]
            _publish(stream, {"type": "accountTime", **d}, self.publisher)


class Positions(Kind):
    name = "positions"
    unkeyed = ("position", "positionEnd")
    ready_on = "positionEnd"

    def request(self, stream: Stream) -> dict[str, Any]:
        return {}

    def on_event(self, stream: Stream, event: Event) -> None:
        if event.name != "position" or event.data["account"] != stream.params["account"]:
            return
        _position(stream, event.data, self.publisher)


class PositionsMulti(Kind):
    """reqPositionsMulti: the account's (and model's) positions as ``position`` messages, the
    positions kind's: the model is the stream's, so the rows need not repeat it."""

    name = "positions_multi"
    ready_on = "positionMultiEnd"

    def request(self, stream: Stream) -> dict[str, Any]:
        return {"account": stream.params["account"], "modelCode": stream.params["modelCode"]}

    def on_event(self, stream: Stream, event: Event) -> None:
        if event.name != "positionMulti":
            return
        d = event.data
        _position(stream, {"account": d["account"], "contract": d["contract"],
                           "position": d["pos"], "avgCost": d["avgCost"]}, self.publisher)


def _position(stream: Stream, row: dict[str, Any], publisher: Publisher) -> None:
    """One position of a positions stream: its image holds it by conId, and it is published."""
    stream.image.setdefault("positions", {})[str(row["contract"].get("conId"))] = row
    _publish(stream, {"type": "position", **row}, publisher)
