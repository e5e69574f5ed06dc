"""IB's error and status codes: every one twsbus acts on, named once, with what each means.

TWS reports through ``error(reqId, code, message)`` both failures and news about the link and
the data farms. The rest of twsbus asks this table, never a bare number: which codes are status
rather than failure (``is_informational``), which concern the link or a farm rather than one
request (``is_connection_level``), which farm went down or came back (``FARM_DOWN``,
``FARM_UP``), and which, sent about a request, do not fail it (``NOT_REQUEST_FAILURES``). The
twsbus error each failure becomes is ``errors.from_tws``'s table, keyed by these names. No ibapi
import: the error table (``twsbus.errors``) depends on this module.
"""

from __future__ import annotations

import enum


class IbCode(enum.IntEnum):
    MAX_RATE_EXCEEDED = 100  # more than 50 messages/s
    MAX_TICKERS = 101  # market-data lines used up
    DUPLICATE_ORDER_ID = 103
    NOT_CANCELLABLE = 161  # a cancel for an order in no cancellable state
    HISTORICAL_PACING_VIOLATION = 162
    NO_SECURITY_DEFINITION = 200  # also "the description is ambiguous"
    ORDER_CANCELLED = 202
    MAX_DEPTH_REQUESTS = 309
    VALIDATION_ERROR = 321
    PROCESSING_ERROR = 322  # often a duplicate id
    CLIENT_ID_IN_USE = 326
    ORDER_MESSAGE_WARNING = 399
    NOT_CONNECTED = 504
    CONNECTIVITY_LOST = 1100
    RESTORED_DATA_LOST = 1101  # TWS dropped the market-data subscriptions
    RESTORED_DATA_KEPT = 1102
    NEW_ACCOUNT_DATA = 2100
    MARKET_FARM_BROKEN = 2103
    MARKET_FARM_OK = 2104
    HMDS_FARM_BROKEN = 2105
    HMDS_FARM_OK = 2106
    HMDS_FARM_INACTIVE = 2107
    MARKET_FARM_INACTIVE = 2108
    OUTSIDE_RTH_ORDER = 2109  # an order attribute ignored outside regular hours
    SERVER_CONNECTIVITY_BROKEN = 2110
    API_VERSION_WARNING = 2150
    SEC_DEF_FARM_BROKEN = 2157
    SEC_DEF_FARM_OK = 2158
    FRACTIONAL_SIZE_WARNING = 2176
    DELAYED_DATA_DISPLAYED = 10167
    DELAYED_DATA_NOT_SUBSCRIBED = 10168
    COMPETING_LIVE_SESSION = 10197  # no market data during a competing live session
    DISPLAY_GROUP_WARNING = 10285


#: Status and warnings: they describe the connection or data quality, never fail a request
#: (with the whole 2100-2199 range of notices).
INFORMATIONAL = frozenset({
    IbCode.CONNECTIVITY_LOST, IbCode.RESTORED_DATA_LOST, IbCode.RESTORED_DATA_KEPT,
    IbCode.NEW_ACCOUNT_DATA, IbCode.API_VERSION_WARNING, IbCode.SEC_DEF_FARM_BROKEN,
    IbCode.SEC_DEF_FARM_OK, IbCode.DELAYED_DATA_DISPLAYED, IbCode.DISPLAY_GROUP_WARNING,
    IbCode.FRACTIONAL_SIZE_WARNING})

#: Sent about a request without failing it: order acknowledgements and warnings.
NOT_REQUEST_FAILURES = frozenset({
    IbCode.ORDER_CANCELLED, IbCode.ORDER_MESSAGE_WARNING, IbCode.DELAYED_DATA_DISPLAYED,
    IbCode.DELAYED_DATA_NOT_SUBSCRIBED, IbCode.OUTSIDE_RTH_ORDER})

#: ... and, for orders, a cancel that came too late (the order's own status says the rest).
NOT_ORDER_FAILURES = NOT_REQUEST_FAILURES | {IbCode.NOT_CANCELLABLE}

#: A farm (or the whole link) went down / came back: the kinds of stream it concerns (None: all).
FARM_DOWN: dict[int, str | None] = {IbCode.MARKET_FARM_BROKEN: "market",
                                    IbCode.HMDS_FARM_BROKEN: "history",
                                    IbCode.CONNECTIVITY_LOST: None}
FARM_UP: dict[int, str | None] = {IbCode.MARKET_FARM_OK: "market", IbCode.HMDS_FARM_OK: "history",
                                  IbCode.RESTORED_DATA_KEPT: None,
                                  IbCode.RESTORED_DATA_LOST: None}

#: Connectivity is back: what happened meanwhile is unknown (the order desk reconciles).
RESTORED = frozenset({IbCode.RESTORED_DATA_LOST, IbCode.RESTORED_DATA_KEPT})

_CONNECTION_LEVEL = frozenset({
    IbCode.CONNECTIVITY_LOST, IbCode.RESTORED_DATA_LOST, IbCode.RESTORED_DATA_KEPT,
    IbCode.SERVER_CONNECTIVITY_BROKEN, IbCode.SEC_DEF_FARM_BROKEN, IbCode.SEC_DEF_FARM_OK})


def is_informational(code: int) -> bool:
    return code in INFORMATIONAL or 2100 <= code <= 2199


def is_connection_level(code: int) -> bool:
    """Codes about the link or the data farms rather than about one request."""
    return code in _CONNECTION_LEVEL or IbCode.MARKET_FARM_BROKEN <= code <= \
        IbCode.MARKET_FARM_INACTIVE
