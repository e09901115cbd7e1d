"""An online cache of each miner's recent feature rows, so scoring needs no database round trip.

The store stays the source of truth: the cache is rebuilt from it at start and refreshed for the
miners an ingested batch touched (one query per refresh, whatever the number of miners). Entries
hold the last `history_rows` grid rows: the model window plus the 24 h of history its share
normalisation reads.

Writes are acknowledged before the cache catches up (the re-scorer refreshes it in the background),
so ingestion marks the miners a stored batch touched as stale before it acknowledges the batch; a
reader that must reflect every acknowledged write (a prediction, ScoreFleet) checks `stale` and
reads those miners from the store, or refreshes them first. A refresh clears the marks it covers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import timedelta

from server.records import Miner, MinerSeries
from server.store import FleetStore

log = logging.getLogger(__name__)


class FeatureCache:
    """miner_id -> (Miner, recent MinerSeries); thread-safe."""

    def __init__(self, store: FleetStore, history_rows: int, interval_s: int) -> None:
        self._store = store
        self._history = timedelta(seconds=history_rows * interval_s)
        self._history_rows = history_rows
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Miner, MinerSeries]] = {}
        # miner_id -> marks since its rows were last read: a refresh clears a miner's marks only when
        # none arrived while it read (a write acknowledged during the read may be missing from it).
        self._stale: dict[str, int] = {}
        self.generation = 0  # bumps on every change; prepared inputs keyed by it stay consistent

    def mark_stale(self, miner_ids: Iterable[str]) -> None:
        """The store holds newer rows of these miners than the cache (a batch was just stored)."""
        with self._lock:
            for miner_id in miner_ids:
                self._stale[miner_id] = self._stale.get(miner_id, 0) + 1

    def stale(self) -> set[str]:
        """The miners whose cached rows may lag the store."""
        with self._lock:
            return set(self._stale)

    def is_stale(self, miner_id: str) -> bool:
        with self._lock:
            return miner_id in self._stale

    def rebuild(self) -> int:
        """Loads every miner's recent rows; returns how many miners are cached."""
        with self._lock:
            marks = dict(self._stale)
        miners = {m.miner_id: m for m in self._store.list_miners()}
        self._load(miners, list(miners))
        self._clear(marks)
        log.info("feature cache: %d miners cached", len(self._entries))
        return len(self._entries)

    def refresh(self, miner_ids: Iterable[str]) -> None:
        """Re-reads the given miners' recent rows from the store."""
        wanted = set(miner_ids)
        if not wanted:
            return
        with self._lock:
            marks = {m: n for m, n in self._stale.items() if m in wanted}
        miners = {m.miner_id: m for m in self._store.list_miners() if m.miner_id in wanted}
        self._load(miners, list(miners))
        self._clear(marks)

    def _clear(self, marks: dict[str, int]) -> None:
        """Clears the stale marks a completed read covered (those taken before it began)."""
        with self._lock:
            for miner_id, count in marks.items():
                if self._stale.get(miner_id) == count:
                    del self._stale[miner_id]

    def _load(self, miners: dict[str, Miner], ids: list[str]) -> None:
        if not ids:
            return
        stats = self._store.miner_stats()
        newest = [seen for count, seen in (stats.get(i, (0, None)) for i in ids) if seen is not None]
        if not newest:
            return
        start = min(newest) - self._history
        series = self._store.load_series(ids, start=start)
        with self._lock:
            for miner_id, rows in series.items():
                if len(rows) > self._history_rows:
                    rows = MinerSeries(
                        miner_id,
                        rows.timestamps[-self._history_rows :],
                        rows.values[-self._history_rows :],
                        rows.observed[-self._history_rows :],
                    )
                self._entries[miner_id] = (miners[miner_id], rows)
            self.generation += 1

    def get(self, miner_id: str) -> tuple[Miner, MinerSeries] | None:
        with self._lock:
            return self._entries.get(miner_id)

    def items(self) -> list[tuple[Miner, MinerSeries]]:
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
