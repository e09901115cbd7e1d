"""The anomaly decision on hand-built error series: own baseline, drifts, context, site events."""

from __future__ import annotations

import numpy as np

from server.domain.anomaly_decision import (
    DEFAULT_DECISION,
    MinerInput,
    Prior,
    Suppression,
    context_reasons,
    decide_site,
    persistent,
    restarts,
)

STEP = 300
HOUR = 3600
PRIOR = Prior(median=float(np.log(0.05)), scale=0.3)


def _noise(n: int, level: float, seed: int) -> np.ndarray:
    return level * np.exp(np.random.default_rng(seed).normal(0.0, 0.2, n))


def _item(
    errors: np.ndarray, context: np.ndarray | None = None, t0: int = 1_700_000_000 // STEP * STEP
) -> MinerInput:
    ends = t0 + STEP * np.arange(errors.shape[0], dtype=np.int64)
    return MinerInput(ends, errors, np.zeros(errors.shape[0], dtype=np.int64) if context is None else context)


def test_each_miner_is_judged_against_its_own_error_level() -> None:
    days = 3 * 288
    quiet, loud = _noise(days, 0.05, 1), _noise(days, 0.4, 2)  # the loud miner's normal is 8x the prior
    decisions, events = decide_site("", {"quiet": _item(quiet), "loud": _item(loud)}, PRIOR)
    after_baseline = slice(288, None)
    assert not decisions["loud"].is_anomaly[after_baseline].any()
    assert not decisions["quiet"].is_anomaly[after_baseline].any()
    assert events == []
    # ...and a jump of the quiet miner to the loud one's level is an anomaly
    jumped = quiet.copy()
    jumped[600:660] *= 8.0
    decisions, _ = decide_site("", {"quiet": _item(jumped)}, PRIOR)
    flagged = np.flatnonzero(decisions["quiet"].is_anomaly)
    assert flagged.size and 600 <= flagged.min() <= 603 and flagged.max() < 664
    assert decisions["quiet"].score[610] >= DEFAULT_DECISION.z_threshold


def test_a_slow_drift_over_days_is_flagged_and_does_not_become_the_new_normal() -> None:
    n = 9 * 288
    errors = _noise(n, 0.05, 3)
    drift = np.arange(n - 5 * 288, n)
    errors[drift] *= np.exp(np.linspace(0.0, 2.5, drift.size))  # x12 over 4 days, slower than noise
    decisions, _ = decide_site("", {"m": _item(errors)}, PRIOR)
    flags = decisions["m"].is_anomaly
    assert not flags[: n - 5 * 288].any()
    first = int(np.flatnonzero(flags)[0])
    assert first < n - 288  # flagged before its last day
    assert flags[first + 288 :].mean() > 0.95  # and it stays flagged: the baseline kept the old normal


def test_persistence_needs_k_of_the_last_n_windows() -> None:
    above = np.array([1, 0, 1, 0, 0, 1, 1, 1, 0], dtype=bool)
    assert persistent(above, 3, 4).tolist() == [False, False, False, False, False, False, False, True, True]


def test_restarts_are_found_after_idling_or_a_long_gap_not_after_a_short_blip() -> None:
    t = np.arange(40, dtype=np.int64) * STEP
    hashrate = np.full(40, 100.0)
    observed = np.ones(40, dtype=bool)
    hashrate[5:7] = 0.0  # a reboot: two samples without hashing
    observed[15:18] = False  # a network blip of 3 samples
    observed[25:32] = False  # 35 min of nothing
    spans = restarts(t, hashrate, observed, 100.0, idle_samples=6)
    assert spans.tolist() == [[5 * STEP, 7 * STEP], [25 * STEP, 32 * STEP]]


def test_context_is_planned_states_downtime_and_warm_ups_but_not_a_reboot_loop() -> None:
    ends = np.arange(0, 48 * HOUR, STEP, dtype=np.int64)
    warm = int(DEFAULT_DECISION.warmup_hours * HOUR)
    planned = [(2 * HOUR, 4 * HOUR)]
    downtime = [(20 * HOUR, 22 * HOUR)]
    single = np.array([[30 * HOUR, 30 * HOUR + 600]])
    reasons = context_reasons(ends, planned, downtime, single)

    def at(hours: float) -> int:
        return int(reasons[int(hours * HOUR) // STEP])

    assert at(3) == Suppression.PLANNED_STATE
    assert at(4 + warm / HOUR - 0.1) == Suppression.WARM_UP
    assert at(4 + warm / HOUR + 0.5) == Suppression.NONE
    assert at(21) == Suppression.FAILURE_DOWNTIME
    assert at(22.5) == Suppression.WARM_UP
    assert at(30.1) == Suppression.WARM_UP
    assert at(1) == Suppression.NONE
    loop = np.array([[h * HOUR, h * HOUR + 300] for h in (30.0, 31.0, 32.0, 33.0)])
    looping = context_reasons(ends, [], [], loop)
    assert looping[int(30.5 * HOUR) // STEP] == Suppression.WARM_UP  # one restart so far: context
    assert looping[int(32.5 * HOUR) // STEP] == Suppression.NONE  # the third within 6 h: a loop, a fault


def test_a_condition_hitting_the_site_at_once_is_one_site_event_not_miner_anomalies() -> None:
    n = 3 * 288
    items = {f"m{i}": _item(_noise(n, 0.05, 10 + i)) for i in range(10)}
    wave = slice(2 * 288, 2 * 288 + 72)  # 6 h on 8 of 10 miners
    for i in range(8):
        items[f"m{i}"].errors[wave] *= 10.0
    items["m9"].errors[2 * 288 - 36 :] *= 10.0  # m9's own fault began 3 h before the wave
    decisions, events = decide_site("row-1", items, PRIOR)
    assert len(events) == 1
    event = events[0]
    assert event.site == "row-1" and event.peak_miners >= 8
    assert abs(event.start - int(items["m0"].ends[wave.start])) <= 3 * STEP
    for i in range(8):
        d = decisions[f"m{i}"]
        assert not d.is_anomaly.any()
        assert (d.suppression[wave][d.deviates[wave]] == Suppression.SITE_EVENT).all()
    own = decisions["m9"]
    assert own.is_anomaly[2 * 288 - 30 : 2 * 288].all() and own.is_anomaly[wave].any()


def test_a_few_miners_with_their_own_faults_are_not_a_site_event() -> None:
    n = 3 * 288
    items = {f"m{i}": _item(_noise(n, 0.05, 30 + i)) for i in range(10)}
    items["m0"].errors[2 * 288 :] *= 10.0
    items["m1"].errors[2 * 288 + 50 :] *= 10.0
    decisions, events = decide_site("row-1", items, PRIOR)
    assert events == []
    assert decisions["m0"].is_anomaly[2 * 288 + 10 :].all()
    assert decisions["m1"].is_anomaly[2 * 288 + 60 :].all()


def _site(n: int, miners: int, seed: int) -> dict[str, MinerInput]:
    """A site of quiet miners with temperature (70 °C +- noise) and rejection rate (1 %) readings."""
    rng = np.random.default_rng(seed)
    items = {}
    for i in range(miners):
        item = _item(_noise(n, 0.05, seed + i))
        item.temperature = 70.0 + rng.normal(0.0, 0.3, n)
        item.hashrate = 1.0 + rng.normal(0.0, 0.005, n)
        item.rejection = 0.01 + rng.normal(0.0, 0.002, n)
        items[f"m{i}"] = item
    return items


def test_a_site_wide_restart_is_one_site_event_and_its_footprint_is_not_anomalies() -> None:
    n, at = 5 * 288, 3 * 288
    items = _site(n, 10, 50)
    for i, item in enumerate(items.values()):
        resume = int(item.ends[at + i % 3])  # all ten within 15 minutes: a firmware update
        item.restart_spans = np.array([[resume - 600, resume]])
        item.context = context_reasons(item.ends, [], [], item.restart_spans)
        # new readings: the model's error rises for the next 20 h, on two miners far more
        item.errors[at : at + 240] *= 30.0 if i in (1, 2) else 1.3
    items["m0"].temperature[at + 140 :] += 8.0  # m0's own fault, 7 h after its warm-up ended
    decisions, events = decide_site("row-1", items, PRIOR)
    restarts_found = [e for e in events if e.kind == "restart"]
    assert len(restarts_found) == 1 and len(restarts_found[0].miner_ids) == 10
    event = restarts_found[0]
    assert event.end - event.start >= DEFAULT_DECISION.site_restart_hours * HOUR
    footprint = slice(at + 120, at + 240)  # after the warm-up, before the readings settle
    for i in range(1, 10):
        d = decisions[f"m{i}"]
        assert not d.is_anomaly.any()
        assert (d.suppression[footprint][d.deviates[footprint]] == Suppression.SITE_EVENT).all()
        assert d.deviates[footprint].all() == (i in (1, 2))
    assert decisions["m0"].is_anomaly[at + 150 : at + 240].all()  # hotter than the site: its own
    # ...without the restart spans (what the telemetry says), the same errors flood
    for item in items.values():
        item.restart_spans = None
    blind, _ = decide_site("row-1", items, PRIOR)
    assert blind["m1"].is_anomaly[footprint].mean() > 0.5 and blind["m2"].is_anomaly[footprint].mean() > 0.5


def test_warm_up_windows_do_not_count_towards_k_of_n() -> None:
    n, at = 3 * 288, 2 * 288
    warm = int(DEFAULT_DECISION.warmup_hours * HOUR) // STEP
    for after, flagged in ((2, False), (8, True)):
        errors = _noise(n, 0.05, 60)
        errors[at : at + warm + after] *= 20.0  # deviates through its warm-up and `after` windows on
        ends = _item(errors).ends
        context = context_reasons(ends, [], [], np.array([[int(ends[at]) - 600, int(ends[at])]]))
        decisions, _ = decide_site("", {"m": _item(errors, context)}, PRIOR)
        d = decisions["m"]
        assert bool(d.is_anomaly.any()) is flagged
        if flagged:  # from the k-th window after the warm-up, not the first
            first = int(np.flatnonzero(d.is_anomaly)[0])
            assert first == at + warm + DEFAULT_DECISION.persist_k  # warm-up ends at resume + warm


def test_a_pool_outage_of_the_site_is_a_site_event_but_one_miners_pool_trouble_is_its_own() -> None:
    n, at = 4 * 288, 3 * 288
    items = _site(n, 10, 70)
    rng = np.random.default_rng(8)
    outage = slice(at, at + 48)  # 4 h: every miner rejects more, each by its own amount
    for item in items.values():
        item.rejection[outage] += rng.uniform(0.05, 0.3)
        item.errors[outage] *= rng.uniform(5.0, 40.0)
    items["m9"].rejection[at - 96 : at - 48] += 0.2  # m9's own pool trouble, 8 h before
    items["m9"].errors[at - 96 : at - 48] *= 2.0
    decisions, events = decide_site("row-1", items, PRIOR)
    assert len(events) == 1 and events[0].peak_miners >= 8
    for i in range(9):
        assert not decisions[f"m{i}"].is_anomaly.any(), i
    m9 = decisions["m9"]
    assert m9.is_anomaly[at - 90 : at - 48].all()  # the rejection rate above its peers' flags it
    assert not m9.is_anomaly[outage].any()


def test_a_curtailment_ending_is_context_not_a_site_wide_restart() -> None:
    n, at = 4 * 288, 3 * 288
    items = _site(n, 10, 90)
    for item in items.values():
        lo, hi = int(item.ends[at - 36]), int(item.ends[at])  # 3 h curtailed, all resume together
        item.restart_spans = np.array([[lo, hi]])
        item.context = context_reasons(item.ends, [(lo, hi)], [], item.restart_spans)
    _, events = decide_site("row-1", items, PRIOR)
    assert [e for e in events if e.kind == "restart"] == []
    for item in items.values():  # the same restarts without the recorded curtailment: a site restart
        item.context = context_reasons(item.ends, [], [], item.restart_spans)
    _, events = decide_site("row-1", items, PRIOR)
    assert [e.kind for e in events] == ["restart"]
