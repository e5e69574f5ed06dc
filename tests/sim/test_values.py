"""The per-version value rules (``sim.values``) on their own: the UTC stamp form around 214 and the
volume unit around 220, for the handlers that share them (executions, head timestamps, ticks)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from twsbus.sim import values

NOON = datetime(2026, 11, 18, 12, 0, 5, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("version", "text"), [(157, "20261118-12:00:05"),
                                               (213, "20261118-12:00:05"),
                                               (214, "20261118-12:00:05Z"),
                                               (225, "20261118-12:00:05Z")])
def test_utc_stamps_gain_a_z_from_214(version: int, text: str) -> None:
    assert values.utc_stamp(version, NOON) == text
    assert values.utc_stamp(version, NOON + 0.9) == text  # whole seconds, as TWS prints them


@pytest.mark.parametrize(("version", "sec_type", "currency", "expected"), [
    (219, "STK", "USD", 123), (220, "STK", "USD", 12_300), (225, "STK", "USD", 12_300),
    (200, "FUT", "USD", 12_300), (200, "STK", "EUR", 12_300), (200, "CASH", "USD", 12_300)])
def test_us_stock_volumes_are_lots_of_100_before_220(version: int, sec_type: str,
                                                     currency: str, expected: float) -> None:
    assert values.volume(version, sec_type, currency, 12_300) == expected


def test_a_volume_that_is_not_whole_lots_keeps_its_fraction() -> None:
    assert values.volume(200, "STK", "USD", 12_345) == 123.45


def test_odd_lots_are_legal_from_225() -> None:
    assert not values.odd_lots_supported(224) and values.odd_lots_supported(225)
