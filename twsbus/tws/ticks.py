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
