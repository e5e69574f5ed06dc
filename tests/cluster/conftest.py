"""Fixtures for the cluster tests: three nats-servers clustered on loopback, a fresh one per test
(every test kills a member), and the simulator from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from twsbus.testing import NatsCluster


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with NatsCluster(size=3, jetstream=True) as c:
        yield c
