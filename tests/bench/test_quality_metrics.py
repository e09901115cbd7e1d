"""The quality report's metric functions on hand-built examples (not a full bench run)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.quality import (
    AnomalyUnit,
    EventCounts,
    FailureUnit,
    ThresholdRule,
    detection_by_kind,
    event_counts,
    expected_calibration_error,
    paired_auc_difference,
    pr_auc,
    runs,
    smooth_alarms,
)


def test_runs_merge_only_windows_at_consecutive_rows() -> None:
    rows = np.array([0, 1, 2, 3, 5, 6, 7])
    flags = np.array([True, True, False, True, True, False, True])
    # rows 3 and 5 are not consecutive (a dropped window between them): two events
    assert runs(rows, flags) == [(0, 1), (3, 3), (4, 4), (6, 6)]


def test_smoothing_needs_k_consecutive_windows_above_the_threshold() -> None:
    rows = np.arange(8)
    above = np.array([True, False, True, True, True, False, True, True])
    assert smooth_alarms(rows, above, 1).tolist() == above.tolist()
    assert smooth_alarms(rows, above, 3).tolist() == [False, False, False, False, True, False, False, False]


def test_event_level_counts_without_and_with_point_adjustment() -> None:
    # 20 windows of one miner, each spanning [10 i, 10 i + 15] seconds, at consecutive rows.
    starts = np.arange(20) * 10
    ends = starts + 15
    rows = np.arange(20)
    episodes = [(50, 95), (150, 165)]  # windows 4..9 and 14..16 overlap them
    ignore = [(180, 200)]  # downtime: windows 17..19 overlap it
    flags = np.zeros(20, dtype=bool)
    flags[[6, 7]] = True  # one alarm event inside the first episode
    flags[[1]] = True  # a false alarm
    flags[[19]] = True  # an alarm in downtime: neither true nor false
    counts = event_counts(starts, ends, rows, flags, episodes, ignore)
    assert (counts.true_alarms, counts.false_alarms, counts.detected, counts.episodes) == (1, 1, 1, 2)
    scores = counts.scores()
    assert scores["event_precision"] == pytest.approx(0.5)
    assert scores["event_recall"] == pytest.approx(0.5)
    assert scores["event_f1"] == pytest.approx(0.5)
    # Point adjustment credits all 6 windows of the detected episode: tp 6, fn 3 (second episode),
    # fp 1 (window 1; window 19 is ignored) -> precision 6/7, recall 6/9: higher than the event F1.
    assert (counts.point_tp, counts.point_fn, counts.point_fp) == (6, 3, 1)
    assert scores["pa_f1"] == pytest.approx(2 * (6 / 7) * (6 / 9) / (6 / 7 + 6 / 9))
    assert (counts + counts).astuple() == tuple(2 * v for v in counts.astuple())


def test_no_alarms_gives_zero_recall_and_undefined_precision() -> None:
    starts = np.arange(5) * 10
    counts = event_counts(starts, starts + 5, np.arange(5), np.zeros(5, bool), [(0, 20)], [])
    scores = counts.scores()
    assert scores["event_recall"] == 0.0 and np.isnan(scores["event_precision"])
    assert scores["event_f1"] == 0.0
    assert EventCounts().scores()["event_f1"] == 0.0


def test_a_miner_without_episodes_has_only_false_alarms() -> None:
    starts = np.arange(5) * 10
    flags = np.array([False, True, True, False, True])
    counts = event_counts(starts, starts + 5, np.arange(5), flags, [], [(40, 50)])
    assert (counts.true_alarms, counts.false_alarms, counts.episodes, counts.point_fp) == (0, 1, 0, 2)


def test_ece_of_a_known_case_and_its_reliability_table() -> None:
    # Bin 0.1-0.2: ten windows predicted 0.15, two positive (rate 0.2); bin 0.8-0.9: ten predicted
    # 0.85, all positive. ECE = 0.5 * |0.15 - 0.2| + 0.5 * |0.85 - 1.0| = 0.1.
    p = np.r_[np.full(10, 0.15), np.full(10, 0.85)]
    y = np.r_[np.ones(2), np.zeros(8), np.ones(10)]
    ece, table = expected_calibration_error(p, y, bins=10)
    assert ece == pytest.approx(0.1)
    assert len(table) == 10 and table[1].count == 10 and table[1].observed_rate == pytest.approx(0.2)
    assert table[8].mean_predicted == pytest.approx(0.85) and table[0].count == 0
    perfect, _ = expected_calibration_error(np.full(4, 0.5), np.array([0, 1, 0, 1]))
    assert perfect == pytest.approx(0.0)


def test_pr_auc_is_average_precision() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([1, 0, 1, 0])
    assert pr_auc(scores, labels) == pytest.approx((1.0 + 2 / 3) / 2)
    assert pr_auc(scores, np.array([1, 1, 0, 0])) == pytest.approx(1.0)
    assert np.isnan(pr_auc(scores, np.zeros(4)))


def test_threshold_rule_fires_past_any_threshold_and_fits_the_labels() -> None:
    rule = ThresholdRule(max_temp=80.0, min_hashrate=0.8, min_fan=0.5)
    inputs = np.array([[70.0, 1.0, 1.0], [85.0, 1.0, 1.0], [70.0, 0.5, 1.0], [70.0, 1.0, 0.25]])
    assert (rule.margin(inputs) > 1).tolist() == [False, True, True, True]
    hot = np.r_[np.full(20, 90.0), np.full(80, 65.0)]
    fitted = ThresholdRule.fit(np.stack([hot, np.ones(100), np.ones(100)], 1), (hot > 80).astype(float))
    assert 65.0 <= fitted.max_temp < 90.0 and fitted.min_hashrate < 1.0 and fitted.min_fan < 1.0


def test_detection_by_kind_counts_each_episode_once_under_each_seeds_rule() -> None:
    starts = np.arange(20) * 10
    score = np.zeros(20)
    score[5:7] = 2.0  # alarms over windows 5-6 only
    unit = AnomalyUnit(7, starts, starts + 15, np.arange(20), score, [(50, 95), (150, 165), (900, 950)], [])
    kinds = {7: {(50, 95): "fan", (150, 165): "pool"}}
    assert detection_by_kind([unit], {7: (1.0, 1)}, kinds) == {"fan": (1, 1), "pool": (0, 1)}
    assert detection_by_kind([unit], {7: (1.0, 3)}, kinds) == {"fan": (0, 1), "pool": (0, 1)}  # k=3: no alarm


def _units(scores: list[np.ndarray], labels: list[np.ndarray]) -> list[FailureUnit]:
    """One FailureUnit per miner (only scores and labels matter for ROC-AUC)."""
    return [
        FailureUnit(0, s, s, s > 0.5, y, np.arange(y.size), np.arange(y.size), [], (0.0, 1.0))
        for s, y in zip(scores, labels, strict=True)
    ]


def test_paired_auc_difference_resamples_the_same_miners_for_both_models() -> None:
    rng = np.random.default_rng(1)
    labels = [np.r_[np.zeros(30), np.ones(10)] for _ in range(12)]  # 12 miners, 25 % positive windows
    perfect = [y + 0.1 * rng.random(y.size) for y in labels]  # ranks every positive first
    noisy = [y + rng.normal(0.0, 1.0, y.size) for y in labels]
    point, (lo, hi), ahead = paired_auc_difference({0: _units(perfect, labels)}, {0: _units(noisy, labels)})
    assert 0.1 < point < 0.5 and 0.0 < lo <= point <= hi and ahead == 1.0
    reverse, interval, behind = paired_auc_difference(
        {0: _units(noisy, labels)}, {0: _units(perfect, labels)}
    )
    assert reverse == pytest.approx(-point) and interval[1] < 0.0 and behind == 0.0
    same, (lo, hi), _ = paired_auc_difference({0: _units(noisy, labels)}, {0: _units(noisy, labels)})
    assert same == 0.0 and lo == hi == 0.0  # the same miners in every draw: no spurious difference
