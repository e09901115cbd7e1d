"""Whether a miner's latest score describes a working miner: live, down, stale or recovering.

One rule (`status_of`) for ScoreFleet, ListMiners and GetMiner, in this order:
- DOWN: a recorded failure without a repair (recorded or derived, see store/outages.py);
- STALE: no sample for longer than the silence setting (`outage_after_minutes`, the one that also
  derives outages) before the fleet's newest sample. Like derived outages it counts from the data's
  "now", not the wall clock: when the whole fleet is silent that is the collector, and hourly imports
  do not turn every miner stale between batches;
- DOWN: a derived outage still open (zero hashrate while reporting);
- RECOVERING: back from a repair or an outage with less than one model window of history since;
- LIVE otherwise.
A miner that is not live keeps its last risk for reference; listings rank it after every live miner.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from server.config import Settings
from server.records import FailureMode, MinerCondition, MinerState, MinerStatus

LIVE = MinerStatus(MinerState.LIVE)
RANK = {MinerState.LIVE: 0, MinerState.RECOVERING: 1, MinerState.DOWN: 2, MinerState.STALE: 3}
"""Listing order of the states: live miners first."""


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def status_of(
    condition: MinerCondition | None, fleet_newest: datetime | None, silent: timedelta, window: timedelta
) -> MinerStatus:
    """The state of one miner (see the module docstring); a miner without samples is LIVE (it has
    no score to misread)."""
    if condition is None:
        return LIVE
    if condition.open_failure_at is not None:
        mode = FailureMode(condition.open_failure_mode).name if condition.open_failure_mode else "OTHER"
        return MinerStatus(
            MinerState.DOWN,
            condition.open_failure_at,
            f"failure FAILURE_MODE_{mode} recorded, not repaired; record the repair time with "
            "TelemetryService.RecordRepair once it is back",
        )
    last_seen = condition.last_seen
    if last_seen is None:
        return LIVE
    if fleet_newest is not None and fleet_newest - last_seen > silent:
        return MinerStatus(
            MinerState.STALE,
            last_seen,
            f"no telemetry for {_minutes(fleet_newest - last_seen)} while the fleet reports "
            f"(silent after {_minutes(silent)})",
        )
    if condition.open_outage_at is not None:
        return MinerStatus(MinerState.DOWN, condition.open_outage_at, "outage: no hashrate")
    repaired = condition.last_repair_at
    if repaired is not None and last_seen - repaired < window:
        return MinerStatus(
            MinerState.RECOVERING,
            repaired,
            f"back since a repair or outage; not enough history yet: {_minutes(last_seen - repaired)} "
            f"of the {_minutes(window)} a window needs, so the risk still reads the time before",
        )
    return LIVE


def statuses(conditions: dict[str, MinerCondition], settings: Settings) -> dict[str, MinerStatus]:
    """Every miner's status, against the fleet's newest sample."""
    seen = [c.last_seen for c in conditions.values() if c.last_seen is not None]
    newest = max(seen) if seen else None
    silent = timedelta(minutes=settings.outage_after_minutes)
    window = timedelta(seconds=settings.sequence_length * settings.sample_interval_s)
    return {miner_id: status_of(c, newest, silent, window) for miner_id, c in conditions.items()}
