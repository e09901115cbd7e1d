"""Derived features on hand-built series with known answers (definitions in server/store/features.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from store_builders import at, sample

from server.errors import MinerNotFound
from server.records import FEATURE_COLUMNS, Miner, Sample
from server.store import Store

COL = {name: j for j, name in enumerate(FEATURE_COLUMNS)}


def _column(store: Store, name: str, miner_id: str = "10.0.0.1") -> list[float]:
    series = store.load_series([miner_id])[miner_id]
    return series.values[:, COL[name]].astype(np.float64).tolist()


def _same(actual: list[float], expected: list[float]) -> bool:
    return len(actual) == len(expected) and all(
        (math.isnan(a) and math.isnan(e)) or math.isclose(a, e, rel_tol=1e-5, abs_tol=1e-6)
        for a, e in zip(actual, expected, strict=True)
    )


def test_share_deltas_restart_after_a_counter_reset(store: Store) -> None:
    counters = [100, 150, 40, 90, 90]
    store.write_samples(
        [sample("10.0.0.1", i, accepted_shares=c, rejected_shares=c // 10) for i, c in enumerate(counters)]
    )
    assert _same(_column(store, "accepted_shares"), [math.nan, 50, 40, 50, 0])
    assert _same(_column(store, "rejected_shares"), [math.nan, 5, 4, 5, 0])


def test_rejection_rate_is_rejected_over_submitted_and_nan_without_shares(store: Store) -> None:
    store.write_samples(
        [
            sample("10.0.0.1", 0, accepted_shares=0, rejected_shares=0),
            sample("10.0.0.1", 1, accepted_shares=90, rejected_shares=10),
            sample("10.0.0.1", 2, accepted_shares=90, rejected_shares=10),
            sample("10.0.0.1", 3, accepted_shares=None, rejected_shares=12),
            sample("10.0.0.1", 4, accepted_shares=100, rejected_shares=13),
        ]
    )
    assert _same(_column(store, "rejection_rate"), [math.nan, 0.1, math.nan, math.nan, math.nan])


def test_gaps_are_explicit_rows_with_nan_and_observed_false(store: Store) -> None:
    store.write_samples([sample("10.0.0.1", step) for step in (0, 1, 4, 5)])
    series = store.load_series(["10.0.0.1"])["10.0.0.1"]
    assert len(series) == 6
    assert series.observed.tolist() == [True, True, False, False, True, True]
    assert np.isnan(series.values[2:4]).all()
    expected_times = np.array([at(i).replace(tzinfo=None) for i in range(6)], dtype="datetime64[s]")
    assert (series.timestamps == expected_times).all()
    assert series.values.dtype == np.float32 and series.values.shape == (6, len(FEATURE_COLUMNS))
    # The first row after a gap has no previous counter, so no delta.
    assert _same(_column(store, "accepted_shares"), [math.nan, 1000, math.nan, math.nan, math.nan, 1000])


def test_samples_off_the_grid_are_bucketed_and_the_latest_wins(store: Store) -> None:
    store.write_samples(
        [
            Sample("10.0.0.1", at(0, seconds=10), hashrate_ths=1.0),
            Sample("10.0.0.1", at(0, seconds=200), hashrate_ths=2.0),
            Sample("10.0.0.1", at(1, seconds=30), hashrate_ths=3.0),
        ]
    )
    series = store.load_series(["10.0.0.1"])["10.0.0.1"]
    assert series.values[:, COL["hashrate"]].tolist() == [2.0, 3.0]
    assert series.timestamps.tolist() == [at(0).replace(tzinfo=None), at(1).replace(tzinfo=None)]


def test_efficiency_is_hashrate_per_watt_and_nan_without_power(store: Store) -> None:
    store.write_samples(
        [
            sample("10.0.0.1", 0, hashrate_ths=110.0, power_w=3250.0),
            sample("10.0.0.1", 1, hashrate_ths=110.0, power_w=0.0),
            sample("10.0.0.1", 2, hashrate_ths=110.0, power_w=None),
        ]
    )
    assert _same(_column(store, "efficiency"), [110.0 / 3250.0, math.nan, math.nan])


def test_temperature_trend_is_the_slope_per_hour_over_the_trailing_hour(store: Store) -> None:
    # +1 °C every 5 minutes for 20 samples = 12 °C/h, then flat at the last value.
    temps = [60.0 + i for i in range(20)] + [79.0] * 15
    store.write_samples([sample("10.0.0.1", i, temperature_c=t) for i, t in enumerate(temps)])
    trend = _column(store, "temperature_trend")
    assert math.isnan(trend[0])  # one point has no slope
    assert _same(trend[1:20], [12.0] * 19)
    assert trend[29] > 0.0  # its trailing 12 rows (18..29) still hold a ramp value: 78 at row 18
    assert _same(trend[30:], [0.0] * 5)  # rows 19..30 onwards are all 79


def test_hashrate_stability_is_the_coefficient_of_variation(store: Store) -> None:
    hashrates = [100.0] * 12 + [90.0, 110.0] * 6 + [0.0] * 12
    store.write_samples([sample("10.0.0.1", i, hashrate_ths=h) for i, h in enumerate(hashrates)])
    stability = _column(store, "hashrate_stability")
    assert math.isnan(stability[0])  # a single value
    assert _same(stability[1:12], [0.0] * 11)
    assert _same([stability[23]], [0.1])  # population std 10 / mean 100
    assert math.isnan(stability[35])  # mean 0: undefined


def test_power_efficiency_trend_is_the_slope_of_efficiency_per_hour(store: Store) -> None:
    # Efficiency rises by 0.001 TH/s per W every sample = 0.012 per hour.
    rows = [
        sample("10.0.0.1", i, hashrate_ths=1000.0 * (0.03 + 0.001 * i), power_w=1000.0) for i in range(15)
    ]
    store.write_samples(rows)
    assert _same(_column(store, "power_efficiency_trend")[1:], [0.012] * 14)


def test_start_reads_a_look_back_so_the_first_rows_have_deltas_and_trends(store: Store) -> None:
    store.write_samples([sample("10.0.0.1", i, temperature_c=60.0 + i) for i in range(40)])
    series = store.load_series(["10.0.0.1"], start=at(20), end=at(30))["10.0.0.1"]
    assert len(series) == 10
    assert series.timestamps[0] == np.datetime64(at(20).replace(tzinfo=None), "s")
    assert series.values[0, COL["accepted_shares"]] == 1000.0
    assert series.values[0, COL["temperature_trend"]] == pytest.approx(12.0)


def test_recent_series_ends_at_the_newest_sample(store: Store) -> None:
    store.write_samples([sample("10.0.0.1", i) for i in range(30) if i != 27])
    series = store.recent_series("10.0.0.1", 5)
    assert series.timestamps[-1] == np.datetime64(at(29).replace(tzinfo=None), "s")
    assert len(series) == 5
    assert series.observed.tolist() == [True, True, False, True, True]
    assert len(store.recent_series("10.0.0.1", 500)) == 30  # shorter history: fewer rows


def test_whole_fleet_load_has_one_entry_per_miner(store: Store) -> None:
    store.write_samples([sample(f"10.0.0.{m}", i) for m in range(3) for i in range(10 + m)])
    store.upsert_miners([Miner("10.0.0.9", "Antminer S21")])
    fleet = store.load_series()
    assert {k: len(v) for k, v in fleet.items()} == {
        "10.0.0.0": 10,
        "10.0.0.1": 11,
        "10.0.0.2": 12,
        "10.0.0.9": 0,
    }
    assert fleet["10.0.0.9"].values.shape == (0, len(FEATURE_COLUMNS))
    assert len(store.recent_series("10.0.0.9", 5)) == 0


def test_series_of_an_unknown_miner_raise_miner_not_found(store: Store) -> None:
    with pytest.raises(MinerNotFound, match="no miner '10.9.9.9'"):
        store.load_series(["10.9.9.9"])
    with pytest.raises(MinerNotFound):
        store.recent_series("10.9.9.9", 12)
