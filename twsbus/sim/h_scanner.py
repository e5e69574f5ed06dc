"""Market scanner subscriptions: reqScannerSubscription and cancelScannerSubscription.

A scan ranks the universe's US stocks by its scan code (TOP_PERC_GAIN / TOP_PERC_LOSE by the
change from the previous close, MOST_ACTIVE / HOT_BY_VOLUME by volume, HIGH_OPT_IMP_VOLAT by a
fixed stand-in), filtered by price and volume, and sends the rows as one scannerData message
(which IB's client turns into scannerData callbacks and a scannerDataEnd). As at TWS, the scan
runs again every few seconds (``SCAN_TICKS`` tick intervals) until cancelled, over the market
model's shared tape, so ranks follow the quotes and are deterministic for a seed. TWS's limits:
10 scanner subscriptions at once per client (the 11th gets 322 "Only 10 simultaneous API scanner
subscriptions are allowed"), 50 rows per scan. The protobuf form (from 210) is in
``pb_reference``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from twsbus.sim.msgids import FromClient, ToClient
from twsbus.sim.requests import reference as rq
from twsbus.sim.session import ClientSession, Subscription
from twsbus.sim.universe import Instrument

SCANNER_LIMIT = 10
MAX_ROWS = 50
#: A scan every this many tick intervals (3 s by default, 0.6 s in tests).
SCAN_TICKS = 12
HMDS_ERROR = 162
REQUEST_REFUSED = 322
VALIDATION_ERROR = 321

#: Location code -> the primary exchanges it covers (None: every US stock).
LOCATIONS: dict[str, tuple[str, ...] | None] = {
    "STK.US": None, "STK.US.MAJOR": None, "STK.NASDAQ": ("NASDAQ",),
    "STK.NYSE": ("NYSE",), "STK.ARCA": ("ARCA",),
}


def _change(s: ClientSession, inst: Instrument) -> float:
    q = s.sim.market.quote(inst.con_id)
    return (q.last - q.close) / q.close if q.close else 0.0


#: Scan code -> sort key (highest first).
SCANS: dict[str, Callable[[ClientSession, Instrument], float]] = {
    "TOP_PERC_GAIN": _change,
    "TOP_PERC_LOSE": lambda s, i: -_change(s, i),
    "MOST_ACTIVE": lambda s, i: s.sim.market.quote(i.con_id).volume,
    "HOT_BY_VOLUME": lambda s, i: s.sim.market.quote(i.con_id).last_size,
    "HIGH_OPT_IMP_VOLAT": lambda s, i: (i.con_id * 2654435761) % 1000,
}


class _Scan:
    """One scanner subscription: its filters, and the rows of one pass over the universe."""

    def __init__(self, s: ClientSession, req_id: int, code: str, location: str, rows: int,
                 above: float | None, below: float | None, volume: float | None) -> None:
        self.s, self.req_id, self.code = s, req_id, code
        self.rows = MAX_ROWS if rows <= 0 else min(rows, MAX_ROWS)
        self.above, self.below, self.volume = above, below, volume
        exchanges = LOCATIONS[location]
        self.stocks = [i for i in s.sim.universe.instruments if i.sec_type == "STK"
                       and i.currency == "USD"
                       and (exchanges is None or i.primary_exchange in exchanges)]

    def _passes(self, inst: Instrument) -> bool:
        q = self.s.sim.market.quote(inst.con_id)
        return ((self.above is None or q.last >= self.above)
                and (self.below is None or q.last <= self.below)
                and (self.volume is None or q.volume >= self.volume))

    def send(self) -> None:
        key = SCANS[self.code]
        ranked = sorted((i for i in self.stocks if self._passes(i)),
                        key=lambda i: (-key(self.s, i), i.con_id))[:self.rows]
        out: list[object] = [ToClient.SCANNER_DATA, 3, self.req_id, len(ranked)]
        for rank, inst in enumerate(ranked):
            out += [rank, inst.con_id, inst.symbol, inst.sec_type, inst.expiry, inst.strike,
                    inst.right, inst.exchange, inst.currency, inst.local_symbol,
                    inst.trading_class, inst.trading_class, "", "", "", ""]
        self.s.send(*out)

    async def run(self, sub: Subscription) -> None:
        interval = max(0.001, self.s.sim.config.tick_interval)
        market = self.s.sim.market
        while True:
            for _ in range(SCAN_TICKS):
                await asyncio.sleep(interval)
                for inst in self.stocks:
                    market.advance(inst.con_id, interval)
            self.send()


def req_scanner_subscription(s: ClientSession, r: rq.ReqScannerSubscription) -> None:
    req_id, want = r.reqId, r.subscription
    rows, instrument, location, code = (want.numberOfRows, want.instrument, want.locationCode,
                                        want.scanCode)
    above, below, volume = want.abovePrice, want.belowPrice, want.aboveVolume
    filters = r.scannerSubscriptionFilterOptions
    if req_id in s.subs:
        s.error(req_id, REQUEST_REFUSED, "Error processing request.-'bd' : cause - Duplicate "
                "ticker ID for API scanner subscription")
        return
    if len(s.subs_of("scanner")) >= SCANNER_LIMIT:
        s.error(req_id, REQUEST_REFUSED, "Error processing request.-'bd' : cause - Only "
                f"{SCANNER_LIMIT} simultaneous API scanner subscriptions are allowed.")
        return
    if instrument != "STK" or location not in LOCATIONS:
        s.error(req_id, HMDS_ERROR, "Historical Market Data Service error message:Market "
                "Scanner is not configured for one of the chosen locations.")
        return
    if code not in SCANS:
        s.error(req_id, HMDS_ERROR, "Historical Market Data Service error message:Scanner "
                f"type with code {code} is not supported")
        return
    scan = _Scan(s, req_id, code, location, rows, above, below, volume)
    scan.send()
    s.open_sub("scanner", req_id, run=scan.run, code=code, location=location,
               filters=dict(filters))


def cancel_scanner_subscription(s: ClientSession, r: rq.CancelScannerSubscription) -> None:
    s.close_sub(r.reqId, "scanner")


HANDLERS = {
    FromClient.REQ_SCANNER_SUBSCRIPTION: req_scanner_subscription,
    FromClient.CANCEL_SCANNER_SUBSCRIPTION: cancel_scanner_subscription,
}
