"""The option calculator's maths: Black-Scholes prices and greeks without dividends, and the
implied volatility that reproduces a price (bisection). ``h_reference`` answers
calculateImpliedVolatility / calculateOptionPrice with these; nothing here knows the wire.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

__all__ = ["RATE", "black_scholes", "implied_vol", "years_to"]

#: The risk-free rate the simulator prices options with.
RATE = 0.04


def years_to(expiry: str) -> float:
    """Years from now to an option's expiry (21:00 UTC on the day), at least one day."""
    end = datetime.strptime(expiry + " 21:00", "%Y%m%d %H:%M").replace(tzinfo=UTC)
    return max((end.timestamp() - time.time()) / (365.0 * 86400), 1.0 / 365)


def _ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_scholes(call: bool, spot: float, strike: float, t: float,
                  vol: float) -> tuple[float, float, float, float, float]:
    """(price, delta, gamma, vega, theta per day) without dividends."""
    sq = math.sqrt(t)
    d1 = (math.log(spot / strike) + (RATE + vol * vol / 2) * t) / (vol * sq)
    d2 = d1 - vol * sq
    pdf = math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi)
    disc = math.exp(-RATE * t)
    if call:
        price = spot * _ncdf(d1) - strike * disc * _ncdf(d2)
        delta = _ncdf(d1)
        theta = -spot * pdf * vol / (2 * sq) - RATE * strike * disc * _ncdf(d2)
    else:
        price = strike * disc * _ncdf(-d2) - spot * _ncdf(-d1)
        delta = _ncdf(d1) - 1
        theta = -spot * pdf * vol / (2 * sq) + RATE * strike * disc * _ncdf(-d2)
    return price, delta, pdf / (spot * vol * sq), spot * pdf * sq / 100, theta / 365


def implied_vol(call: bool, spot: float, strike: float, t: float, price: float) -> float | None:
    lo, hi = 1e-4, 5.0
    if not (black_scholes(call, spot, strike, t, lo)[0] <= price
            <= black_scholes(call, spot, strike, t, hi)[0]):
        return None
    for _ in range(100):
        mid = (lo + hi) / 2
        if black_scholes(call, spot, strike, t, mid)[0] < price:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
