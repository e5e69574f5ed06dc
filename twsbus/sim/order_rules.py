"""What TWS refuses in a placeOrder before an order exists, and with which error.

``refusal(p, accounts)`` checks the fields of a parsed placeOrder and returns the error TWS
answers for the first thing wrong, or None. The codes are IB's documented ones:

==========================================  ====  =============================================
missing or unknown action                   321   "Error validating request..." (TWS checks
                                                  the request itself; nothing reaches IB)
quantity empty, zero, or IB's unset          434   "The order size cannot be zero."
(``UNSET_DECIMAL`` = 2**127-1, which
ibapi 10.x sends for an Order whose
quantity was never set)
negative quantity                           201   "Order rejected - reason:..."
order type IB does not know                 387   "Unsupported order type for this exchange
                                                  and security type."
order type IB knows, the simulator does     201   (the simulator matches MKT, LMT, STP and
not model                                         STP LMT only)
limit / stop price missing, unknown         201   "Order rejected - reason:..."
account
==========================================  ====  =============================================

Fields that cannot be read at all (``lmtPrice`` "abc") never get here: the parser answers 320,
"Error reading request", as TWS's reader does (``h_orders.py``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

from twsbus.sim.wire import UNSET_DOUBLE

SUPPORTED_TYPES = ("MKT", "LMT", "STP", "STP LMT")
#: ibapi's UNSET_DECIMAL: an Order's quantity before anyone set it.
UNSET_DECIMAL = Decimal(2**127 - 1)
#: Order types IB accepts somewhere (IB's order type list), so anything else is error 387.
IB_ORDER_TYPES = frozenset({
    "MKT", "LMT", "STP", "STP LMT", "STPLMT", "TRAIL", "TRAIL LIMIT", "TRAILLMT", "TRAIL MIT",
    "TRAIL LIT", "MIT", "LIT", "MTL", "MKT PRT", "STP PRT", "MOC", "LOC", "MOO", "LOO",
    "REL", "REL + LMT", "REL + MKT", "LMT + MKT", "PASSV REL", "PEG MKT", "PEG MID", "PEG BEST",
    "PEG BENCH", "PEG STK", "PEG PRIM", "PEGMKT", "PEGMID", "PEGBEST", "PEGBENCH", "PEGSTK",
    "VOL", "MIDPRICE", "SNAP MKT", "SNAP MID", "SNAP PRIM", "BOX TOP", "AUC", "VWAP", "QUOTE",
    "ALGO", "ADJUST", "ALERT", "OCA", "SCALE", "FUND", "CASH",
})

INVALID_REQUEST = 321
ORDER_SIZE_ZERO = 434
UNSUPPORTED_ORDER_TYPE = 387
ORDER_REJECTED = 201


class Refusal(NamedTuple):
    code: int
    message: str


def rejected(reason: str) -> Refusal:
    return Refusal(ORDER_REJECTED, f"Order rejected - reason:{reason}")


def refusal(p: dict[str, Any], accounts: list[str]) -> Refusal | None:
    """The error TWS answers for this placeOrder, or None when it may go ahead. Normalises
    ``action`` (SSHORT sells) as a side effect."""
    action = str(p["action"]).upper()
    p["action"] = "SELL" if action == "SSHORT" else action
    if p["action"] not in ("BUY", "SELL"):
        return Refusal(INVALID_REQUEST, "Error validating request.-'action' : cause - "
                                        f"Invalid order action '{p['action']}'")
    qty: Decimal = p["totalQuantity"]
    if qty == 0 or qty >= UNSET_DECIMAL:
        return Refusal(ORDER_SIZE_ZERO, "The order size cannot be zero.")
    if qty < 0:
        return rejected(f"Invalid order size {qty}")
    order_type = str(p["orderType"]).upper()
    if order_type not in IB_ORDER_TYPES:
        return Refusal(UNSUPPORTED_ORDER_TYPE,
                       "Unsupported order type for this exchange and security type.")
    if order_type not in SUPPORTED_TYPES:
        return rejected(f"Order type {p['orderType']!r} is not supported by this simulator")
    if order_type in ("LMT", "STP LMT") and p["lmtPrice"] == UNSET_DOUBLE:
        return rejected("Limit price is missing")
    if order_type in ("STP", "STP LMT") and p["auxPrice"] == UNSET_DOUBLE:
        return rejected("Stop price is missing")
    if p["account"] and p["account"] not in accounts:
        return rejected(f"Invalid account code {p['account']}")
    return None
