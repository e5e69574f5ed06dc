"""The ``scanner`` kind: reqScannerSubscription as a shared stream of ranked lists.

TWS answers a scanner subscription with a burst of ``scannerData`` rows closed by
``scannerDataEnd``, and repeats the whole scan every few seconds until it is cancelled. The
kind gathers a burst and publishes it at its end as one message, the whole ranked list (latest
list wins, like the depth book), which is also the stream's image. The subject carries the scan
code and the location (``tws.scanner.TOP_PERC_GAIN.STK.US.MAJOR``); the other filters must agree
with the live stream. Each stream costs one of TWS's 10 scanner subscriptions (``scanner``
budget, ``max_scanner``). Like every kind, it registers itself by its ``name``
(``Kind.registry``).
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar

from twsbus.messages import ScannerSubscription
from twsbus.service.streams import Kind, Stream
from twsbus.tws.callbacks import Event

#: What a scanner row's contract keeps of IB's Contract (the fields TWS fills in there).
_CONTRACT_FIELDS = ("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike",
                    "right", "exchange", "currency", "localSymbol", "tradingClass")
_ROW_STRINGS = ("distance", "benchmark", "projection", "legsStr")


class Scanner(Kind):
    name: ClassVar[str] = "scanner"
    ready_on: ClassVar[str | None] = "scannerDataEnd"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        #: The rows of a scan still arriving, per stream (until its scannerDataEnd).
        self._burst: weakref.WeakKeyDictionary[Stream, list[dict[str, Any]]] = \
            weakref.WeakKeyDictionary()

    def request(self, stream: Stream) -> dict[str, Any]:
        p = stream.params
        subscription = ScannerSubscription(
            instrument=p["instrument"], locationCode=p["locationCode"], scanCode=p["scanCode"],
            numberOfRows=p["numberOfRows"] or None, abovePrice=p["abovePrice"] or None,
            belowPrice=p["belowPrice"] or None, aboveVolume=p["aboveVolume"] or None,
            marketCapAbove=p["marketCapAbove"] or None,
            marketCapBelow=p["marketCapBelow"] or None, stockTypeFilter=p["stockTypeFilter"])
        return {"subscription": subscription, "scannerSubscriptionOptions": [],
                "scannerSubscriptionFilterOptions": p["scannerSubscriptionFilterOptions"]}

    def on_event(self, stream: Stream, event: Event) -> None:
        if event.name == "scannerData":
            self._burst.setdefault(stream, []).append(_row(event.data))
        elif event.name == "scannerDataEnd":
            rows = sorted(self._burst.pop(stream, []), key=lambda r: r["rank"])
            stream.image["rows"] = rows
            self.publisher.merge(stream.box, {"rows": rows})



def _row(data: dict[str, Any]) -> dict[str, Any]:
    """One scannerData callback as a published row: IB's names, empty values left out."""
    details = data.get("contractDetails") or {}
    contract = details.get("contract") or {}
    row: dict[str, Any] = {"rank": data["rank"], "contract": {
        k: contract[k] for k in _CONTRACT_FIELDS if contract.get(k) not in (None, "", 0, 0.0)}}
    if details.get("marketName"):
        row["marketName"] = details["marketName"]
    row.update({k: data[k] for k in _ROW_STRINGS if data.get(k)})
    return row
