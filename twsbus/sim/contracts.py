"""Reading the contract block of a request, and resolving it to one instrument the way TWS does.

Most requests carry the same run of contract fields (conId, symbol, secType, expiry, strike, right,
multiplier, exchange, primaryExchange, currency, localSymbol, tradingClass); some leave out
primaryExchange or add includeExpired. ``read_contract`` reads that run into a dict keyed by IB's
field names, which ``Universe.find`` understands.
"""

from __future__ import annotations

from typing import Any

from twsbus.sim.session import ClientSession
from twsbus.sim.universe import Instrument
from twsbus.sim.wire import Fields

NO_SECURITY_DEFINITION = 200


def read_contract(
    f: Fields,
    *,
    con_id: bool = True,
    primary_exchange: bool = True,
    trading_class: bool = True,
    include_expired: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if con_id:
        spec["conId"] = f.int()
    spec["symbol"] = f.str()
    spec["secType"] = f.str()
    spec["lastTradeDateOrContractMonth"] = f.str()
    spec["strike"] = f.float()
    spec["right"] = f.str()
    spec["multiplier"] = f.str()
    spec["exchange"] = f.str()
    if primary_exchange:
        spec["primaryExchange"] = f.str()
    spec["currency"] = f.str()
    spec["localSymbol"] = f.str()
    if trading_class:
        spec["tradingClass"] = f.str()
    if include_expired:
        spec["includeExpired"] = f.bool()
    return spec


def resolve_one(s: ClientSession, req_id: int, spec: dict[str, Any]) -> Instrument | None:
    """The single instrument a data request names, or None after sending TWS's error 200."""
    found = s.sim.universe.find(spec)
    if len(found) == 1:
        return found[0]
    if not found:
        s.error(req_id, NO_SECURITY_DEFINITION,
                "No security definition has been found for the request")
    else:
        s.error(req_id, NO_SECURITY_DEFINITION,
                f"The contract description specified for {spec.get('symbol')} is ambiguous")
    return None
