"""The TWS simulator: `twsbus sim`, and an importable fixture (see twsbus.testing)."""

from twsbus.sim.server import SimConfig, Simulator

__all__ = ["SimConfig", "Simulator"]
