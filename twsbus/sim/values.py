"""What TWS's values look like at a negotiated server version, where a version changes a value
and not a layout: sizes and quantities, time stamps, volume units, odd-lot quotes.

- 163 (``MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT``): sizes and order quantities are decimal
  text (before, whole numbers), and execution / completion times name their time zone.
- 214 (``MIN_SERVER_VER_ADD_Z_SUFFIX_TO_UTC_DATE_TIME``): a date-time TWS sends in UTC, IB's
  ``yyyymmdd-hh:mm:ss`` form, ends in ``Z`` (``20261118-14:30:00Z``). Times TWS sends in a named
  zone (``20261118 09:30:00 US/Eastern``) and epoch seconds are unchanged.
- 220 (``MIN_SERVER_VER_MARKET_DATA_VOLUMES_IN_SHARES``): the volume ticks of US stocks (VOLUME,
  AVG_VOLUME, the 3/5/10-minute volumes and DELAYED_VOLUME) are in shares; before, in lots of 100
  (IB's tick table: "US Stocks: multiplier 100"). Bid, ask and last sizes were already shares.
- 225 (``MIN_SERVER_VER_ODD_LOT_BID_ASK_QUOTES``): generic tick 787 subscribes the odd-lot quote,
  ticks 105-110 (ODD_LOT_BID/ASK prices, their sizes, their exchanges); before, 787 is not a
  legal generic tick (error 321).

222 (fractional last sizes) and 224 (price precision from the security definition) change
nothing the simulator sends: its sizes are whole round lots and its prices already sit on the
instrument's tick grid, printed with the tick's decimals, at every version.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT = 163
MIN_SERVER_VER_ADD_Z_SUFFIX_TO_UTC_DATE_TIME = 214
MIN_SERVER_VER_MARKET_DATA_VOLUMES_IN_SHARES = 220
MIN_SERVER_VER_FRACTIONAL_LAST_SIZE = 222
MIN_SERVER_VER_USE_PRECISION_FROM_SEC_DEF = 224
MIN_SERVER_VER_ODD_LOT_BID_ASK_QUOTES = 225

#: Tick types whose values are volumes (lots of 100 for US stocks before 220).
VOLUME_TICKS = frozenset({8, 21, 63, 64, 65, 74})
#: The generic tick that subscribes odd-lot quotes, and the ticks it brings.
ODD_LOT_GENERIC_TICK = 787
ODD_LOT_BID, ODD_LOT_ASK, ODD_LOT_BID_SIZE, ODD_LOT_ASK_SIZE = 105, 106, 107, 108
ODD_LOT_BID_EXCH, ODD_LOT_ASK_EXCH = 109, 110


def size_field(version: int, size: float) -> float | int:
    """A size: decimal from version 163; before, clients parse sizes as integers."""
    return size if version >= MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT else int(size)


def qty(version: int, value: Decimal) -> str:
    """An order or execution quantity: whole numbers before fractional sizes (163), decimal
    text from then on."""
    if version < MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT:
        return str(int(value))
    return format(value.normalize(), "f")


def utc_stamp(version: int, epoch: float) -> str:
    """A UTC date-time as TWS prints it: ``yyyymmdd-hh:mm:ss``, with ``Z`` from 214."""
    text = f"{dt.datetime.fromtimestamp(int(epoch), dt.UTC):%Y%m%d-%H:%M:%S}"
    return text + "Z" if version >= MIN_SERVER_VER_ADD_Z_SUFFIX_TO_UTC_DATE_TIME else text


_EASTERN = ZoneInfo("US/Eastern")


def tws_time(version: int, ts: float, zone: str = "US/Eastern") -> str:
    """An execution / completion time as TWS prints it, in its log-in time zone: a named zone
    (newer TWS names it), or for UTC IB's ``yyyymmdd-hh:mm:ss`` form (``Z`` from 214)."""
    if zone == "UTC":
        return utc_stamp(version, ts)
    stamp = dt.datetime.fromtimestamp(ts, _EASTERN if zone == "US/Eastern" else ZoneInfo(zone))
    if version >= MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT:
        return stamp.strftime("%Y%m%d %H:%M:%S") + " US/Eastern"
    return stamp.strftime("%Y%m%d  %H:%M:%S")


def lots_of_100(sec_type: str, currency: str) -> bool:
    """Whether TWS reports this instrument's volumes in lots of 100 before version 220."""
    return sec_type == "STK" and currency == "USD"


def volume(version: int, sec_type: str, currency: str, shares: float) -> float:
    """A volume tick's value: shares from 220, lots of 100 for US stocks before."""
    if version >= MIN_SERVER_VER_MARKET_DATA_VOLUMES_IN_SHARES or not lots_of_100(sec_type,
                                                                                 currency):
        return shares
    lots = shares / 100
    return int(lots) if lots == int(lots) else lots


def odd_lots_supported(version: int) -> bool:
    return version >= MIN_SERVER_VER_ODD_LOT_BID_ASK_QUOTES
