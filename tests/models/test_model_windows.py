"""Channels, labels and splits on hand-built series (5-min rows; small windows so rows are countable)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from synthetic_fleet import T0, Fleet, at, failure, flat_series

from server.models.features import CHANNEL_SOURCE, INPUT_SCHEMA, NormStats, build_channels, trailing_median
from server.models.windows import (
    WindowConfig,
    build_windows,
    split_by_miner,
    split_by_time,
    split_for_validation,
)
from server.records import FailureMode, Miner, PlannedState, PlannedStateKind

# Window of 4 rows, stride 1; gap 30 min = 6 rows; horizon 1 h = 12 rows; no settling after repair.
CFG = WindowConfig(sequence_length=4, stride=1, horizon_hours=1.0, gap_hours=0.5, post_repair_hours=0.0)
MINER = Miner("m1", "S19", "Bitmain", 100.0, 3250.0)
ROWS = 200


def end_rows(windows) -> np.ndarray:
    """Grid row of each window's last sample."""
    start = np.datetime64(T0.replace(tzinfo=None), "s")
    return ((windows.window_ends - start) // np.timedelta64(300, "s")).astype(int)


def test_windows_whose_outcome_is_past_the_data_end_are_dropped() -> None:
    windows = build_windows({"m1": flat_series("m1", ROWS)}, {"m1": MINER}, config=CFG)
    ends = end_rows(windows)
    assert ends.min() == 3
    assert ends.max() == ROWS - 1 - 6 - 12  # window end + gap + horizon must not pass the last row
    assert windows.labels.sum() == 0 and windows.healthy.all()


def test_failure_after_the_gap_is_positive_and_one_inside_the_gap_drops_the_window() -> None:
    events = [failure("m1", 100, 110)]
    windows = build_windows({"m1": flat_series("m1", ROWS)}, {"m1": MINER}, events, config=CFG)
    ends, labels = end_rows(windows), dict(zip(end_rows(windows), windows.labels, strict=True))
    assert labels[100 - 18] == 1.0  # failure exactly at window end + gap + horizon
    assert labels[100 - 7] == 1.0  # first row after the gap
    assert labels[100 - 19] == 0.0
    assert not set(range(94, 100)) & set(ends)  # failure within the gap: already under way, dropped
    assert set(np.flatnonzero(windows.labels)) == {i for i, e in enumerate(ends) if 82 <= e <= 93}


def test_windows_overlapping_failure_downtime_are_dropped_and_later_ones_kept() -> None:
    events = [failure("m1", 100, 110)]
    windows = build_windows({"m1": flat_series("m1", ROWS)}, {"m1": MINER}, events, config=CFG)
    starts = set(end_rows(windows) - 3)
    assert not any(s <= 110 and s + 3 >= 100 for s in starts)  # rows 100..110 are downtime
    assert 111 in starts


def test_unrepaired_failure_is_assumed_down_for_the_configured_time() -> None:
    cfg = WindowConfig(**{**CFG.__dict__, "unrepaired_downtime_hours": 2.0})
    windows = build_windows(
        {"m1": flat_series("m1", ROWS)}, {"m1": MINER}, [failure("m1", 100, None)], config=cfg
    )
    starts = set(end_rows(windows) - 3)
    assert not starts & set(range(97, 125)) and 125 in starts


def test_events_inside_planned_states_are_never_positive_and_planned_windows_dropped() -> None:
    planned = [PlannedState("p1", "m1", PlannedStateKind.MAINTENANCE, at(95), at(120))]
    events = [failure("m1", 100, 110)]  # logged during maintenance: not a failure
    windows = build_windows({"m1": flat_series("m1", ROWS)}, {"m1": MINER}, events, planned, config=CFG)
    starts = end_rows(windows) - 3
    assert windows.labels.sum() == 0
    assert not any(s <= 120 and s + 3 >= 95 for s in starts)
    assert windows.healthy.all()


def test_outage_and_pool_events_are_not_positive_labels_and_not_healthy() -> None:
    for mode in (FailureMode.OUTAGE, FailureMode.POOL):
        events = [failure("m1", 100, 110, mode)]
        windows = build_windows({"m1": flat_series("m1", ROWS)}, {"m1": MINER}, events, config=CFG)
        ends = end_rows(windows)
        assert windows.labels.sum() == 0
        assert not windows.healthy[(ends >= 82) & (ends < 100)].any()


def test_mostly_missing_windows_are_dropped() -> None:
    series = flat_series("m1", ROWS)
    series.observed[50:53] = False  # rows 50, 51, 52
    series.values[50:53] = np.nan
    windows = build_windows({"m1": series}, {"m1": MINER}, config=CFG)
    starts = set(end_rows(windows) - 3)
    assert not {49, 50} & starts  # 3 of 4 rows missing
    assert {47, 48, 51, 52} <= starts  # at most half missing


def test_channels_are_ratios_to_nominal_values_with_a_missing_fraction() -> None:
    series = flat_series("m1", 10)
    series.values[:, 0] = 50.0  # hashrate TH/s
    series.values[:, 3] = 1625.0  # power W
    series.values[:, 7] = 50.0 / 1625.0  # efficiency TH/s per W
    series.values[2, 1] = np.nan
    series.observed[5] = False
    series.values[5] = np.nan
    channels = build_channels(series, MINER)
    assert channels.shape == (10, len(INPUT_SCHEMA)) == (10, len(CHANNEL_SOURCE))
    assert INPUT_SCHEMA[-1] == "missing_fraction"
    assert np.allclose(channels[[0, 1], 0], 0.5) and np.allclose(channels[[0, 1], 3], 0.5)
    assert np.allclose(channels[0, 7], 1.0)
    assert channels[2, -1] == pytest.approx(1 / 11) and channels[5, -1] == 1.0 and channels[0, -1] == 0.0


def test_trailing_median_looks_only_backwards() -> None:
    x = np.array([1, np.nan, 3, 5, np.nan, 7, 2], dtype=np.float32)
    assert np.allclose(trailing_median(x, 3), [1, 1, 2, 4, 4, 6, 4.5])


def test_norm_stats_use_only_the_given_rows_and_turn_missing_into_zero() -> None:
    channels = np.array([[1.0, 0.0], [3.0, 1.0], [100.0, 0.0], [np.nan, 1.0]], dtype=np.float32)
    norm = NormStats.fit(channels, np.array([True, True, False, True]))
    assert norm.mean[0] == pytest.approx(2.0) and norm.std[0] == pytest.approx(1.0)
    assert (norm.mean[-1], norm.std[-1]) == (0.0, 1.0)  # the missing channel stays a fraction
    scaled = norm.apply(channels)
    assert scaled[3, 0] == 0.0 and scaled[2, 0] == 10.0  # NaN -> mean; outliers clipped
    assert NormStats.from_dict(norm.to_dict()).mean.tolist() == norm.mean.tolist()


def test_split_by_miner_never_shares_a_miner_and_keeps_failures_on_both_sides(fleet: Fleet) -> None:
    windows = build_windows(fleet.series, fleet.miners, fleet.failures, fleet.planned)
    train, val = split_by_miner(windows, 0.34, seed=3)
    assert not set(train.miner_ids) & set(val.miner_ids)
    assert len(train) + len(val) == len(windows)
    assert train.labels.sum() > 0 and val.labels.sum() > 0
    again, _ = split_by_miner(windows, 0.34, seed=3)
    assert np.array_equal(again.starts, train.starts)


def test_split_by_time_evaluates_on_a_later_period_without_label_leakage(fleet: Fleet) -> None:
    windows = build_windows(fleet.series, fleet.miners, fleet.failures, fleet.planned)
    cutoff = T0 + timedelta(days=2)
    earlier, later = split_by_time(windows, cutoff)
    cut = np.datetime64(cutoff.replace(tzinfo=None), "s")
    horizon = np.timedelta64(int((windows.config.gap_hours + windows.config.horizon_hours) * 3600), "s")
    assert len(earlier) and len(later)
    assert (earlier.window_ends + horizon <= cut).all()
    assert (later.window_ends - np.timedelta64(23 * 300, "s") >= cut).all()


def test_a_fleet_too_small_to_hold_out_miners_validates_on_each_miners_last_part(fleet: Fleet) -> None:
    windows = build_windows(fleet.series, fleet.miners, fleet.failures, fleet.planned)
    miners = np.unique(windows.miner_ids)
    assert not split_for_validation(windows, 0.34, seed=3).by_time  # a third of the fleet is a miner
    small = split_for_validation(windows, 0.5 / miners.size, seed=3)  # rounds to no whole miner
    assert small.by_time
    horizon = np.timedelta64(int((windows.config.gap_hours + windows.config.horizon_hours) * 3600), "s")
    length = np.timedelta64((windows.config.sequence_length - 1) * 300, "s")
    for miner in miners:  # every miner on both sides; no training label reaches into its validation
        train = small.train.window_ends[small.train.miner_ids == miner]
        val = small.val.window_ends[small.val.miner_ids == miner]
        assert len(train) and len(val)
        assert train.max() + horizon <= val.min() - length
