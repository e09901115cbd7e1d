"""The per-miner baseline and 6 h context channels: causal trailing statistics on tiny real series."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_fleet import flat_series

from server.models.explain import occlusion_factors
from server.models.features import (
    CHANNEL_SOURCE,
    CONTEXT_SAMPLES,
    INPUT_SCHEMA,
    build_channels,
    history_rows,
    idle_resets,
    idle_rows,
    lagged,
    trailing_mean,
    trailing_min,
    trailing_std,
)
from server.records import FEATURE_COLUMNS, Miner

MINER = Miner("m1", "S19", nominal_hashrate_ths=100.0, nominal_power_w=3250.0)


def test_trailing_statistics_skip_missing_values_and_never_look_ahead() -> None:
    x = np.array([1.0, np.nan, 3.0, 5.0, 0.0], dtype=np.float32)
    assert np.allclose(trailing_mean(x, 2), [1.0, 1.0, 3.0, 4.0, 2.5])
    assert np.allclose(trailing_min(x, 3), [1.0, 1.0, 1.0, 3.0, 0.0])
    std = trailing_std(x, 3)
    assert np.isnan(std[0]) and np.isnan(std[1]) and std[3] == pytest.approx(1.0)
    assert np.isnan(trailing_mean(np.full(3, np.nan), 2)).all()
    assert np.allclose(lagged(x, 2)[2:], x[:3], equal_nan=True) and np.isnan(lagged(x, 2)[:2]).all()
    assert np.isnan(lagged(x, 9)).all()


def test_every_channel_names_its_source_feature() -> None:
    assert len(CHANNEL_SOURCE) == len(INPUT_SCHEMA)
    assert CHANNEL_SOURCE[: len(FEATURE_COLUMNS)] == tuple(range(len(FEATURE_COLUMNS)))
    assert CHANNEL_SOURCE[-1] == -1 and INPUT_SCHEMA[-1] == "missing_fraction"
    assert FEATURE_COLUMNS[CHANNEL_SOURCE[INPUT_SCHEMA.index("temperature_vs_yesterday")]] == "temperature"
    assert history_rows(288) == 288 + CONTEXT_SAMPLES


def test_temperature_vs_yesterday_cancels_the_daily_cycle_but_shows_a_rise() -> None:
    day = 288  # 24 h of 5-minute rows
    rows = 4 * day
    series = flat_series("m1", rows)
    series.values[:, 1] = 60.0 + 6.0 * np.sin(2 * np.pi * np.arange(rows) / day)  # daily cycle only
    series.values[-10:, 1] += 5.0  # a precursor: 5 C hotter than usual
    channels = build_channels(series, MINER, share_reference_samples=day)
    vs_yesterday = channels[:, INPUT_SCHEMA.index("temperature_vs_yesterday")]
    vs_median = channels[:, INPUT_SCHEMA.index("temperature_vs_median")]
    assert np.isnan(vs_yesterday[: day - 2]).all()  # no day of history yet: missing, not invented
    assert np.abs(vs_yesterday[2 * day : -10]).max() < 0.3  # the cycle cancels (the lag is 5 min off)
    assert vs_yesterday[-5:] == pytest.approx(np.full(5, 5.0), abs=0.6)
    assert np.abs(vs_median[2 * day : -10]).max() > 4.0  # a trailing median does not cancel the cycle


def test_hashrate_down_counts_reboots_over_the_context() -> None:
    rows = 400
    series = flat_series("m1", rows)
    series.values[:, 0] = 100.0
    series.values[380:384, 0] = 0.0  # four samples of a reboot
    channels = build_channels(series, MINER)
    down = channels[:, INPUT_SCHEMA.index("hashrate_down_6h")]
    low = channels[:, INPUT_SCHEMA.index("hashrate_min_6h")]
    assert down[379] == 0.0 and down[-1] == pytest.approx(4 / CONTEXT_SAMPLES)
    assert low[-1] == pytest.approx(0.0) and low[379] == pytest.approx(1.0, abs=1e-3)


def test_occlusion_credits_derived_channels_to_their_feature() -> None:
    channel = INPUT_SCHEMA.index("temperature_vs_yesterday")

    def risk(x: np.ndarray) -> np.ndarray:  # only the derived channel matters
        return x[:, :, channel].mean(axis=1)

    x = np.zeros((8, len(INPUT_SCHEMA)), dtype=np.float32)
    x[:, channel] = 3.0
    factors = occlusion_factors(risk, x, np.zeros((8, len(FEATURE_COLUMNS)), dtype=np.float32))
    assert factors[0].feature == "temperature" and factors[0].importance == pytest.approx(1.0)


def test_baselines_restart_after_an_hour_idle_and_skip_idle_rows() -> None:
    day = 288
    series = flat_series("m1", 4 * day)
    hot = slice(day, day + 200)
    series.values[hot, 1] += 15.0  # a failing fan heats the miner for ~17 h ...
    series.values[hot, 2] *= 0.5
    down = slice(day + 200, day + 290)  # ... then it is down for 7.5 h (repair)
    series.values[down, 0] = 0.0
    series.values[down, 1] = 25.0  # cooled to ambient
    channels = build_channels(series, MINER, share_reference_samples=day)
    after = slice(day + 290, day + 290 + 60)  # the first 5 h after the repair: a healthy miner again

    def column(name: str, rows: slice) -> np.ndarray:
        return channels[rows, INPUT_SCHEMA.index(name)]

    # Not compared with the hot, slow-fan day before the repair (that would read -15 C and x2 fan).
    assert np.abs(column("temperature_vs_median", after)).max() < 2.5
    assert np.abs(column("fan_vs_median", after) - 1.0).max() < 0.1
    assert np.abs(column("hashrate_vs_median", after) - 1.0).max() < 0.1
    assert np.isnan(column("temperature_vs_yesterday", after)).all()
    assert column("hashrate_down_6h", after).max() == 0.0
    # A day after the repair, "yesterday" is a hashing row again, not the cold downtime.
    next_day = column("temperature_vs_yesterday", slice(day + 290 + day + 5, 4 * day))
    assert np.isfinite(next_day).all() and np.abs(next_day).max() < 3.0
    # Before the outage nothing changes: the hot period reads hot against its baseline.
    assert column("temperature_vs_median", slice(day + 100, day + 101))[0] > 10.0


def test_short_stops_do_not_restart_the_baselines() -> None:
    day = 288
    series = flat_series("m1", 2 * day)
    series.values[day : day + 6, 0] = 0.0  # a 30-minute reboot: idle, but not long enough
    series.values[day + 100 :, 1] += 5.0
    assert idle_resets(idle_rows(series.values[:, 0], series.observed, 100.0)).tolist() == [0]
    channels = build_channels(series, MINER, share_reference_samples=day)
    assert channels[day + 110, INPUT_SCHEMA.index("temperature_vs_median")] > 4.0
    series.observed[day : day + 12] = False  # an hour without samples restarts them
    assert idle_resets(idle_rows(series.values[:, 0], series.observed, 100.0)).tolist() == [0, day + 12]
