"""The processes a daemon test runs against (named apart from conftest): the one stack
definition, ``twsbus.testing.Stack``."""

from __future__ import annotations

from twsbus.testing import Stack

__all__ = ["Stack"]
