"""Fixtures shared by the simulator tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ibapi.decoder import Decoder


@pytest.fixture
def strict_decoding(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail on messages with fields left over after ibapi decoded them: its decoders stop
    reading where they expect a message to end, so a surplus field would otherwise pass."""
    leftovers: list[str] = []
    for msg_id, info in Decoder.msgId2handleInfo.items():
        if info.processMeth is None:
            continue

        def checked(dec: Any, fields: Any, _orig: Any = info.processMeth,
                    _id: int = msg_id) -> None:
            it = iter(list(fields))
            _orig(dec, it)
            rest = list(it)
            if rest:
                leftovers.append(f"message {_id}: {rest!r} left over")

        monkeypatch.setattr(info, "processMeth", checked)
    yield leftovers
    assert not leftovers
