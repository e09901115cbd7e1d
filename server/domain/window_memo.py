"""Each miner's latest prepared model window, memoised per model version while its series is unchanged.

Predictions and fleet scoring prepare a miner's window (normalisation, share channels) once per
feature-cache refresh, not once per call: the cache hands out a new series object on every refresh,
so an entry is valid while the series object and the miner record are the ones it was made from.
Too little history is memoised too, and raised again on every hit. Entries are kept only for the
model versions still serving: `retain` drops every other version's entries (after a promotion, an
activation or a rollback, the old version's windows are never read again).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from server.errors import InsufficientHistory
from server.models.features import history_rows
from server.models.inference import AnomalyScorer, FailureRiskPredictor, WindowBatch
from server.records import Miner, MinerSeries

Prepared = WindowBatch | InsufficientHistory


def history_for(model: FailureRiskPredictor | AnomalyScorer) -> int:
    """Rows to load for a model's latest window: the window plus the history its channels read."""
    return model.window.sequence_length + history_rows(model.window.share_reference_samples)


class WindowMemo:
    """version -> miner_id -> (series, miner, its latest WindowBatch or why there is none); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, tuple[MinerSeries, Miner, Prepared]]] = {}
        self._serving: set[str] | None = None  # the versions of the last `retain`; None keeps any

    def latest(
        self, version: str, miner: Miner, series: MinerSeries, prepare: Callable[[], WindowBatch]
    ) -> WindowBatch:
        """The memoised window of (version, miner) for this series object, else `prepare()`'s."""
        with self._lock:
            memo = self._entries.get(version, {}).get(miner.miner_id)
        if memo is None or memo[0] is not series or memo[1] != miner:
            try:
                prepared: Prepared = prepare()
            except InsufficientHistory as exc:
                prepared = exc
            memo = (series, miner, prepared)
            with self._lock:  # a call that began before a model swap does not bring its version back
                if self._serving is None or version in self._serving:
                    self._entries.setdefault(version, {})[miner.miner_id] = memo
        if isinstance(memo[2], InsufficientHistory):
            raise memo[2]
        return memo[2]

    def retain(self, versions: Iterable[str]) -> None:
        """Drops the entries of every model version not in `versions` (the versions serving now) and
        keeps none for other versions until the next call."""
        keep = set(versions)
        with self._lock:
            self._serving = keep
            for version in [v for v in self._entries if v not in keep]:
                del self._entries[version]

    def versions(self) -> set[str]:
        """The model versions with memoised windows."""
        with self._lock:
            return set(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(by_miner) for by_miner in self._entries.values())
