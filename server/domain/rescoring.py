"""Re-scores miners as their telemetry lands, and the whole fleet whenever a model becomes active.

Ingestion reports which miners a batch touched. Bursts are coalesced: the rescorer wakes, waits
`interval_s` for more, refreshes the feature cache for everything touched (one query), scores the
touched miners in one batch and publishes each new score. A backfill (old samples) refreshes the
cache but is not re-scored or announced, so importing history does not set off a storm.

Whenever a model becomes active (at start, a training job's promotion, ActivateModel, a rollback)
every cached miner is re-scored in the background, `chunk` miners at a time: ListMiners, the gauges
and subscribers see the new model's scores as each chunk lands, the log and `progress` (served as
metrics) say how far it is, and ingestion rounds run between chunks. A model change during a fleet
rescoring restarts it with the newer model.

Every newly scored window becomes a risk-history point (`History.record`); predictions never write one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from server.domain.active_models import ActiveModels
from server.domain.feature_cache import FeatureCache
from server.domain.history import History
from server.domain.scoring import Scoring
from server.domain.subscriptions import ScoreHub
from server.records import Miner, MinerScore, MinerSeries

log = logging.getLogger(__name__)


@dataclass
class RescoreProgress:
    """Where the latest fleet rescoring stands (read by the metrics collector from another thread)."""

    running: bool = False
    miners_total: int = 0
    miners_done: int = 0  # scored or skipped so far
    miners_skipped: int = 0  # too little history
    model_version: str = ""
    runs: int = 0  # finished fleet rescorings
    last_duration_s: float = 0.0
    last_finished_unix: float = 0.0


class Rescorer:
    def __init__(
        self,
        cache: FeatureCache,
        scoring: Scoring,
        models: ActiveModels,
        hub: ScoreHub,
        interval_s: float,
        history: History | None = None,
        chunk: int = 500,
    ) -> None:
        self._cache = cache
        self._scoring = scoring
        self._models = models
        self._hub = hub
        self._interval_s = interval_s
        self._history = history
        self._chunk = chunk
        self._stale: set[str] = set()  # cache rows to re-read
        self._pending: set[str] = set()  # miners to re-score and announce
        self._fleet_pending = True  # the models loaded at start count as becoming active
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._progress_lock = threading.Lock()
        self._progress = RescoreProgress()
        self.rounds = 0

    @property
    def progress(self) -> RescoreProgress:
        """A copy of the fleet rescoring's progress (thread-safe)."""
        with self._progress_lock:
            return RescoreProgress(**vars(self._progress))

    def on_ingest(self, miner_ids: set[str], backfill: bool) -> None:
        """Ingest listener (called on the event loop after a batch is stored)."""
        self._stale |= miner_ids
        if not backfill:
            self._pending |= miner_ids
        self._wake.set()

    def on_models_changed(self) -> None:
        """Model listener: a model became active; re-score the fleet. Safe from any thread."""
        if self._loop is None:
            return  # not started: start() rescoring covers it
        self._loop.call_soon_threadsafe(self._request_fleet)

    def _request_fleet(self) -> None:
        self._fleet_pending = True
        self._wake.set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="rescorer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            if not self._fleet_pending:
                await self._wake.wait()
                await asyncio.sleep(self._interval_s)  # let the burst finish
            self._wake.clear()
            if self._fleet_pending:
                self._fleet_pending = False
                await self._rescore_fleet()
            await self._ingest_round()

    async def _ingest_round(self) -> None:
        stale, self._stale = self._stale, set()
        pending, self._pending = self._pending, set()
        if not stale and not pending:
            return
        try:
            await asyncio.to_thread(self._cache.refresh, stale)
            if pending and self._models.lstm is not None:
                entries = [entry for m in sorted(pending) if (entry := self._cache.get(m)) is not None]
                scores, _ = await asyncio.to_thread(self._score, entries)
                for score in scores:
                    self._hub.publish(score)
            self.rounds += 1
        except Exception:  # noqa: BLE001 - one bad round must not stop re-scoring
            log.exception("re-scoring %d miner(s) failed", len(pending))

    def _score(self, entries: list[tuple[Miner, MinerSeries]]) -> tuple[list[MinerScore], int]:
        """Scores entries and records their risk points (blocking)."""
        scores, skipped = self._scoring.score_entries(entries)
        if self._history is not None:
            try:
                self._history.record(scores)
            except Exception:  # noqa: BLE001 - history must never cost a score
                log.exception("recording %d risk-history point(s) failed", len(scores))
        return scores, skipped

    async def _rescore_fleet(self) -> None:
        lstm = self._models.lstm
        if lstm is None:
            return
        version = lstm.summary.version
        entries = sorted(self._cache.items(), key=lambda e: e[0].miner_id)
        started = time.perf_counter()
        with self._progress_lock:
            self._progress.running = True
            self._progress.miners_total = len(entries)
            self._progress.miners_done = 0
            self._progress.miners_skipped = 0
            self._progress.model_version = version
        log.info("rescoring the fleet: %d miner(s) with LSTM %s", len(entries), version)
        scored = skipped = 0
        last_log = started
        try:
            for offset in range(0, len(entries), self._chunk):
                if self._fleet_pending:
                    log.info("rescoring restarts: another model became active")
                    return
                chunk = entries[offset : offset + self._chunk]
                scores, chunk_skipped = await asyncio.to_thread(self._score, chunk)
                for score in scores:
                    self._hub.publish(score)
                scored += len(scores)
                skipped += chunk_skipped
                with self._progress_lock:
                    self._progress.miners_done = offset + len(chunk)
                    self._progress.miners_skipped = skipped
                if time.perf_counter() - last_log >= 5.0:
                    last_log = time.perf_counter()
                    log.info("rescoring: %d of %d miner(s) done", offset + len(chunk), len(entries))
                if self._stale or self._pending:
                    await self._ingest_round()  # telemetry does not wait for the whole fleet
        except Exception:  # noqa: BLE001 - serving goes on with the scores it has
            log.exception("rescoring the fleet with LSTM %s failed", version)
            return
        finally:
            elapsed = time.perf_counter() - started
            with self._progress_lock:
                self._progress.running = False
                self._progress.runs += 1
                self._progress.last_duration_s = elapsed
                self._progress.last_finished_unix = time.time()
        log.info(
            "rescored the fleet with LSTM %s: %d miner(s) scored, %d with too little history, in %.2f s",
            version,
            scored,
            skipped,
            time.perf_counter() - started,
        )
