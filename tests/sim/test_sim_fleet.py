"""The demo fleet simulator: determinism, plausible telemetry, failures with precursors, seeding."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from server.records import FEATURE_COLUMNS, EventSource, FailureMode, PlannedStateKind
from server.sim import HARDWARE, SimulatedFleet, miner_ip, seed_store, simulate_fleet
from server.store import Store

END = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _ts(when: datetime) -> np.datetime64:
    return np.datetime64(when.replace(tzinfo=None), "s")


def _rows(fleet: SimulatedFleet, miner_id: str, start: datetime, end: datetime) -> np.ndarray:
    s = fleet.samples
    return (s.miner_id == miner_id) & (s.ts >= _ts(start)) & (s.ts < _ts(end))


def test_same_seed_gives_the_same_fleet_and_another_seed_does_not() -> None:
    first = simulate_fleet(10, 3, 11, end=END)
    second = simulate_fleet(10, 3, 11, end=END)
    other = simulate_fleet(10, 3, 12, end=END)
    for name in ("miner_id", "ts", "hashrate_ths", "temperature_c", "accepted_shares", "fan_speeds_rpm"):
        assert np.array_equal(
            getattr(first.samples, name), getattr(second.samples, name), equal_nan=name != "miner_id"
        )
    assert (first.miners, first.failures, first.episodes) == (second.miners, second.failures, second.episodes)
    assert not np.array_equal(first.samples.hashrate_ths[:100], other.samples.hashrate_ths[:100])


def test_small_fleet_is_on_the_grid_and_ends_at_end() -> None:
    small = simulate_fleet(10, 3, 1, end=END + timedelta(seconds=123))
    assert small.end == END
    assert len({m.miner_id for m in small.miners}) == 10
    seconds = small.samples.ts.astype(np.int64)
    assert (seconds % 300 == 0).all()
    assert seconds.max() == int(END.timestamp())
    assert len(small.samples) > 0.95 * 10 * 3 * 288


def test_miners_are_numbered_by_ip_from_192_168_1_100() -> None:
    assert [miner_ip(i) for i in (0, 1, 154, 155, 156, 409)] == [
        "192.168.1.100",
        "192.168.1.101",
        "192.168.1.254",
        "192.168.2.1",
        "192.168.2.2",
        "192.168.3.1",
    ]


def test_telemetry_is_plausible_for_each_model(fleet: SimulatedFleet) -> None:
    s = fleet.samples
    models = {m.miner_id: m for m in fleet.miners}
    assert {m.hardware_model for m in fleet.miners} == {h.name for h in HARDWARE}
    for hardware in HARDWARE:
        ids = [i for i, m in models.items() if m.hardware_model == hardware.name]
        rows = np.isin(s.miner_id, ids) & (s.hashrate_ths > 0)
        assert np.median(s.hashrate_ths[rows]) == pytest.approx(hardware.hashrate_ths, rel=0.05)
        assert np.median(s.power_w[rows]) == pytest.approx(hardware.power_w, rel=0.05)
        low, high = np.nanpercentile(s.temperature_c[rows], [5, 95])
        assert low > 55.0 and high < 85.0
        low, high = np.nanpercentile(s.fan_speed_rpm[rows], [5, 95])
        assert low > 2800.0 and high < 6200.0
    assert s.fan_speeds_rpm.shape == (len(s), 4) and s.board_hashrate_ths.shape == (len(s), 3)
    assert np.allclose(s.board_hashrate_ths.sum(axis=1), s.hashrate_ths)


def test_reject_rate_is_a_fraction_of_a_percent(fleet: SimulatedFleet) -> None:
    s = fleet.samples
    same_miner = s.miner_id[1:] == s.miner_id[:-1]
    accepted = np.diff(s.accepted_shares)[same_miner]
    rejected = np.diff(s.rejected_shares)[same_miner]
    counting = (accepted > 0) & (rejected >= 0)
    rate = rejected[counting].sum() / (accepted[counting].sum() + rejected[counting].sum())
    assert 0.001 < rate < 0.01


def test_counters_reset_after_downtime(fleet: SimulatedFleet) -> None:
    s = fleet.samples
    same_miner = s.miner_id[1:] == s.miner_id[:-1]
    drops = (np.diff(s.accepted_shares) < 0) & same_miner
    assert drops.sum() >= len(fleet.failures)
    assert (s.accepted_shares >= 0).all() and (s.rejected_shares <= s.accepted_shares + 10_000).all()


def test_missing_samples_and_readings_occur(fleet: SimulatedFleet) -> None:
    expected = 60 * 30 * 288
    assert 0.9 * expected < len(fleet.samples) < expected
    assert np.isnan(fleet.samples.temperature_c).any() and np.isnan(fleet.samples.fan_speed_rpm).any()
    assert not np.isnan(fleet.samples.hashrate_ths).any()


def test_failure_count_is_enough_to_train_on_and_some_miners_stay_healthy(fleet: SimulatedFleet) -> None:
    assert 40 <= len(fleet.failures) <= 80
    assert all(e.source == EventSource.SIMULATOR for e in fleet.failures)
    failed = {e.miner_id for e in fleet.failures}
    assert 60 - len(failed) >= 5
    modes = Counter(e.mode for e in fleet.failures)
    assert {FailureMode.FAN, FailureMode.THERMAL, FailureMode.HASH_BOARD, FailureMode.PSU} <= set(modes)
    for event in fleet.failures:
        assert event.repaired_at is None or event.repaired_at > event.occurred_at
        assert event.occurred_at <= fleet.end


def test_every_failure_has_a_ground_truth_episode(fleet: SimulatedFleet) -> None:
    truth = {(e.miner_id, e.failure_at) for e in fleet.episodes if e.failure_at is not None}
    assert all((f.miner_id, f.occurred_at) in truth for f in fleet.failures)
    assert any(e.kind == "pool" and e.failure_at is None for e in fleet.episodes)
    for episode in fleet.episodes:
        assert episode.start <= episode.end
        if episode.failure_at is not None:
            assert episode.start <= episode.failure_at


def _window_mean(fleet: SimulatedFleet, column: np.ndarray, kind: str, hours: float) -> float:
    values = [
        column[_rows(fleet, e.miner_id, e.failure_at - timedelta(hours=hours), e.failure_at)]
        for e in fleet.episodes
        if e.kind == kind and e.failure_at is not None and e.failure_at <= fleet.end
    ]
    assert values, kind
    return float(np.nanmean(np.concatenate(values)))


def test_fan_and_thermal_failures_are_preceded_by_heat(fleet: SimulatedFleet) -> None:
    fleet_mean = float(np.nanmean(fleet.samples.temperature_c[fleet.samples.hashrate_ths > 0]))
    assert _window_mean(fleet, fleet.samples.temperature_c, "fan", 6) > fleet_mean + 3.0
    assert _window_mean(fleet, fleet.samples.temperature_c, "dust", 24) > fleet_mean + 3.0


def test_hash_board_failures_are_preceded_by_board_dropouts(fleet: SimulatedFleet) -> None:
    s = fleet.samples
    board_down = (s.board_hashrate_ths == 0).any(axis=1) & (s.hashrate_ths > 0)
    assert _window_mean(fleet, board_down.astype(float), "hash_board", 2) > 0.3
    assert board_down.mean() < 0.02


def test_reboot_loops_show_zero_hashrate_drops(fleet: SimulatedFleet) -> None:
    zero = (fleet.samples.hashrate_ths == 0).astype(float)
    assert _window_mean(fleet, zero, "reboot_loop", 3) > 0.1


def test_demo_miner_has_a_failing_fan_at_the_end(fleet: SimulatedFleet) -> None:
    demo = fleet.miners[0]
    assert (demo.miner_id, demo.hardware_model) == ("192.168.1.100", "Antminer S19 Pro")
    active = [e for e in fleet.episodes if e.miner_id == demo.miner_id and e.end >= fleet.end]
    assert [(e.kind, e.mode) for e in active if e.kind != "pool"] == [("fan", FailureMode.FAN)]
    fan = next(e for e in active if e.kind == "fan")
    assert fan.failure_at is not None and fan.failure_at > fleet.end
    assert not [
        f
        for f in fleet.failures
        if f.miner_id == demo.miner_id and f.occurred_at > fleet.end - timedelta(days=2)
    ]
    s = fleet.samples
    last = _rows(fleet, demo.miner_id, fleet.end - timedelta(minutes=115), fleet.end + timedelta(seconds=1))
    before = _rows(
        fleet, demo.miner_id, fleet.end - timedelta(days=2, hours=2), fleet.end - timedelta(days=2)
    )
    assert last.sum() == 24
    assert s.fan_speeds_rpm[last, 0].mean() < 0.6 * s.fan_speeds_rpm[before, 0].mean()
    assert np.nanmean(s.temperature_c[last]) > np.nanmean(s.temperature_c[before]) + 5.0


def test_curtailments_are_planned_zero_hashrate_and_never_failures(fleet: SimulatedFleet) -> None:
    assert fleet.planned_states
    for state in fleet.planned_states:
        rows = _rows(fleet, state.miner_id, state.start, state.end)
        assert rows.any() and (fleet.samples.hashrate_ths[rows] == 0).all()
        assert not any(
            f.miner_id == state.miner_id and state.start <= f.occurred_at <= state.end for f in fleet.failures
        )


def test_seeding_a_store_writes_everything_once(tmp_path: Path) -> None:
    small = simulate_fleet(10, 3, 5, end=END)
    store = Store.open(tmp_path / "fleet.duckdb")
    try:
        result = seed_store(store, small)
        assert result.written == len(small.samples)
        counts = store.counts()
        assert (counts.miners, counts.samples, counts.failure_events) == (
            10,
            len(small.samples),
            len(small.failures),
        )
        assert counts.data_end == small.end
        assert seed_store(store, small).duplicates == len(small.samples)
        assert store.list_planned_states() == sorted(
            small.planned_states, key=lambda p: (p.start, p.miner_id, p.state_id)
        )
        demo = store.recent_series("192.168.1.100", 24)
        assert len(demo) == 24 and demo.observed.all()
        assert demo.values.shape == (24, len(FEATURE_COLUMNS))
        assert not np.isnan(demo.values[1:, :6]).all()
        stored = store.get_miner("SIM000000")
        assert stored is not None and stored.miner_id == "192.168.1.100"
    finally:
        store.close()


def test_demo_fleets_ending_at_midnight_on_different_days_are_the_same_fleet_shifted() -> None:
    # The server seeds the demo to end at the last midnight UTC: runs on different days must get the
    # same telemetry (the daily ambient cycle is tied to the UTC hour), only shifted by whole days.
    monday = simulate_fleet(12, 4, 7, end=datetime(2026, 11, 23, tzinfo=UTC))
    thursday = simulate_fleet(12, 4, 7, end=datetime(2026, 11, 26, tzinfo=UTC))
    assert np.array_equal(thursday.samples.ts - monday.samples.ts, np.full(len(monday.samples), 3 * 86400))
    for name in ("hashrate_ths", "temperature_c", "fan_speed_rpm", "power_w", "accepted_shares"):
        assert np.array_equal(getattr(monday.samples, name), getattr(thursday.samples, name), equal_nan=True)
    # ...whereas ending at another hour of the day changes the demo miner's readings
    noon = simulate_fleet(12, 4, 7, end=datetime(2026, 11, 26, 12, tzinfo=UTC))
    assert not np.array_equal(noon.samples.temperature_c, monday.samples.temperature_c, equal_nan=True)


def test_confounders_hit_whole_sites_and_are_recorded_as_site_events(fleet: SimulatedFleet) -> None:
    sites = {m.miner_id: m.site for m in fleet.miners}
    assert {e.kind for e in fleet.site_events} >= {"heat_wave", "pool_outage"}
    for event in fleet.site_events:
        members = [m for m, s in sites.items() if s == event.site]
        assert set(event.miner_ids) <= set(members) and len(event.miner_ids) >= 0.8 * len(members)
    heat = next(e for e in fleet.site_events if e.kind == "heat_wave")
    s = fleet.samples
    inside = np.isin(s.miner_id, heat.miner_ids) & (s.ts >= _ts(heat.start)) & (s.ts <= _ts(heat.end))
    before = (
        np.isin(s.miner_id, heat.miner_ids)
        & (s.ts >= _ts(heat.start - timedelta(days=1)))
        & (s.ts <= _ts(heat.end - timedelta(days=1)))
    )
    assert np.nanmean(s.temperature_c[inside]) > np.nanmean(s.temperature_c[before]) + 2.0
    assert {c.kind for c in fleet.contexts} == {"reboot", "firmware_update"}
    drifts = [e for e in fleet.episodes if e.kind == "drift"]
    assert drifts and all(e.failure_at is None for e in drifts)
    cleanings = {
        (p.miner_id, p.start) for p in fleet.planned_states if p.kind == PlannedStateKind.MAINTENANCE
    }
    assert all((e.miner_id, e.end) in cleanings for e in drifts)
