"""Fixtures for the simulator tests: the evaluation-size demo fleet, generated once per module."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.sim import SimulatedFleet, simulate_fleet

END = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
"""A fixed end so the fleets do not depend on the clock."""


@pytest.fixture(scope="module")
def fleet() -> SimulatedFleet:
    """60 miners x 30 days, seed 7: the size of the demo fleet."""
    return simulate_fleet(60, 30, 7, end=END)
