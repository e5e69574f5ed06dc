"""Contract specs resolved to one contract (and so one conId), through cached contract details.

A subscription is keyed by conId, so ``{"symbol": "AAPL", "secType": "STK"}`` and
``{"conId": 265598}`` must land on the same stream. Resolution asks TWS once per distinct spec
(through the query executor, so it is paced and coalesced like any query) and keeps the answer.
A spec that matches several contracts fails with the candidates listed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from twsbus.errors import Conflict, NotFound
from twsbus.messages import Contract
from twsbus.service.queries import QueryExecutor


class ContractResolver:
    def __init__(self, queries: QueryExecutor, max_entries: int = 10_000) -> None:
        self.queries = queries
        self.max_entries = max_entries
        self._cache: dict[bytes, dict[str, Any]] = {}
        self.lookups = 0

    def __repr__(self) -> str:
        return f"<ContractResolver cached={len(self._cache)} lookups={self.lookups}>"

    async def resolve(self, spec: Contract) -> dict[str, Any]:
        key = msgspec.json.encode(spec)
        found = self._cache.get(key)
        if found is not None:
            return found
        self.lookups += 1
        details = await self.queries.execute(
            "contract_details", msgspec.json.encode({"contract": spec}))
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
