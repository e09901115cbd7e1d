"""The demo fleet simulator: seeded, reproducible telemetry with injected failures and precursors."""

from __future__ import annotations

from server.sim.fleet import Episode, FleetSamples, SimulatedFleet, miner_ip, simulate_fleet
from server.sim.seed import seed_store
from server.sim.settings import HARDWARE, SETTINGS, HardwareModel, SimSettings

__all__ = [
    "HARDWARE",
    "SETTINGS",
    "Episode",
    "FleetSamples",
    "HardwareModel",
    "SimSettings",
    "SimulatedFleet",
    "miner_ip",
    "seed_store",
    "simulate_fleet",
]
