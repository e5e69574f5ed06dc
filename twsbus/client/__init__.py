"""The asyncio client library: ``Client``, the stream message types and the contract helpers.

``twsbus`` re-exports these names; the modules behind them are private: ``client`` (the wire and
the typed subscription methods), ``queries`` (one method per query op), ``stream`` (one
subscription: ordering, inbox, seq checks), ``keeper`` (lease renewal and re-subscription),
``events`` (what a subscription yields), ``contracts`` (contract and order helpers) and
``orders`` (placing, the order handle and the order-event feed).
"""

from twsbus.client.client import Client, PositionsSubscription
from twsbus.client.contracts import (
    ContractLike,
    forex,
    future,
    limit_order,
    market_order,
    option,
    stock,
    stop_limit_order,
    stop_order,
    to_contract,
)
from twsbus.client.events import (
    AccountTime,
    AccountValue,
    Bar,
    Depth,
    Image,
    Other,
    PnL,
    PnLSingle,
    Portfolio,
    Position,
    Scan,
    StreamMessage,
    StreamStatus,
    Tick,
    TickByTick,
)
from twsbus.client.link import KIND_PARAMS
from twsbus.client.orders import (
    OrderEvent,
    OrderFeed,
    OrderHandle,
    OrderNotFilled,
    OrderRecord,
    OrderUpdate,
    PlaceReply,
    new_client_order_id,
)
from twsbus.client.stream import Inbox, StreamClosed, Subscription, SubState

__all__ = [
    "KIND_PARAMS",
    "AccountTime",
    "AccountValue",
    "Bar",
    "Client",
    "ContractLike",
    "Depth",
    "Image",
    "Inbox",
    "OrderEvent",
    "OrderFeed",
    "OrderHandle",
    "OrderNotFilled",
    "OrderRecord",
    "OrderUpdate",
    "Other",
    "PlaceReply",
    "PnL",
    "PnLSingle",
    "Portfolio",
    "Position",
    "PositionsSubscription",
    "Scan",
    "StreamClosed",
    "StreamMessage",
    "StreamStatus",
    "SubState",
    "Subscription",
    "Tick",
    "TickByTick",
    "forex",
    "future",
    "limit_order",
    "market_order",
    "new_client_order_id",
    "option",
    "stock",
    "stop_limit_order",
    "stop_order",
    "to_contract",
]
