"""Writing a simulated fleet into the store (the demo seed)."""

from __future__ import annotations

from server.records import WriteResult
from server.sim.fleet import SimulatedFleet
from server.store import QUALITY_SIMULATED, Store


def seed_store(store: Store, fleet: SimulatedFleet) -> WriteResult:
    """Write the fleet's miners, samples (flagged QUALITY_SIMULATED), failures and planned states.

    Idempotent: seeding the same fleet again writes nothing new (every sample is a duplicate).
    """
    store.upsert_miners(fleet.miners)
    s = fleet.samples
    result = store.bulk_append_columns(
        s.miner_id,
        s.ts,
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
    store.add_failures(fleet.failures)
    store.add_planned_states(fleet.planned_states)
    store.checkpoint()
    return result
