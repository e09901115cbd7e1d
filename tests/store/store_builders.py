"""Builders for the store tests: grid times and samples with healthy defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.records import Sample

T0 = datetime(2025, 1, 1, tzinfo=UTC)
"""A grid-aligned start time used by the tests."""


def at(step: int, *, seconds: int = 0) -> datetime:
    """T0 plus `step` 5-minute intervals (plus seconds)."""
    return T0 + timedelta(minutes=5 * step, seconds=seconds)


def sample(miner_id: str, step: int, **readings: object) -> Sample:
    """A sample with healthy defaults; readings override them (None for a missing reading)."""
    values: dict[str, object] = {
        "hashrate_ths": 100.0,
        "temperature_c": 70.0,
        "fan_speed_rpm": 4000.0,
        "power_w": 3200.0,
        "accepted_shares": 1000 * (step + 1),
        "rejected_shares": 5 * (step + 1),
    }
    values.update(readings)
    return Sample(miner_id=miner_id, timestamp=at(step), **values)  # type: ignore[arg-type]
