"""WindowMemo: one prepared window per (model version, miner) and series object; old versions go."""

from __future__ import annotations

import numpy as np
import pytest

from server.domain.window_memo import WindowMemo
from server.errors import InsufficientHistory
from server.models.inference import WindowBatch
from server.records import Miner, MinerSeries


def _series(miner_id: str, rows: int = 4) -> MinerSeries:
    stamps = np.datetime64("2026-01-01T00:00:00", "s") + 300 * np.arange(rows)
    return MinerSeries(miner_id, stamps, np.ones((rows, 11), np.float32), np.ones(rows, bool))


class Preparer:
    """Prepares a one-window batch from a series (its last row) and counts how often it ran."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, series: MinerSeries) -> WindowBatch:
        self.calls += 1
        last = series.timestamps[-1:]
        return WindowBatch(
            series.miner_id, series.values[None, -1:], series.values[None, -1:], last, last, np.ones(1)
        )


MINER = Miner("10.0.0.1", "Antminer S19")


def test_a_window_is_prepared_once_per_series_object_and_miner_record() -> None:
    memo, prepare, series = WindowMemo(), Preparer(), _series("10.0.0.1")
    first = memo.latest("v1", MINER, series, lambda: prepare(series))
    again = memo.latest("v1", MINER, series, lambda: prepare(series))
    assert again is first and prepare.calls == 1
    refreshed = _series("10.0.0.1")  # the cache hands out a new series object on every refresh
    assert memo.latest("v1", MINER, refreshed, lambda: prepare(refreshed)) is not first
    moved = Miner("10.0.0.1", "Antminer S19", site="north")  # a changed record prepares again
    memo.latest("v1", moved, refreshed, lambda: prepare(refreshed))
    assert prepare.calls == 3 and len(memo) == 1


def test_too_little_history_is_memoised_and_raised_on_every_hit() -> None:
    memo, series, calls = WindowMemo(), _series("10.0.0.1"), []

    def short() -> WindowBatch:
        calls.append(1)
        raise InsufficientHistory("10.0.0.1", 4, 24)

    for _ in range(3):
        with pytest.raises(InsufficientHistory, match="has 4 sample"):
            memo.latest("v1", MINER, series, short)
    assert len(calls) == 1


def test_retain_drops_the_entries_of_versions_no_longer_serving() -> None:
    memo, prepare = WindowMemo(), Preparer()
    miners = [Miner(f"10.0.0.{i}", "S19") for i in range(5)]
    series = {m.miner_id: _series(m.miner_id) for m in miners}
    memo.retain(["lstm-1", "ae-1"])
    for version in ("lstm-1", "ae-1"):
        for m in miners:
            memo.latest(version, m, series[m.miner_id], lambda m=m: prepare(series[m.miner_id]))
    assert len(memo) == 10 and memo.versions() == {"lstm-1", "ae-1"}
    memo.retain(["lstm-2", "ae-1"])  # a new LSTM became active
    assert memo.versions() == {"ae-1"} and len(memo) == 5
    memo.latest("lstm-2", miners[0], series["10.0.0.1"], lambda: prepare(series["10.0.0.1"]))
    assert memo.versions() == {"lstm-2", "ae-1"}


def test_a_call_that_began_before_a_swap_does_not_bring_its_version_back() -> None:
    memo, prepare, series = WindowMemo(), Preparer(), _series("10.0.0.1")
    memo.retain(["lstm-2"])
    batch = memo.latest("lstm-1", MINER, series, lambda: prepare(series))  # still answered
    assert batch.miner_id == "10.0.0.1"
    assert memo.versions() == set() and len(memo) == 0
