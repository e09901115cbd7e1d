"""Outage events derived from telemetry (labels without manual entry), and the periodic fleet scan.

An outage is a stretch of longer than `outage_after_minutes` in which a miner reported zero hashrate
or nothing at all, outside planned states (curtailment, maintenance); it is stored as a failure
event with mode FAILURE_MODE_OUTAGE and source EVENT_SOURCE_DERIVED, and gets `repaired_at` when the
miner hashes again. The exact definition and the idempotent sync are in server/store/outages.py.

Two triggers: after every ingested batch, for the miners it touched, over the batch's time range
plus `outage_lookback_hours` before it (zero-hashrate stretches, and silent gaps the batch closed);
and every `outage_scan_interval_s`, for the whole fleet over the last `outage_lookback_hours` before
the newest sample, which alone opens outages for miners still silent (they send no batch).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from server.config import Settings
from server.store import FleetStore
from server.store.outages import OutageSync

log = logging.getLogger(__name__)


def derive_after_ingest(
    store: FleetStore, settings: Settings, miner_ids: Iterable[str], oldest: datetime
) -> OutageSync:
    """Derive the outages of the miners a batch touched, from before its oldest sample on."""
    lookback = timedelta(hours=settings.outage_lookback_hours)
    # Repairs first: a recorded failure's end decides which derived outages it supersedes.
    store.derive_repairs(sorted(miner_ids), timedelta(minutes=settings.outage_after_minutes))
    return store.sync_derived_outages(
        sorted(miner_ids),
        oldest - lookback,
        timedelta(minutes=settings.outage_after_minutes),
        open_silence=False,  # a miner silent up to now is the periodic scan's to call
    )


def scan_fleet(store: FleetStore, settings: Settings) -> OutageSync:
    """Derive the outages of every miner over the lookback before the fleet's newest sample."""
    newest = store.newest_sample()
    if newest is None:
        return OutageSync()
    synced = store.sync_derived_outages(
        None,
        newest - timedelta(hours=settings.outage_lookback_hours),
        timedelta(minutes=settings.outage_after_minutes),
    )
    if synced.added or synced.updated or synced.removed:
        log.info(
            "derived outages: %d added, %d updated, %d removed", synced.added, synced.updated, synced.removed
        )
    return synced
