"""Resolving the contract of a request to one instrument, the way TWS does (the contract itself
is read off the wire with the request: ``requests.Contract``)."""

from __future__ import annotations

from twsbus.sim.requests import Contract
from twsbus.sim.session import ClientSession
from twsbus.sim.universe import Instrument

NO_SECURITY_DEFINITION = 200


def resolve_one(s: ClientSession, req_id: int, contract: Contract) -> Instrument | None:
    """The single instrument a data request names, or None after sending TWS's error 200."""
    found = s.sim.universe.find(contract.spec())
    if len(found) == 1:
        return found[0]
    if not found:
        s.error(req_id, NO_SECURITY_DEFINITION,
                "No security definition has been found for the request")
    else:
        s.error(req_id, NO_SECURITY_DEFINITION,
                f"The contract description specified for {contract.symbol} is ambiguous")
    return None
