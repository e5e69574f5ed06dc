"""Every subscription kind's behaviour, by the name subjects.yaml gives it, and the check that
the two agree. What a kind is (method, parameters, subject, costs) is the file's; how it turns
TWS's callbacks into messages is its class here (``streams.py``, ``scanner.py``).
"""

from __future__ import annotations

from twsbus.service.publisher import Publisher
from twsbus.service.scanner import Scanner
from twsbus.service.streams import (
    Account,
    Bars,
    Depth,
    HistoricalBars,
    Kind,
    PnL,
    PnLSingle,
    Positions,
    TickByTick,
    Ticks,
)
from twsbus.subjects import SubscriptionSpec

KINDS: dict[str, type[Kind]] = {k.name: k for k in (
    Ticks, TickByTick, Bars, HistoricalBars, Depth, PnL, PnLSingle, Account, Positions, Scanner)}


def make_kinds(publisher: Publisher, specs: dict[str, SubscriptionSpec]) -> dict[str, Kind]:
    """Every kind of the surface with its behaviour; a kind declared without one (or one
    without a declaration) is a startup error naming it."""
    if missing := set(specs) - set(KINDS):
        raise ValueError(f"subjects.yaml declares subscription kinds without a Kind class in "
                         f"twsbus/service/kinds.py: {', '.join(sorted(missing))}")
    if extra := set(KINDS) - set(specs):
        raise ValueError(f"twsbus/service/kinds.py has Kind classes subjects.yaml does not "
                         f"declare: {', '.join(sorted(extra))}")
    return {name: KINDS[name](publisher, spec) for name, spec in specs.items()}
