"""Re-scores miners as their telemetry lands and pushes the new scores to subscribers.

Ingestion reports which miners a batch touched. Bursts are coalesced: the rescorer wakes, waits
`interval_s` for more, refreshes the feature cache for everything touched (one query), scores the
touched miners in one batch and publishes each new score. A backfill (old samples) refreshes the
cache but is not re-scored or announced, so importing history does not set off a storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from server.domain.active_models import ActiveModels
from server.domain.feature_cache import FeatureCache
from server.domain.scoring import Scoring
from server.domain.subscriptions import ScoreHub

log = logging.getLogger(__name__)


class Rescorer:
    def __init__(
        self, cache: FeatureCache, scoring: Scoring, models: ActiveModels, hub: ScoreHub, interval_s: float
    ) -> None:
        self._cache = cache
        self._scoring = scoring
        self._models = models
        self._hub = hub
        self._interval_s = interval_s
        self._stale: set[str] = set()  # cache rows to re-read
        self._pending: set[str] = set()  # miners to re-score and announce
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def on_ingest(self, miner_ids: set[str], backfill: bool) -> None:
        """Ingest listener (called on the event loop after a batch is stored)."""
        self._stale |= miner_ids
        if not backfill:
            self._pending |= miner_ids
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rescorer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _warm_up(self) -> None:
        """Scores every cached miner once at start (not announced): the first ScoreFleet is then fast
        and ListMiners sorts by risk from the start."""
        if self._models.lstm is None:
            return
        try:
            scores, skipped = await asyncio.to_thread(self._scoring.score_entries, self._cache.items())
            log.info("warm-up: scored %d miner(s), %d with too little history", len(scores), skipped)
        except Exception:  # noqa: BLE001 - serving works without the warm-up
            log.exception("warm-up scoring failed")

    async def _run(self) -> None:
        await self._warm_up()
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval_s)  # let the burst finish
            self._wake.clear()
            stale, self._stale = self._stale, set()
            pending, self._pending = self._pending, set()
            try:
                await asyncio.to_thread(self._cache.refresh, stale)
                if pending and self._models.lstm is not None:
                    entries = [entry for m in sorted(pending) if (entry := self._cache.get(m)) is not None]
                    scores, _ = await asyncio.to_thread(self._scoring.score_entries, entries)
                    for score in scores:
                        self._hub.publish(score)
                self.rounds += 1
            except Exception:  # noqa: BLE001 - one bad round must not stop re-scoring
                log.exception("re-scoring %d miner(s) failed", len(pending))
