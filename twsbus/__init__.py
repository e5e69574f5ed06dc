"""twsbus: one TWS / IB Gateway connection, the whole TWS API on NATS.

The public Python API is re-exported here; everything else is private to the package.
"""

from twsbus.errors import (
    BadRequest,
    BudgetExhausted,
    Conflict,
    InternalError,
    NotConnected,
    NotFound,
    PayloadTooLarge,
    Timeout,
    TwsBusError,
    TwsError,
)

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "BudgetExhausted",
    "Conflict",
    "InternalError",
    "NotConnected",
    "NotFound",
    "PayloadTooLarge",
    "Timeout",
    "TwsBusError",
    "TwsError",
    "__version__",
]
