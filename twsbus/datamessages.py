"""What the data subjects carry: one msgspec struct per published message type.

Every message on a data subject (``tws.ticks.<conId>``, ``tws.tbt.<conId>.<tickType>``,
``tws.bars.<conId>``, ``tws.hbars.<conId>.<barSize>``, ``tws.depth.<conId>``, ``tws.pnl.*``,
``tws.account.<account>``, ``tws.positions.<account>``, ``tws.scanner.<scanCode>.<location>``,
...: each kind's ``data`` subject in subjects.yaml) is a JSON object tagged by ``type`` with the
envelope ``seq`` (per subject, +1 per message), ``ts`` (the daemon's receive time, ns since the
epoch) and ``epoch`` (changes when the daemon restarts). IB's callback argument names are kept,
so IB's documentation describes each field; an unset IB value is left out (or null).

These structs are the published contract: ``twsbus schema`` writes them into the AsyncAPI document,
and the tests decode what the daemon really publishes against them (``DataMessage``), strictly, so
the code and the document cannot drift apart. The daemon builds the messages on its hot path
without them (a dict per tick costs too much there); the tests are what holds the two together.
"""

from __future__ import annotations

from typing import Any, Literal, Union

import msgspec

from twsbus.subjects import surface


class Fields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A message's own fields (and the image's, where the image is the last message)."""


class StreamStatusFields(Fields):
    """The stream's health, published on the data subject in order with the data: ``ok`` (data
    flowing), ``stale`` (TWS or a farm is away; the last values may be old), ``closed`` (TWS
    refused or ended the request; ``reason`` says why). Never inferred from silence."""

    state: Literal["ok", "stale", "closed"]
    reason: str | None = None


class OptionComputation(msgspec.Struct, forbid_unknown_fields=True):
    """tickOptionComputation's values (a field of ``ticks``: bidOption, askOption, lastOption,
    modelOption and their delayed forms)."""

    tickAttrib: int | None = None
    impliedVol: float | None = None
    delta: float | None = None
    optPrice: float | None = None
    pvDividend: float | None = None
    gamma: float | None = None
    vega: float | None = None
    theta: float | None = None
    undPrice: float | None = None


TickValue = float | str | OptionComputation | None


class TicksFields(Fields, forbid_unknown_fields=False):
    """reqMktData: the tick fields that changed since the last message (latest value wins: the
    daemon merges updates that arrive faster than they are sent). Each field is IB's tick type
    name camel-cased (BID_SIZE -> bidSize, LAST_TIMESTAMP -> lastTimestamp, from ibapi's
    TickTypeEnum); a tick type without a name is ``tick<N>``. Prices and sizes are numbers,
    string ticks (lastTimestamp, rtVolume...) strings, option computations objects. The common
    fields are listed; any other tick name may appear with a value of those types."""

    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    bidSize: float | None = None
    askSize: float | None = None
    lastSize: float | None = None
    volume: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    open: float | None = None
    lastTimestamp: str | None = None
    halted: float | None = None
    shortable: float | None = None
    markPrice: float | None = None
    bidExch: str | None = None
    askExch: str | None = None
    lastExch: str | None = None
    rtVolume: str | None = None
    marketDataType: int | None = None
    bidOption: OptionComputation | None = None
    askOption: OptionComputation | None = None
    lastOption: OptionComputation | None = None
    modelOption: OptionComputation | None = None


class TickAttribLast(msgspec.Struct, forbid_unknown_fields=True):
    pastLimit: bool = False
    unreported: bool = False


class TickAttribBidAsk(msgspec.Struct, forbid_unknown_fields=True):
    bidPastLow: bool = False
    askPastHigh: bool = False


class TickByTickFields(Fields):
    """reqTickByTickData: one tick, never merged. Trades (subject token ``Last`` or
    ``AllLast``) carry IB's ``tickType`` number (1 Last, 2 AllLast), price, size, exchange;
    ``BidAsk`` carries the bid/ask fields; ``MidPoint`` carries ``midPoint``. ``time`` is IB's
    time of the tick in seconds since the epoch."""

    time: int
    tickType: int | None = None
    price: float | None = None
    size: float | None = None
    tickAttribLast: TickAttribLast | None = None
    exchange: str | None = None
    specialConditions: str | None = None
    bidPrice: float | None = None
    askPrice: float | None = None
    bidSize: float | None = None
    askSize: float | None = None
    tickAttribBidAsk: TickAttribBidAsk | None = None
    midPoint: float | None = None


class TickByTickBatchFields(Fields):
    """reqTickByTickData: the ticks that arrived together from TWS (one read of its socket),
    oldest first, at most 100 a message; a burst takes several messages, each with its own
    ``seq``. Every tick TWS sent is in exactly one message: nothing is merged or skipped."""

    ticks: list[TickByTickFields]


class BarFields(Fields):
    """A bar. On ``tws.bars.<conId>`` (reqRealTimeBars) a finished 5-second bar with ``time`` (s
    since the epoch) and ``count``; on ``tws.hbars.<conId>.<barSize>`` (reqHistoricalData with
    keepUpToDate) the current bar as it changes, with IB's ``date`` string and ``barCount``."""

    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    volume: float | None = None
    wap: float | None = None
    time: int | None = None
    count: int | None = None
    date: str | None = None
    barCount: int | None = None


class DepthRow(msgspec.Struct, forbid_unknown_fields=True):
    price: float
    size: float
    #: Level 2 (updateMktDepthL2): the market maker or exchange of the row.
    marketMaker: str | None = None


class DepthFields(Fields):
    """reqMktDepth: the whole book after a change, best first (latest book wins)."""

    bids: list[DepthRow]
    asks: list[DepthRow]


class PnLFields(Fields):
    """reqPnL: the account's PnL values that changed."""

    dailyPnL: float | None = None
    unrealizedPnL: float | None = None
    realizedPnL: float | None = None


class PnLSingleFields(Fields):
    """reqPnLSingle: one position's PnL values that changed."""

    pos: float | None = None
    dailyPnL: float | None = None
    unrealizedPnL: float | None = None
    realizedPnL: float | None = None
    value: float | None = None


class AccountValueFields(Fields):
    """updateAccountValue on ``tws.account.<account>``: one key of the account."""

    key: str
    val: str
    currency: str = ""
    accountName: str = ""


class PortfolioFields(Fields):
    """updatePortfolio on ``tws.account.<account>``: one position, valued (``contract`` is IB's
    Contract with unset fields left out)."""

    contract: dict[str, Any]
    position: float | None = None
    marketPrice: float | None = None
    marketValue: float | None = None
    averageCost: float | None = None
    unrealizedPNL: float | None = None
    realizedPNL: float | None = None
    accountName: str = ""


class AccountTimeFields(Fields):
    """updateAccountTime on ``tws.account.<account>``: the time of the last account update."""

    timeStamp: str


class PositionFields(Fields):
    """position on ``tws.positions.<account>``: one position of the account."""

    account: str
    contract: dict[str, Any]
    position: float | None = None
    avgCost: float | None = None


class ScanContract(msgspec.Struct, forbid_unknown_fields=True):
    """The contract of a scanner row, as TWS describes it there (unset fields left out)."""

    conId: int
    symbol: str = ""
    secType: str = ""
    lastTradeDateOrContractMonth: str = ""
    strike: float | None = None
    right: str = ""
    exchange: str = ""
    currency: str = ""
    localSymbol: str = ""
    tradingClass: str = ""


class ScanRow(msgspec.Struct, forbid_unknown_fields=True):
    """One scannerData row: its rank (0 first) and IB's own strings, empty ones left out."""

    rank: int
    contract: ScanContract
    marketName: str = ""
    distance: str = ""
    benchmark: str = ""
    projection: str = ""
    legsStr: str = ""


class ScanFields(Fields):
    """reqScannerSubscription: the whole ranked list after each scan (TWS scans again every
    few seconds; each scannerDataEnd publishes its rows at once, latest list wins)."""

    rows: list[ScanRow]


class TbtImage(msgspec.Struct, forbid_unknown_fields=True):
    last: TickByTickFields | None = None


class BarsImage(msgspec.Struct, forbid_unknown_fields=True):
    bar: BarFields | None = None


class HistBarsImage(msgspec.Struct, forbid_unknown_fields=True):
    #: The bars TWS sent for ``durationStr``, oldest first (the newest 500 at most).
    bars: list[BarFields] = msgspec.field(default_factory=list)


class AccountImage(msgspec.Struct, forbid_unknown_fields=True):
    #: ``key`` (or ``key:currency``) -> value.
    values: dict[str, str] = msgspec.field(default_factory=dict)
    #: conId -> the position's last updatePortfolio.
    portfolio: dict[str, PortfolioFields] = msgspec.field(default_factory=dict)
    time: str | None = None


class PositionsImage(msgspec.Struct, forbid_unknown_fields=True):
    #: conId -> the position's last ``position``.
    positions: dict[str, PositionFields] = msgspec.field(default_factory=dict)


def _message(name: str, fields: type[Fields], tag: str) -> Any:
    """``fields`` with the envelope, tagged: ``seq`` (per subject, +1 per message), ``ts`` (the
    daemon's receive time, ns since the epoch), ``epoch`` (changes when the daemon restarts)."""
    message = msgspec.defstruct(name, [("seq", int), ("ts", int), ("epoch", str)],
                                bases=(fields,), tag=tag, tag_field="type", kw_only=True,
                                module=__name__)
    message.__doc__ = fields.__doc__  # the reference describes the message as its fields
    return message


StreamStatus = _message("StreamStatus", StreamStatusFields, "status")
Ticks = _message("Ticks", TicksFields, "ticks")
TickByTick = _message("TickByTick", TickByTickBatchFields, "tbt")
Bar = _message("Bar", BarFields, "bar")
Depth = _message("Depth", DepthFields, "depth")
PnL = _message("PnL", PnLFields, "pnl")
PnLSingle = _message("PnLSingle", PnLSingleFields, "pnl_single")
AccountValue = _message("AccountValue", AccountValueFields, "accountValue")
Portfolio = _message("Portfolio", PortfolioFields, "portfolio")
AccountTime = _message("AccountTime", AccountTimeFields, "accountTime")
Position = _message("Position", PositionFields, "position")
Scan = _message("Scan", ScanFields, "scan")

#: The message types of each ``message:`` name in subjects.yaml (what a kind publishes on its
#: data subject, besides ``status``).
MESSAGE_TYPES: dict[str, tuple[Any, ...]] = {
    "ticks": (Ticks,),
    "tbt": (TickByTick,),
    "bar": (Bar,),
    "depth": (Depth,),
    "pnl": (PnL,),
    "pnl_single": (PnLSingle,),
    "account": (AccountValue, Portfolio, AccountTime),
    "position": (Position,),
    "scan": (Scan,),
}

#: The ``image`` of a subscribe reply for a kind of each ``message:`` name: the stream's state
#: when the lease was granted. A kind whose image differs from its message's says so below.
MESSAGE_IMAGES: dict[str, type[msgspec.Struct]] = {
    "ticks": TicksFields,
    "tbt": TbtImage,
    "bar": BarsImage,
    "depth": DepthFields,
    "pnl": PnLFields,
    "pnl_single": PnLSingleFields,
    "account": AccountImage,
    "position": PositionsImage,
    "scan": ScanFields,
}
_KIND_IMAGES: dict[str, type[msgspec.Struct]] = {"hist_bars": HistBarsImage}

#: Per subscription kind of subjects.yaml: its message types and its image (a kind that
#: publishes an existing message type needs nothing here).
KIND_MESSAGES: dict[str, tuple[Any, ...]] = {
    kind: MESSAGE_TYPES[spec.message] for kind, spec in surface().subscriptions.items()}
IMAGES: dict[str, type[msgspec.Struct]] = {
    kind: _KIND_IMAGES.get(kind) or MESSAGE_IMAGES[spec.message]
    for kind, spec in surface().subscriptions.items()}

#: Any message of any data subject.
DataMessage: Any = Union[  # noqa: UP007 - built from a tuple
    tuple(dict.fromkeys((StreamStatus, *(m for ms in MESSAGE_TYPES.values() for m in ms))))]


def decode(raw: bytes) -> Any:
    """One published data message, checked against its struct (raises msgspec.ValidationError)."""
    return msgspec.json.decode(raw, type=DataMessage)
