"""Writing a simulated fleet into the store (the demo seed)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import TypeVar

import numpy as np

from server.records import WriteResult
from server.sim.fleet import SimulatedFleet
from server.store import QUALITY_SIMULATED, FleetStore

R = TypeVar("R")


def _shifted(record: R, shift: timedelta) -> R:
    """A copy of a frozen record (failure, planned state) with every datetime field moved by shift."""
    moved = {
        f.name: getattr(record, f.name) + shift
        for f in dataclasses.fields(record)  # type: ignore[arg-type]
        if isinstance(getattr(record, f.name), datetime)
    }
    return dataclasses.replace(record, **moved)  # type: ignore[type-var]


def seed_store(store: FleetStore, fleet: SimulatedFleet, shift: timedelta = timedelta(0)) -> WriteResult:
    """Write the fleet's miners, samples (flagged QUALITY_SIMULATED), failures and planned states,
    every time moved by `shift` (whole intervals).

    Idempotent: seeding the same fleet again writes nothing new (every sample is a duplicate).
    """
    store.upsert_miners(fleet.miners)
    s = fleet.samples
    result = store.bulk_append_columns(
        s.miner_id,
        s.ts + np.timedelta64(int(shift.total_seconds()), "s"),
        hashrate_ths=s.hashrate_ths,
        temperature_c=s.temperature_c,
        fan_speed_rpm=s.fan_speed_rpm,
        power_w=s.power_w,
        accepted_shares=s.accepted_shares,
        rejected_shares=s.rejected_shares,
        board_hashrate_ths=s.board_hashrate_ths,
        board_temperature_c=s.board_temperature_c,
        fan_speeds_rpm=s.fan_speeds_rpm,
        quality=QUALITY_SIMULATED,
    )
    store.add_failures([_shifted(f, shift) for f in fleet.failures])
    store.add_planned_states([_shifted(p, shift) for p in fleet.planned_states])
    store.checkpoint()
    return result
