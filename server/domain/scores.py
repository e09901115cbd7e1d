"""The latest score of each miner, kept in memory for ListMiners, ScoreFleet and subscriptions."""

from __future__ import annotations

import threading

from server.records import MinerScore


class LatestScores:
    """Thread-safe map miner_id -> its newest MinerScore."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scores: dict[str, MinerScore] = {}

    def put(self, score: MinerScore) -> None:
        with self._lock:
            self._scores[score.miner_id] = score

    def get(self, miner_id: str) -> MinerScore | None:
        with self._lock:
            return self._scores.get(miner_id)

    def snapshot(self) -> dict[str, MinerScore]:
        with self._lock:
            return dict(self._scores)

    def clear(self) -> None:
        with self._lock:
            self._scores.clear()
