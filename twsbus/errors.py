"""The one error table: twsbus errors, their stable numeric codes, and IB's codes mapped onto them.

Every error a user can see is a ``TwsBusError`` subclass with an HTTP-like ``code``. On NATS it
travels as the micro-service headers ``Nats-Service-Error-Code`` / ``Nats-Service-Error`` *and* as
a JSON body ``{"error": {"code": ..., "message": ..., "tws_code": ...}}`` (``error_reply``), so
``nats req`` shows it and programs can parse it. IB's numeric error codes are translated here and
nowhere else (``from_tws``); what each IB code means otherwise (status or failure, link or
request) is ``tws.codes``, the one table of IB's codes.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from twsbus.tws.codes import IbCode


class TwsBusError(Exception):
    code: ClassVar[int] = 500

    def __init__(self, message: str, *, tws_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tws_code = tws_code
        #: Seconds after which the same request may succeed (429s that know it).
        self.retry_after: float | None = None

    def __repr__(self) -> str:
        extra = f", tws_code={self.tws_code}" if self.tws_code is not None else ""
        return f"{type(self).__name__}({self.message!r}{extra})"


class BadRequest(TwsBusError):
    code = 400


class Forbidden(TwsBusError):
    """A configured guard (order limits, allowed accounts) refuses the request."""

    code = 403


class NotFound(TwsBusError):
    """Unknown contract, lease or subject."""

    code = 404


class Timeout(TwsBusError):
    code = 408


class Conflict(TwsBusError):
    code = 409


class PayloadTooLarge(TwsBusError):
    code = 413


class BudgetExhausted(TwsBusError):
    """A market-data line, depth or pacing budget is used up."""

    code = 429


class InternalError(TwsBusError):
    code = 500


class TwsError(TwsBusError):
    """TWS refused or failed the request; ``tws_code`` holds IB's code."""

    code = 502


class NotConnected(TwsBusError):
    code = 503


# IB codes that mean something more specific than "TWS said no" (named in ``tws.codes``).
_TWS_CODE_CLASS: dict[int, type[TwsBusError]] = {
    IbCode.NO_SECURITY_DEFINITION: NotFound,  # or ambiguous: 409, see from_tws
    IbCode.MAX_RATE_EXCEEDED: BudgetExhausted,
    IbCode.MAX_TICKERS: BudgetExhausted,
    IbCode.MAX_DEPTH_REQUESTS: BudgetExhausted,
    IbCode.DUPLICATE_ORDER_ID: Conflict,
    IbCode.CLIENT_ID_IN_USE: Conflict,
    IbCode.COMPETING_LIVE_SESSION: Conflict,
    IbCode.VALIDATION_ERROR: BadRequest,
    IbCode.PROCESSING_ERROR: BadRequest,
    IbCode.NOT_CONNECTED: NotConnected,
    IbCode.CONNECTIVITY_LOST: NotConnected,
}


def from_tws(tws_code: int, message: str) -> TwsBusError:
    if tws_code == IbCode.NO_SECURITY_DEFINITION and "ambiguous" in message.lower():
        # IB's 200 is both "no security definition" (404) and "the description is ambiguous"
        # (409: several contracts match, as the daemon's own resolution says with candidates).
        return Conflict(message, tws_code=tws_code)
    cls = _TWS_CODE_CLASS.get(tws_code, TwsError)
    return cls(message, tws_code=tws_code)


class ErrorBody(msgspec.Struct, omit_defaults=True):
    code: int
    message: str
    tws_code: int | None = None
    retry_after: float | None = None


class ErrorReply(msgspec.Struct):
    error: ErrorBody


#: An error message on the wire is cut here: whatever a request held, its error reply is small.
MAX_MESSAGE = 400


def bounded(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` cut to ``limit`` characters, with control characters (CR, LF, tab...) as
    spaces: it travels in a NATS header, where a line break would end the header block."""
    if len(message) > limit:
        message = message[:limit - 3] + "..."
    if not message.isprintable():
        message = "".join(c if c.isprintable() else " " for c in message)
    return message


def error_reply(err: TwsBusError) -> tuple[bytes, dict[str, str]]:
    """The body and NATS service headers of an error answer, both bounded."""
    message = bounded(err.message)
    body = msgspec.json.encode(ErrorReply(ErrorBody(err.code, message, err.tws_code,
                                                    err.retry_after)))
    headers = {"Nats-Service-Error-Code": str(err.code), "Nats-Service-Error": message}
    return body, headers


def parse_error(data: bytes) -> TwsBusError | None:
    """Turn an error body back into an exception (the client library uses this)."""
    try:
        reply = msgspec.json.decode(data, type=ErrorReply)
    except msgspec.ValidationError:
        return None
    except msgspec.DecodeError:
        return None
    cls = next((c for c in _ALL if c.code == reply.error.code), TwsBusError)
    err = cls(reply.error.message, tws_code=reply.error.tws_code)
    err.retry_after = reply.error.retry_after
    return err


_ALL: tuple[type[TwsBusError], ...] = (
    BadRequest, Forbidden, NotFound, Timeout, Conflict, PayloadTooLarge, BudgetExhausted,
    InternalError, TwsError, NotConnected,
)
