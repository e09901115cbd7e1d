"""Writing and reading raw samples: round trip, last write wins, duplicates, atomicity, bulk path."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from store_builders import T0, at, sample

from server.errors import InvalidArgument, MinerNotFound
from server.records import BoardReading, Miner, Sample
from server.store import QUALITY_PARTIAL, QUALITY_SIMULATED, Store


def test_samples_round_trip_with_boards_fans_and_missing_readings(store: Store) -> None:
    written = [
        Sample(
            miner_id="10.0.0.1",
            timestamp=at(0),
            hashrate_ths=101.5,
            temperature_c=None,
            fan_speed_rpm=4100.0,
            power_w=3210.0,
            accepted_shares=1234,
            rejected_shares=None,
            boards=(BoardReading(0, 33.0, 60.5, 71.0), BoardReading(2, 0.0, None, None)),
            fan_speeds_rpm=(4000.0, 4100.0, 4200.0, 4100.0),
        ),
        sample("10.0.0.1", 1),
    ]
    result = store.write_samples(written)
    assert (result.written, result.duplicates, result.miners_registered) == (2, 0, 1)
    assert result.miner_ids == {"10.0.0.1"}
    # The store marks the sample with a missing reading as partial; everything else round-trips.
    assert store.read_samples("10.0.0.1") == [replace(written[0], quality=QUALITY_PARTIAL), written[1]]
    assert store.get_miner("10.0.0.1") == Miner("10.0.0.1", "unknown")


def test_identical_resend_counts_as_duplicates(store: Store) -> None:
    batch = [sample("10.0.0.1", step) for step in range(5)]
    store.write_samples(batch)
    again = store.write_samples(batch)
    assert (again.written, again.duplicates, again.miners_registered) == (0, 5, 0)
    assert store.counts().samples == 5


def test_last_write_wins_on_the_same_miner_and_time(store: Store) -> None:
    store.write_samples([sample("10.0.0.1", 0, hashrate_ths=90.0), sample("10.0.0.1", 1)])
    result = store.write_samples([sample("10.0.0.1", 0, hashrate_ths=95.0), sample("10.0.0.1", 1)])
    assert (result.written, result.duplicates) == (1, 1)
    assert [s.hashrate_ths for s in store.read_samples("10.0.0.1")] == [95.0, 100.0]
    # A later reading that lacks a value replaces the stored value with NULL, it does not merge.
    store.write_samples([sample("10.0.0.1", 0, hashrate_ths=None)])
    assert store.read_samples("10.0.0.1")[0].hashrate_ths is None


def test_within_one_batch_the_later_row_wins(store: Store) -> None:
    result = store.write_samples([sample("10.0.0.1", 0, power_w=1.0), sample("10.0.0.1", 0, power_w=2.0)])
    assert (result.written, result.duplicates) == (1, 1)
    assert [s.power_w for s in store.read_samples("10.0.0.1")] == [2.0]


def test_batch_that_fails_midway_writes_nothing(store: Store) -> None:
    store.write_samples([sample("10.0.0.1", 0)])
    bad = [sample("10.0.0.2", 0), sample("10.0.0.1", 1), sample("10.0.0.1", 2, accepted_shares=10**30)]
    with pytest.raises(InvalidArgument, match="the store rejected the data"):
        store.write_samples(bad)
    assert store.counts().samples == 1
    assert store.get_miner("10.0.0.2") is None  # the registration rolled back too
    assert len(store.read_samples("10.0.0.1")) == 1


def test_unknown_miner_without_auto_register_raises_and_writes_nothing(store: Store) -> None:
    store.upsert_miners([Miner("10.0.0.1", "Antminer S19 Pro")])
    with pytest.raises(MinerNotFound, match="10.0.0.9") as caught:
        store.write_samples([sample("10.0.0.1", 0), sample("10.0.0.9", 0)], auto_register=False)
    assert caught.value.metadata == {"miner_id": "10.0.0.9"}
    assert store.counts().samples == 0


def test_auto_registered_miner_gets_the_default_model(store: Store) -> None:
    store.write_samples([sample("10.0.0.3", 0)], default_hardware_model="Antminer S21")
    miner = store.get_miner("10.0.0.3")
    assert miner is not None and miner.hardware_model == "Antminer S21"


def _columns(n_miners: int, n_steps: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = n_miners * n_steps
    return {
        "miner_id": np.repeat(np.array([f"10.1.0.{i}" for i in range(n_miners)], dtype=object), n_steps),
        "ts": np.tile(np.datetime64(T0.replace(tzinfo=None), "s") + np.arange(n_steps) * 300, n_miners),
        "hashrate_ths": rng.uniform(90, 110, n),
        "temperature_c": rng.uniform(60, 80, n),
        "fan_speed_rpm": rng.uniform(3000, 6000, n),
        "power_w": rng.uniform(3000, 3300, n),
        "accepted_shares": np.tile(np.arange(n_steps) * 1000, n_miners),
        "rejected_shares": np.tile(np.arange(n_steps) * 3, n_miners),
    }


def _bulk(store: Store, columns: dict[str, np.ndarray], **kwargs: object):  # type: ignore[no-untyped-def]
    metrics = {k: v for k, v in columns.items() if k not in ("miner_id", "ts")}
    return store.bulk_append_columns(columns["miner_id"], columns["ts"], **metrics, **kwargs)  # type: ignore[arg-type]


def test_bulk_append_has_the_same_semantics_as_write_samples(store: Store) -> None:
    columns = _columns(n_miners=3, n_steps=100)
    columns["temperature_c"][7] = np.nan
    first = _bulk(store, columns, quality=QUALITY_SIMULATED)
    assert (first.written, first.duplicates, first.miners_registered) == (300, 0, 3)
    assert _bulk(store, columns, quality=QUALITY_SIMULATED).duplicates == 300
    columns["power_w"][:10] = 1.0
    changed = _bulk(store, columns, quality=QUALITY_SIMULATED)
    assert (changed.written, changed.duplicates) == (10, 290)
    stored = store.read_samples("10.1.0.0")
    assert [s.power_w for s in stored[:10]] == [1.0] * 10
    assert stored[7].temperature_c is None
    assert stored[5].accepted_shares == 5000


def test_bulk_append_stores_boards_fans_and_quality_flags(store: Store) -> None:
    columns = _columns(n_miners=1, n_steps=4)
    columns["hashrate_ths"][1] = np.nan
    boards = np.full((4, 3), 33.0)
    _bulk(store, columns, board_hashrate_ths=boards, fan_speeds_rpm=np.full((4, 4), 4000.0), quality=2)
    stored = store.read_samples("10.1.0.0")[0]
    assert [b.index for b in stored.boards] == [0, 1, 2]
    assert stored.boards[0].hashrate_ths == 33.0 and stored.boards[0].temperature_c is None
    assert stored.fan_speeds_rpm == (4000.0,) * 4
    assert [s.quality for s in store.read_samples("10.1.0.0")] == [
        QUALITY_SIMULATED,
        QUALITY_SIMULATED | QUALITY_PARTIAL,
        QUALITY_SIMULATED,
        QUALITY_SIMULATED,
    ]


def test_counts_and_miner_stats(store: Store) -> None:
    assert store.counts().samples == 0 and store.counts().data_start is None
    store.write_samples([sample("10.0.0.1", step) for step in range(3)] + [sample("10.0.0.2", 7)])
    store.upsert_miners([Miner("10.0.0.3", "Antminer S21")])
    counts = store.counts()
    assert (counts.miners, counts.samples, counts.failure_events) == (3, 4, 0)
    assert (counts.data_start, counts.data_end) == (at(0), at(7))
    assert store.miner_stats() == {"10.0.0.1": (3, at(2)), "10.0.0.2": (1, at(7)), "10.0.0.3": (0, None)}


def test_concurrent_writers_and_readers_lose_nothing(store: Store) -> None:
    errors: list[BaseException] = []

    def write(miner: int) -> None:
        try:
            for chunk in range(10):
                store.write_samples([sample(f"10.2.0.{miner}", chunk * 10 + i) for i in range(10)])
                store.load_series([f"10.2.0.{miner}"])
                store.counts()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.counts().samples == 400
    assert all(count == 100 for count, _ in store.miner_stats().values())
