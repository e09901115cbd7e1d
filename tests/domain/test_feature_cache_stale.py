"""FeatureCache's stale marks: a stored batch marks its miners until a refresh that began after it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from server.domain.feature_cache import FeatureCache
from server.records import Miner
from server.store import Store
from tests.store.store_builders import sample


def test_marks_hold_until_a_refresh_reads_the_miners_again(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "fleet.duckdb")
    try:
        store.upsert_miners([Miner("10.0.0.1", "S19"), Miner("10.0.0.2", "S19")])
        store.write_samples([sample(m, step) for m in ("10.0.0.1", "10.0.0.2") for step in range(30)])
        cache = FeatureCache(store, history_rows=48, interval_s=300)
        cache.rebuild()
        assert cache.stale() == set()
        store.write_samples([sample("10.0.0.1", 30)])
        cache.mark_stale({"10.0.0.1"})  # what ingestion does before acknowledging the batch
        assert cache.is_stale("10.0.0.1") and not cache.is_stale("10.0.0.2")
        entry = cache.get("10.0.0.1")
        assert entry is not None and len(entry[1]) == 30  # the cache still lags the store
        cache.refresh({"10.0.0.2"})  # another miner's refresh clears nothing of this one
        assert cache.stale() == {"10.0.0.1"}
        cache.refresh({"10.0.0.1"})
        assert cache.stale() == set()
        entry = cache.get("10.0.0.1")
        assert entry is not None and len(entry[1]) == 31
        assert entry[1].timestamps[-1] == np.datetime64(
            sample("10.0.0.1", 30).timestamp.replace(tzinfo=None), "s"
        )
    finally:
        store.close()


def test_a_mark_made_while_a_refresh_reads_survives_it(tmp_path: Path) -> None:
    """A batch acknowledged while a refresh is reading may be missing from what it read."""
    store = Store.open(tmp_path / "fleet.duckdb")
    try:
        store.write_samples([sample("10.0.0.1", step) for step in range(30)])
        cache = FeatureCache(store, history_rows=48, interval_s=300)
        cache.rebuild()
        cache.mark_stale({"10.0.0.1"})
        load_series = store.load_series

        def load_then_a_write_lands(*args: object, **kwargs: object) -> object:
            read = load_series(*args, **kwargs)  # type: ignore[arg-type]
            store.write_samples([sample("10.0.0.1", 31)])
            cache.mark_stale({"10.0.0.1"})  # acknowledged after the read
            return read

        store.load_series = load_then_a_write_lands  # type: ignore[method-assign]
        cache.refresh({"10.0.0.1"})
        assert cache.is_stale("10.0.0.1")  # the refresh missed the second batch: still stale
        store.load_series = load_series  # type: ignore[method-assign]
        cache.refresh({"10.0.0.1"})
        assert not cache.is_stale("10.0.0.1")
    finally:
        store.close()
