"""Tiny synthetic fleets built in the test: real numbers, real models, no mocks.

A uniquely named module (not conftest) so that `from synthetic_fleet import ...` cannot pick up
another folder's conftest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from server.records import (
    EventSource,
    FailureEvent,
    FailureMode,
    Miner,
    MinerSeries,
    PlannedState,
    PlannedStateKind,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)


@dataclass
class Fleet:
    series: dict[str, MinerSeries]
    miners: dict[str, Miner]
    failures: list[FailureEvent]
    planned: list[PlannedState]


def flat_series(miner_id: str, rows: int, rng: np.random.Generator | None = None) -> MinerSeries:
    """A healthy miner's features (FEATURE_COLUMNS order) on a 5-min grid starting at T0."""
    noise = (rng or np.random.default_rng(0)).normal(size=(rows, 11)).astype(np.float32)
    base = np.array([100, 65, 4000, 3250, 30, 0.1, 0.003, 0.0308, 0, 0.02, 0], dtype=np.float32)
    scale = np.array([1, 0.5, 40, 15, 3, 0.2, 0.002, 0.0003, 0.2, 0.005, 1e-4], dtype=np.float32)
    values = base + noise * scale
    stamps = np.datetime64(T0.replace(tzinfo=None), "s") + np.arange(rows) * np.timedelta64(300, "s")
    return MinerSeries(miner_id, stamps, values, np.ones(rows, dtype=bool))


def at(row: int) -> datetime:
    """The time of grid row `row`."""
    return T0 + row * STEP


def failure(
    miner_id: str, row: int, repaired_row: int | None, mode: FailureMode = FailureMode.FAN
) -> FailureEvent:
    return FailureEvent(
        event_id=f"{miner_id}-{row}",
        miner_id=miner_id,
        occurred_at=at(row),
        mode=mode,
        source=EventSource.SIMULATOR,
        repaired_at=at(repaired_row) if repaired_row is not None else None,
    )


def make_fleet(n_miners: int = 6, days: float = 4.0, seed: int = 0) -> Fleet:
    """Miners whose failures are preceded by ~12 h of rising temperature and falling fan speed."""
    rng = np.random.default_rng(seed)
    rows = int(days * 288)
    series, miners, failures, planned = {}, {}, [], []
    for m in range(n_miners):
        miner_id = f"10.0.0.{m + 1}"
        one = flat_series(miner_id, rows, rng)
        miners[miner_id] = Miner(miner_id, "S19", "Bitmain", 100.0, 3250.0)
        if m % 2 == 0:  # every other miner fails once or twice
            for fail_row in rng.choice(np.arange(300, rows - 60, 250), size=1 + m % 4 // 2, replace=False):
                ramp = np.linspace(0, 1, 144, dtype=np.float32)
                lead = slice(fail_row - 144, fail_row)
                one.values[lead, 1] += 15 * ramp  # temperature
                one.values[lead, 2] -= 1500 * ramp  # fan speed
                down = slice(fail_row, fail_row + 24)
                one.values[down] = np.nan
                one.observed[down] = False
                failures.append(failure(miner_id, int(fail_row), int(fail_row) + 24))
        else:  # a curtailment that looks like an outage but is planned
            one.values[500:530] = np.nan
            one.observed[500:530] = False
            planned.append(PlannedState(f"p{m}", miner_id, PlannedStateKind.CURTAILMENT, at(500), at(530)))
        series[miner_id] = one
    return Fleet(series, miners, failures, planned)


TINY_TRAIN = {"epochs": 3, "samples_per_epoch": 128, "val_windows_per_epoch": 128, "validation_split": 0.34}
