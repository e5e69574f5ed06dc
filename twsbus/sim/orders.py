"""The simulator's order book: order ids, open orders, executions, deterministic matching."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twsbus.sim.server import Simulator


class OrderBook:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._next_id = 1

    def next_order_id(self) -> int:
        return self._next_id
