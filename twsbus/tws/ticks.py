"""IB's tick types as field names: ``BID_SIZE`` (0) becomes ``bidSize``, ``LAST`` (4) ``last``.

The names come from the installed ibapi's own TickTypeEnum, camel-cased, so they follow IB's
documentation; an id the installed ibapi does not know becomes ``tick<N>``.
"""

from __future__ import annotations

import functools

from ibapi.ticktype import TickTypeEnum


def _camel(name: str) -> str:
    head, *rest = name.lower().split("_")
    return head + "".join(part.title() for part in rest)


@functools.cache
def field_name(tick_type: int) -> str:
    to_str = getattr(TickTypeEnum, "toStr", None) or getattr(TickTypeEnum, "to_str", None)
    try:
        name = to_str(tick_type) if to_str else TickTypeEnum.idx2name[tick_type]
    except (KeyError, IndexError, AttributeError):
        name = None
    if not name or name.upper() in ("NOTFOUND", "UNKNOWN"):
        return f"tick{tick_type}"
    return _camel(str(name))


#: From this server version TWS sends US stocks' volume ticks in shares; before, in lots of 100
#: (IB's tick types table: "US Stocks: multiplier 100"; ibapi's
#: MIN_SERVER_VER_MARKET_DATA_VOLUMES_IN_SHARES).
VOLUMES_IN_SHARES = 220
#: The volume tick types: VOLUME, AVG_VOLUME, the 3/5/10-minute volumes, DELAYED_VOLUME.
VOLUME_TICKS = frozenset({8, 21, 63, 64, 65, 74})


def volume_scale(server_version: int | None, sec_type: str | None, currency: str | None) -> int:
    """What to multiply a volume tick by so that it is in shares on every server version."""
    if (server_version or VOLUMES_IN_SHARES) >= VOLUMES_IN_SHARES:
        return 1
    return 100 if sec_type == "STK" and currency == "USD" else 1
