"""Background upkeep of the store: the periodic outage scan and the retention roll-up.

Retention: a miner's raw samples more than `raw_retention_days` older than *its own newest sample*
are folded into `samples_hourly` (one row per miner and UTC hour: means, extremes, summed share
deltas, OR-ed quality) and deleted, every `retention_interval_s`. The age counts from the data, not
the wall clock, so history imported for training is never removed by the clock; every write reports
which of its samples fall past that horizon (`retention_report`). Features and training read raw
samples only, so they see the retention window; the hourly table keeps the long history for reports
and the telemetry history. Risk-history points older than `risk_history_retention_days` (wall clock)
are deleted on the same schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np

from server.config import Settings
from server.domain import outages
from server.store import FleetStore

log = logging.getLogger(__name__)


def apply_retention(store: FleetStore, settings: Settings) -> tuple[int, int]:
    """Roll up each miner's raw samples past retention; returns (hourly rows written, raw deleted)."""
    retention = timedelta(days=settings.raw_retention_days)
    hours, deleted = store.roll_up_samples(retention)
    if deleted:
        log.info(
            "retention: %d raw samples older than %g days before their miner's newest sample rolled up "
            "into %d hourly rows",
            deleted,
            settings.raw_retention_days,
            hours,
        )
    points_cutoff = datetime.now(UTC) - timedelta(days=settings.risk_history_retention_days)
    points = store.prune_risk_points(points_cutoff)
    if points:
        log.info("retention: %d risk-history points before %s deleted", points, points_cutoff)
    return hours, deleted


def surely_raw(ts: np.ndarray, newest_possible: datetime, settings: Settings) -> bool:
    """Whether every sample time (N,) of a batch is within the raw retention of `newest_possible`, a
    bound on every stored sample's time (ingestion refuses samples stamped later): then no sample of
    the batch lies past its miner's horizon (its newest sample minus the retention), without asking
    the store. True for every live batch."""
    naive = np.asarray(ts).astype("datetime64[us]")
    if naive.size == 0:
        return True
    newest = newest_possible.astimezone(UTC).replace(tzinfo=None)
    horizon = newest - timedelta(days=settings.raw_retention_days)
    return bool(naive.min() >= np.datetime64(horizon, "us"))


def retention_report(
    store: FleetStore,
    settings: Settings,
    miner_ids: np.ndarray,
    ts: np.ndarray,
    newest_possible: datetime | None = None,
) -> int:
    """How many samples of a stored batch (a miner id or alias (N,) and a UTC time (N,) per sample)
    lie past their miner's raw-retention horizon, i.e. will be kept only as hourly rows. With
    `newest_possible` (see surely_raw), a batch surely all raw is answered without a store query."""
    if newest_possible is not None and surely_raw(ts, newest_possible, settings):
        return 0
    naive = np.asarray(ts).astype("datetime64[us]")
    return store.count_past_horizon(miner_ids, naive, timedelta(days=settings.raw_retention_days))


async def _every(interval_s: float, name: str, job: Callable[[], object]) -> None:
    """Run the blocking `job` in a worker thread every interval_s seconds until cancelled; a failing
    run is logged and the next one goes ahead."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(job)
        except Exception:  # noqa: BLE001 - a periodic job must outlive one bad run
            log.exception("periodic %s failed; retrying in %.0f s", name, interval_s)


class Housekeeping:
    """The periodic tasks; start() on the server's loop, await stop() before the store closes."""

    def __init__(self, store: FleetStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        settings, store = self._settings, self._store
        if settings.outage_scan_interval_s > 0:
            self._tasks.append(
                asyncio.create_task(
                    _every(
                        settings.outage_scan_interval_s,
                        "outage scan",
                        lambda: outages.scan_fleet(store, settings),
                    ),
                    name="outage-scan",
                )
            )
        if settings.retention_interval_s > 0:
            self._tasks.append(
                asyncio.create_task(
                    _every(
                        settings.retention_interval_s, "retention", lambda: apply_retention(store, settings)
                    ),
                    name="retention",
                )
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
