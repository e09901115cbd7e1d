"""Re-scores miners as their telemetry lands, and the whole fleet whenever a model becomes active.

Ingestion reports which miners a batch touched, before the batch is acknowledged: the feature cache
marks them stale at once (so predictions read them from the store until the refresh), and bursts are
coalesced: the rescorer wakes, waits `interval_s` for more, refreshes the feature cache for
everything touched (one query), scores the touched miners in one batch and publishes each new score.

A backfill (an import of history) refreshes the cache at once but is re-scored only when the import
is over (an IngestMetrics stream has ended, or no backfill batch came for `import_settle_s`), and then
only the miners whose newest row moved past the one they were last scored at, each once: importing
months of history in many batches is one re-scoring and one publication per miner, not a storm, and
history older than what a miner has re-scores nothing.

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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from server.domain.active_models import ActiveModels
from server.domain.feature_cache import FeatureCache
from server.domain.history import History
from server.domain.scoring import Scoring
from server.domain.subscriptions import ScoreHub
from server.records import Miner, MinerScore, MinerSeries

log = logging.getLogger(__name__)

IMPORT_STREAM_IDLE_S = 30.0
"""An open import stream that sent nothing for this long no longer holds its import's re-scoring."""


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
        import_settle_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
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
        self._imported: set[str] = set()  # backfill: re-scored when the import is over, if moved
        self._import_settle_s = import_settle_s
        self._clock = clock
        self._imports_open = 0  # import streams in progress
        self._import_ended = False  # the last open import stream ended: its import is over
        self._last_import = 0.0  # clock time of the last backfill batch
        self._scored_newest: dict[str, np.datetime64] = {}  # miner -> newest row when last scored
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
        """Ingest listener (called on the event loop after a batch is stored, before its
        acknowledgement)."""
        self._cache.mark_stale(miner_ids)
        self._stale |= miner_ids
        if backfill:
            self._imported |= miner_ids
            self._last_import = self._clock()
        else:
            self._pending |= miner_ids
        self._wake.set()

    def on_import(self, started: bool) -> None:
        """Import listener: an import stream started (True) or ended (False); on the event loop."""
        self._imports_open = max(0, self._imports_open + (1 if started else -1))
        if not started and self._imports_open == 0 and self._imported:
            self._import_ended = True
            self._wake.set()

    def _import_wait(self) -> float | None:
        """Seconds until the waiting import is over (0: now), or None when no import waits."""
        if not self._imported:
            return None
        if self._imports_open:
            idle = self._clock() - self._last_import
            return max(0.0, IMPORT_STREAM_IDLE_S - idle)
        if self._import_ended:
            return 0.0
        return max(0.0, self._import_settle_s - (self._clock() - self._last_import))

    def _moved(self, miner_id: str) -> bool:
        """Whether the miner's newest cached row is past the one it was last scored at."""
        entry = self._cache.get(miner_id)
        if entry is None or not len(entry[1]):
            return False
        scored = self._scored_newest.get(miner_id)
        return scored is None or bool(entry[1].timestamps[-1] > scored)

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
                wait = self._import_wait()
                with contextlib.suppress(TimeoutError):  # a waiting import's end wakes it too
                    await asyncio.wait_for(self._wake.wait(), wait)
                await asyncio.sleep(self._interval_s)  # let the burst finish
            self._wake.clear()
            if self._fleet_pending:
                self._fleet_pending = False
                await self._rescore_fleet()
            await self._ingest_round()

    async def _ingest_round(self) -> None:
        stale, self._stale = self._stale, set()
        pending, self._pending = self._pending, set()
        imported: set[str] = set()
        if self._import_wait() == 0.0:
            imported, self._imported = self._imported, set()
            self._import_ended = False
        if not stale and not pending and not imported:
            return
        try:
            await asyncio.to_thread(self._cache.refresh, stale)
            moved = {m for m in imported - pending if self._moved(m)}
            if (pending or moved) and self._models.lstm is not None:
                wanted = sorted(pending | moved)
                entries = [entry for m in wanted if (entry := self._cache.get(m)) is not None]
                scores, _ = await asyncio.to_thread(self._score, entries)
                for score in scores:
                    self._hub.publish(score)
            self.rounds += 1
        except Exception:  # noqa: BLE001 - one bad round must not stop re-scoring
            log.exception("re-scoring %d miner(s) failed", len(pending | imported))

    def _score(self, entries: list[tuple[Miner, MinerSeries]]) -> tuple[list[MinerScore], int]:
        """Scores entries and records their risk points (blocking)."""
        scores, skipped = self._scoring.score_entries(entries)
        newest = {miner.miner_id: series.timestamps[-1] for miner, series in entries if len(series)}
        for score in scores:
            if score.miner_id in newest:
                self._scored_newest[score.miner_id] = newest[score.miner_id]
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
