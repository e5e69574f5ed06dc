"""Contract specs resolved to one contract (and so one conId), through cached contract details.

A subscription is keyed by conId, so ``{"symbol": "AAPL", "secType": "STK"}`` and
``{"conId": 265598}`` must land on the same stream. Resolution asks TWS once per distinct spec
(through the query executor, so it is paced and coalesced like any query) and keeps the answer.
A spec that matches several contracts fails with the candidates listed (409), one that matches
none with 404. Queries and subscriptions resolve the same way: ``qualify`` gives a query's
contract argument (when it is a spec, not a conId) the one conId it names before the query goes
to TWS, so ``{"symbol": "AAPL"}`` is the same 409 in ``tws.req.market_data_snapshot`` as in
``tws.sub.ticks``, never TWS's own "ambiguous" 200. ``contract_details`` is the search itself
and is never qualified.
"""

from __future__ import annotations

from typing import Any

import msgspec

from twsbus.errors import Conflict, NotFound
from twsbus.messages import Contract
from twsbus.service.queries import QueryExecutor
from twsbus.subjects import QuerySpec

#: Queries that take a spec as a search pattern: every match is the answer, not a conflict.
SEARCH_OPS = frozenset({"contract_details"})


class ContractResolver:
    def __init__(self, queries: QueryExecutor, max_entries: int = 10_000) -> None:
        self.queries = queries
        self.max_entries = max_entries
        self._cache: dict[bytes, dict[str, Any]] = {}
        self.lookups = 0

    def __repr__(self) -> str:
        return f"<ContractResolver cached={len(self._cache)} lookups={self.lookups}>"

    async def qualify(self, spec: QuerySpec, request: Any) -> Any:
        """``request`` (a query's decoded body) with its contract spec resolved to one conId;
        the spec's own fields are kept (its exchange routes the request)."""
        if not spec.takes_contract or spec.op in SEARCH_OPS:
            return request
        contract: Contract | None = getattr(request, "contract", None)
        if contract is None or contract.conId:
            return request
        found = await self.resolve(contract, timeout=request.timeout)
        qualified = msgspec.structs.replace(
            contract, conId=int(found["conId"]), exchange=contract.exchange or str(
                found.get("exchange") or ""))
        return msgspec.structs.replace(request, contract=qualified)

    async def resolve(self, spec: Contract, timeout: float | None = None) -> dict[str, Any]:
        key = msgspec.json.encode(spec)
        found = self._cache.get(key)
        if found is not None:
            return found
        self.lookups += 1
        body: dict[str, Any] = {"contract": spec}
        if timeout is not None:
            body["timeout"] = timeout
        details = await self.queries.execute("contract_details", msgspec.json.encode(body))
        if not details:
            raise NotFound(f"no contract matches {msgspec.json.encode(spec).decode()}")
        contracts = [d["contract"] for d in details]
        if len(contracts) > 1:
            listed = "; ".join(
                f"conId {c['conId']} {c.get('localSymbol', '')} {c.get('secType', '')} "
                f"{c.get('exchange', '')} {c.get('lastTradeDateOrContractMonth', '')}".strip()
                for c in contracts[:20])
            more = f" and {len(contracts) - 20} more" if len(contracts) > 20 else ""
            raise Conflict(f"the contract is ambiguous: {len(contracts)} match ({listed}{more}); "
                           "add secType, exchange, expiry, strike or right, or give the conId")
        if len(self._cache) >= self.max_entries:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = contracts[0]
        return contracts[0]
