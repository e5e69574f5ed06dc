"""The safety net around every request: reading a frame into its typed request and handling it,
where a failure answers an error for that request and the client's session carries on.

Without it an exception while reading or handling (a field that is not a number, a simulator
bug) would end the session and drop the client's link, which TWS never does for a bad request.
``install`` wraps each handler of a table once; the wrapper reads the frame at the session's
version, calls the handler, and on failure answers TWS's 322 "Error processing request" for the
request's id (-1 for requests that carry none), counts it in ``Stats.handler_errors``
(``GET /state``) and logs the traceback. Connection errors still end the session: there is
nobody left to answer.

Where a text request carries its id depends on the message; ``REQUEST_ID_FIELD`` says where
ibapi's EClient writes it (the message id is field 0), and a test checks the table against
ibapi. A request read from protobuf names it (``reqId``, ``tickerId`` or ``orderId``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

from twsbus.sim.msgids import FromClient as M
from twsbus.sim.msgids import request_name
from twsbus.sim.wire import Fields

if TYPE_CHECKING:
    from twsbus.sim.handlers import Handler
    from twsbus.sim.requests import Frame
    from twsbus.sim.session import ClientSession

log = logging.getLogger("twsbus.sim")

ERROR_PROCESSING_REQUEST = 322
#: cancelOrder drops its version field from this server version on.
V_CANCEL_ORDER_UNVERSIONED = 192

_AFTER_VERSION = (
    M.REQ_MKT_DATA, M.CANCEL_MKT_DATA, M.CANCEL_ORDER, M.REQ_EXECUTIONS, M.REQ_CONTRACT_DATA,
    M.REQ_MKT_DEPTH, M.CANCEL_MKT_DEPTH, M.EXERCISE_OPTIONS, M.CANCEL_SCANNER_SUBSCRIPTION,
    M.CANCEL_HISTORICAL_DATA, M.REQ_REAL_TIME_BARS, M.CANCEL_REAL_TIME_BARS,
    M.REQ_FUNDAMENTAL_DATA, M.CANCEL_FUNDAMENTAL_DATA, M.REQ_CALC_IMPLIED_VOLAT,
    M.REQ_CALC_OPTION_PRICE, M.CANCEL_CALC_IMPLIED_VOLAT, M.CANCEL_CALC_OPTION_PRICE,
    M.REQ_ACCOUNT_SUMMARY, M.CANCEL_ACCOUNT_SUMMARY, M.QUERY_DISPLAY_GROUPS,
    M.SUBSCRIBE_TO_GROUP_EVENTS, M.UPDATE_DISPLAY_GROUP, M.UNSUBSCRIBE_FROM_GROUP_EVENTS,
    M.REQ_POSITIONS_MULTI, M.CANCEL_POSITIONS_MULTI, M.REQ_ACCOUNT_UPDATES_MULTI,
    M.CANCEL_ACCOUNT_UPDATES_MULTI,
)
_FIRST = (
    M.PLACE_ORDER, M.REQ_HISTORICAL_DATA, M.REQ_SCANNER_SUBSCRIPTION, M.REQ_SEC_DEF_OPT_PARAMS,
    M.REQ_SOFT_DOLLAR_TIERS, M.REQ_MATCHING_SYMBOLS, M.REQ_SMART_COMPONENTS,
    M.REQ_NEWS_ARTICLE, M.REQ_HISTORICAL_NEWS, M.REQ_HEAD_TIMESTAMP, M.REQ_HISTOGRAM_DATA,
    M.CANCEL_HISTOGRAM_DATA, M.CANCEL_HEAD_TIMESTAMP, M.REQ_PNL, M.CANCEL_PNL,
    M.REQ_PNL_SINGLE, M.CANCEL_PNL_SINGLE, M.REQ_HISTORICAL_TICKS, M.REQ_TICK_BY_TICK_DATA,
    M.CANCEL_TICK_BY_TICK_DATA, M.REQ_WSH_META_DATA, M.CANCEL_WSH_META_DATA,
    M.REQ_WSH_EVENT_DATA, M.CANCEL_WSH_EVENT_DATA, M.REQ_USER_INFO, M.CANCEL_CONTRACT_DATA,
    M.CANCEL_HISTORICAL_TICKS,
)
#: Field index of the request id (or order id / ticker id) in each request that has one.
REQUEST_ID_FIELD: dict[int, int] = {
    **{int(m): 2 for m in _AFTER_VERSION},
    **{int(m): 1 for m in _FIRST},
    int(M.REPLACE_FA): 4,
}


def request_id(msg_id: int, version: int, f: Fields) -> int:
    """The id a request carries, read from a cursor just after its message id; -1 if none."""
    index = REQUEST_ID_FIELD.get(msg_id)
    if msg_id == M.CANCEL_ORDER and version >= V_CANCEL_ORDER_UNVERSIONED:
        index = 1
    if index is None:
        return -1
    f.skip(index - 1)
    try:
        return f.int(-1)
    except ValueError:
        return -1


def _id_of(s: ClientSession, frame: Frame) -> int:
    if frame.request is None:
        return request_id(frame.msg_id, s.version, Fields(frame.fields))
    for name in ("reqId", "tickerId", "orderId"):
        value = getattr(frame.request, name, None)
        if isinstance(value, int):
            return value
    return -1


class Guarded:
    """A handler wrapped so that it takes a frame, and a frame that does not read or a handler
    that raises becomes an error message for its request."""

    def __init__(self, msg_id: int, handler: Handler) -> None:
        self.msg_id = msg_id
        self.handler = handler

    def __repr__(self) -> str:
        return f"<Guarded {request_name(self.msg_id)} {getattr(self.handler, '__name__', '?')}>"

    def __call__(self, s: ClientSession, frame: Frame) -> Awaitable[None] | None:
        try:
            result = self.handler(s, frame.read(s.version))
        except ConnectionError:
            raise
        except Exception as exc:
            self._failed(s, frame, exc)
            return None
        return None if result is None else self._finish(s, frame, result)

    async def _finish(self, s: ClientSession, frame: Frame, result: Awaitable[None]) -> None:
        try:
            await result
        except ConnectionError:
            raise
        except Exception as exc:
            self._failed(s, frame, exc)

    def _failed(self, s: ClientSession, frame: Frame, exc: Exception) -> None:
        name = request_name(self.msg_id)
        s.sim.stats.handler_errors += 1
        log.exception("%s from client %s failed", name, s.client_id, exc_info=exc)
        s.error(_id_of(s, frame), ERROR_PROCESSING_REQUEST,
                f"Error processing request.-'{name}' : cause - {type(exc).__name__}: {exc}")


def install(handlers: Mapping[int, Handler | Guarded]) -> dict[int, Guarded]:
    """The table the session dispatches frames through: every handler of ``handlers`` wrapped
    (once: a handler already wrapped is kept as it is)."""
    return {msg_id: h if isinstance(h, Guarded) else Guarded(msg_id, h)
            for msg_id, h in handlers.items()}
