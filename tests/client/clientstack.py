"""Shared by the client tests (named apart from conftest: tests/daemon has a conftest too)."""

from __future__ import annotations

from waiting import eventually

from twsbus.testing import Stack

#: The client tests' stack lingers only this long, so tests can watch a released lease cancel
#: its TWS request.
LINGER = 0.5
DAEMON_ENV = {"TWSBUS_LINGER": str(LINGER)}

ClientStack = Stack  # the one stack definition (twsbus.testing)

__all__ = ["DAEMON_ENV", "LINGER", "ClientStack", "eventually"]
