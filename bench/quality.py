"""Quality report of the failure-risk LSTM and the anomaly autoencoder against two simple baselines.

    .venv/bin/python -m bench.quality [--seeds 3] [--first-seed 0] [--miners 200] [--days 30]
        [--horizons 24 6] [--jobs 2] [--out bench/results/quality.md]

Per seed: simulate the demo fleet (fixed `end`, so runs repeat), write it to a temp DuckDB file
through the real Store and read the feature series back. Split twice, so the test set is new in both
ways: 70 % of the miners are training miners, and only the first 70 % of the time is used for
training; the test set is the held-out 30 % of miners in the last 30 % of the time. Everything that
is tuned (early stopping, Platt calibration, baseline thresholds, alarm thresholds and smoothing) is
tuned on training-period data of training miners only; the test set is scored once.

Failure prediction is scored on every 5-minute window of the test period whose label is known (the
server's WindowConfig with stride 1). Anomaly detection is scored per event, without point
adjustment: alarms are windows above the threshold for `k` consecutive windows; consecutive alarm
windows are merged into one alarm event; an episode (a failure's precursor [start, failure], or a
near miss / pool incident [start, end]) is detected when an alarm event overlaps it; an alarm event
that overlaps no episode, no failure downtime and no planned curtailment is a false positive.
Failures without a precursor (control_board) have nothing to detect and are left out of the recall.
95 % confidence intervals come from a bootstrap over test miners (resampled within each seed).
"""

from __future__ import annotations

import argparse
import pickle
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from server.models.calibration import brier_score, roc_auc
from server.models.features import trailing_median
from server.models.windows import WindowConfig, WindowSet, build_windows, split_by_miner
from server.records import Miner, MinerSeries

END = datetime(2026, 1, 31, tzinfo=UTC)  # fixed end of every simulated fleet
TRAIN_MINER_FRACTION = 0.7
TRAIN_TIME_FRACTION = 0.7
HIGH = 0.5  # the server's HIGH risk cut-off
TOP_K = 5
REFERENCE_HORIZONS = (6.0, 12.0, 24.0)  # the ground-truth reference is reported at these horizons
BOOTSTRAP = 200
Span = tuple[int, int]  # [lo, hi] in epoch seconds


# ---- metric functions (pure numpy) -----------------------------------------------------------------


def pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: mean of the precision at each positive, ranked by score (ties grouped)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0.5
    if not y.any():
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # thresholds between distinct scores
    tp = np.cumsum(y)[last_of_tie]
    seen = (np.flatnonzero(last_of_tie) + 1).astype(np.float64)
    precision, recall = tp / seen, tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class ReliabilityBin:
    lo: float
    hi: float
    count: int
    mean_predicted: float
    observed_rate: float


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
) -> tuple[float, list[ReliabilityBin]]:
    """ECE over `bins` equal-width bins of [0, 1]: sum of bin share x |mean predicted - observed rate|."""
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    which = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        mean_p = float(p[inside].mean()) if n else float("nan")
        rate = float(y[inside].mean()) if n else float("nan")
        if n:
            ece += n / max(p.size, 1) * abs(mean_p - rate)
        table.append(ReliabilityBin(b / bins, (b + 1) / bins, n, mean_p, rate))
    return float(ece), table


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def runs(rows: np.ndarray, flags: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [i, j] (inclusive) of flagged windows at consecutive rows (row step 1)."""
    flags = np.asarray(flags, dtype=bool)
    if not flags.size:
        return []
    joined = np.r_[False, flags[:-1] & flags[1:] & (np.diff(rows) == 1)]  # i continues i - 1's run
    starts = np.flatnonzero(flags & ~joined)
    ends = np.flatnonzero(flags & ~np.r_[joined[1:], False])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def smooth_alarms(rows: np.ndarray, above: np.ndarray, k: int) -> np.ndarray:
    """Alarm where the window and the k-1 windows before it (at consecutive rows) are all above."""
    flags = np.zeros(above.shape[0], dtype=bool)
    for i, j in runs(rows, above):
        flags[i + k - 1 : j + 1] = True
    return flags


def _overlaps(lo: int, hi: int, spans: Sequence[Span]) -> bool:
    return any(a <= hi and lo <= b for a, b in spans)


@dataclass
class EventCounts:
    """Event- and point-level counts of one miner (sums over miners give the totals)."""

    true_alarms: int = 0  # alarm events overlapping an episode
    false_alarms: int = 0  # alarm events overlapping no episode, downtime or planned state
    detected: int = 0  # episodes overlapped by an alarm event
    episodes: int = 0  # episodes with at least one scored window
    point_tp: int = 0  # point-adjusted window counts
    point_fp: int = 0
    point_fn: int = 0

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return (
            self.true_alarms,
            self.false_alarms,
            self.detected,
            self.episodes,
            self.point_tp,
            self.point_fp,
            self.point_fn,
        )

    def scores(self) -> dict[str, float]:
        precision = _ratio(self.true_alarms, self.true_alarms + self.false_alarms)
        recall = _ratio(self.detected, self.episodes)
        pa_p = _ratio(self.point_tp, self.point_tp + self.point_fp)
        pa_r = _ratio(self.point_tp, self.point_tp + self.point_fn)
        return {
            "event_precision": precision,
            "event_recall": recall,
            "event_f1": f1(np.nan_to_num(precision), np.nan_to_num(recall)),
            "pa_f1": f1(np.nan_to_num(pa_p), np.nan_to_num(pa_r)),
        }


def event_counts(
    starts: np.ndarray,
    ends: np.ndarray,
    rows: np.ndarray,
    flags: np.ndarray,
    episodes: Sequence[Span],
    ignore: Sequence[Span],
) -> EventCounts:
    """One miner's windows (time-ordered; start/end seconds, grid row, alarm flag) against its
    episodes and ignored spans (downtime, planned states)."""
    counts = EventCounts()
    hit = np.zeros(len(episodes), dtype=bool)
    for i, j in runs(rows, flags):
        lo, hi = int(starts[i]), int(ends[j])
        touched = [e for e, (a, b) in enumerate(episodes) if a <= hi and lo <= b]
        if touched:
            counts.true_alarms += 1
            hit[touched] = True
        elif not _overlaps(lo, hi, ignore):
            counts.false_alarms += 1
    in_episode = np.full(starts.shape[0], -1)
    for e, (a, b) in enumerate(episodes):
        inside = (starts <= b) & (ends >= a)
        if inside.any():
            counts.episodes += 1
            counts.detected += int(hit[e])
        in_episode[inside & (in_episode < 0)] = e
    ignored = np.zeros(starts.shape[0], dtype=bool)
    for a, b in ignore:
        ignored |= (starts <= b) & (ends >= a)
    positive = in_episode >= 0
    adjusted = flags | np.r_[hit, False][in_episode]  # point adjustment (-1: in no episode)
    counts.point_tp = int((adjusted & positive).sum())
    counts.point_fn = int((~adjusted & positive).sum())
    counts.point_fp = int((flags & ~positive & ~ignored).sum())
    return counts


# ---- per-miner test data ---------------------------------------------------------------------------


@dataclass
class FailureUnit:
    """One test miner's failure-prediction windows and scores (for one model)."""

    seed: int
    risk: np.ndarray  # (N,) calibrated probability
    score: np.ndarray  # (N,) ranking score (risk for models; a margin for the rule)
    high: np.ndarray  # (N,) bool alert
    labels: np.ndarray  # (N,)
    ends: np.ndarray  # (N,) int seconds
    rows: np.ndarray  # (N,) grid row
    failures: list[int]  # failure times (s) with at least one positive window
    lead_window: tuple[float, float]  # (gap, gap + horizon) seconds
    _summary: UnitSummary | None = field(default=None, repr=False)

    def summary(self, interval_s: int) -> UnitSummary:
        """This miner's alarm and lead-time counts (computed once: bootstrap resamples reuse them)."""
        if self._summary is None:
            part = UnitSummary(miner_days=self.ends.shape[0] * interval_s / 86400)
            for i, j in runs(self.rows, self.high):
                part.false_alarms += int(not (self.labels[i : j + 1] > 0).any())
            for occurred in self.failures:
                before = occurred - self.ends
                mine = (before > self.lead_window[0]) & (before <= self.lead_window[1])
                flagged = np.flatnonzero(mine & self.high)
                if flagged.size:
                    part.leads.append(float(before[flagged[0]]) / 3600)
                else:
                    part.never += 1
            days = self.ends // 86400
            for d in np.unique(days):
                on = days == d
                part.daily.append((int(d), (float(self.score[on].max()), float(self.labels[on].max()))))
            self._summary = part
        return self._summary


@dataclass
class UnitSummary:
    """One miner's per-unit failure-alarm counts (see FailureUnit.summary)."""

    miner_days: float
    false_alarms: int = 0
    never: int = 0
    leads: list[float] = field(default_factory=list)
    daily: list[tuple[int, tuple[float, float]]] = field(default_factory=list)  # (day, (max score, label))


def failure_metrics(units: Sequence[FailureUnit], interval_s: int = 300) -> dict[str, Any]:
    risk = np.concatenate([u.risk for u in units])
    score = np.concatenate([u.score for u in units])
    high = np.concatenate([u.high for u in units])
    labels = np.concatenate([u.labels for u in units])
    ece, table = expected_calibration_error(risk, labels)
    tp = float((high & (labels > 0)).sum())
    false_alarms, leads, never = 0, [], 0
    daily: dict[tuple[int, int], list[tuple[float, float]]] = {}
    miner_days = 0.0
    for u in units:
        part = u.summary(interval_s)
        false_alarms += part.false_alarms
        leads += part.leads
        never += part.never
        miner_days += part.miner_days
        for day, entry in part.daily:
            daily.setdefault((u.seed, day), []).append(entry)
    picks = hits = 0
    for entries in daily.values():
        top = sorted(entries, key=lambda e: -e[0])[:TOP_K]
        picks += len(top)
        hits += sum(e[1] > 0 for e in top)
    return {
        "roc_auc": roc_auc(score, labels),
        "pr_auc": pr_auc(score, labels),
        "brier": brier_score(risk, labels),
        "ece": ece,
        "reliability": table,
        "precision_high": _ratio(tp, float(high.sum())),
        "recall_high": _ratio(tp, float((labels > 0).sum())),
        "false_alarms_per_1000_miner_days": 1000 * false_alarms / max(miner_days, 1e-9),
        "top5_precision": _ratio(hits, picks),
        "median_lead_h": float(np.median(leads)) if leads else float("nan"),
        "never_flagged": _ratio(never, len(leads) + never),
        "failures": len(leads) + never,
        "positives": int((labels > 0).sum()),
        "windows": int(labels.size),
    }


@dataclass
class AnomalyUnit:
    """One miner's anomaly windows: times, grid rows, score; episodes and ignored spans."""

    seed: int
    starts: np.ndarray
    ends: np.ndarray
    rows: np.ndarray
    score: np.ndarray
    episodes: list[Span]
    ignore: list[Span]
    _cache: dict[tuple[float, int], EventCounts] = field(default_factory=dict, repr=False)

    def counts(self, threshold: float, k: int) -> EventCounts:
        key = (threshold, k)
        if key not in self._cache:  # bootstrap resamples ask for the same unit many times
            flags = smooth_alarms(self.rows, self.score > threshold, k)
            self._cache[key] = event_counts(
                self.starts, self.ends, self.rows, flags, self.episodes, self.ignore
            )
        return self._cache[key]


def choose_alarm_rule(
    units: Sequence[AnomalyUnit], thresholds: Sequence[float], ks: Sequence[int] = (1, 3, 6, 12)
) -> tuple[float, int, float]:
    """(threshold, k, event F1) with the best event F1 on validation units (ties: fewer alarms)."""
    best = (float(thresholds[0]), ks[0], -1.0)
    for threshold in thresholds:
        for k in ks:
            total = sum((u.counts(threshold, k) for u in units), EventCounts())
            score = total.scores()["event_f1"]
            if score > best[2] + 1e-9:
                best = (float(threshold), k, score)
    return best


def bootstrap(
    units_by_seed: dict[int, list[Any]], metric: Callable[[list[Any]], dict[str, Any]], seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of every numeric metric, resampling units within each seed."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(BOOTSTRAP):
        sample = [
            units[i] for units in units_by_seed.values() for i in rng.integers(0, len(units), len(units))
        ]
        for key, value in metric(sample).items():
            if isinstance(value, float | int) and not isinstance(value, bool):
                draws.setdefault(key, []).append(float(value))
    return {
        k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
        for k, v in draws.items()
        if np.isfinite(v).any()
    }


def paired_auc_difference(
    first: dict[int, list[FailureUnit]], second: dict[int, list[FailureUnit]], seed: int = 0
) -> tuple[float, tuple[float, float], float]:
    """ROC-AUC of `first` minus `second` on the same test windows, with a 95 % interval and the share
    of resamples in which `first` is ahead. Both models see the SAME resampled miners in each draw,
    so the miner-to-miner variation that widens each model's own interval cancels out."""

    def auc(units: list[FailureUnit]) -> float:
        return roc_auc(np.concatenate([u.score for u in units]), np.concatenate([u.labels for u in units]))

    def difference(picks: dict[int, np.ndarray]) -> float:
        return auc([first[s][i] for s, idx in picks.items() for i in idx]) - auc(
            [second[s][i] for s, idx in picks.items() for i in idx]
        )

    rng = np.random.default_rng(seed)
    point = difference({s: np.arange(len(units)) for s, units in first.items()})
    draws = np.array(
        [
            difference({s: rng.integers(0, len(units), len(units)) for s, units in first.items()})
            for _ in range(BOOTSTRAP)
        ]
    )
    interval = (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5)))
    return point, interval, float(np.mean(draws > 0))


def anomaly_metrics(
    units: Sequence[AnomalyUnit], rule: tuple[float, int] | dict[int, tuple[float, int]]
) -> dict[str, Any]:
    total = EventCounts()
    for u in units:
        threshold, k = rule[u.seed] if isinstance(rule, dict) else rule
        total = total + u.counts(threshold, k)
    return {
        **total.scores(),
        "episodes": total.episodes,
        "alarm_events": total.true_alarms + total.false_alarms,
    }


# ---- data ------------------------------------------------------------------------------------------


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def load_fleet_series(n_miners: int, days: float, seed: int) -> tuple[Any, dict[str, MinerSeries]]:
    """Simulate the fleet and read its feature series back through a temp DuckDB store."""
    from server.sim import seed_store, simulate_fleet
    from server.store import Store

    fleet = simulate_fleet(n_miners, days, seed, end=END)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "fleet.duckdb")
        try:
            seed_store(store, fleet)
            series = store.load_series()
        finally:
            store.close()
    return fleet, series


def truncate(series: MinerSeries, before: datetime) -> MinerSeries:
    keep = series.timestamps.astype("datetime64[s]") < np.datetime64(before.replace(tzinfo=None), "s")
    return MinerSeries(series.miner_id, series.timestamps[keep], series.values[keep], series.observed[keep])


def window_starts(windows: WindowSet) -> np.ndarray:
    cfg = windows.config
    return windows.window_ends.astype(np.int64) - (cfg.sequence_length - 1) * cfg.sample_interval_s


def after(windows: WindowSet, cutoff: datetime) -> WindowSet:
    return windows.subset(np.flatnonzero(window_starts(windows) >= _seconds(cutoff)))


def anomaly_spans(fleet: Any) -> tuple[dict[str, list[Span]], dict[str, list[Span]]]:
    """Per miner: episode spans to detect, and spans to ignore (failure downtime, planned states)."""
    episodes: dict[str, list[Span]] = {}
    ignore: dict[str, list[Span]] = {}
    for ep in fleet.episodes:
        if ep.failure_at is not None and ep.failure_at <= ep.start:
            continue  # no precursor: nothing to detect before the failure
        episodes.setdefault(ep.miner_id, []).append(_episode_span(ep))
    for event in fleet.failures:
        end = event.repaired_at or fleet.end
        ignore.setdefault(event.miner_id, []).append(
            (_seconds(event.occurred_at), _seconds(end + timedelta(hours=1)))
        )
    for state in fleet.planned_states:
        ignore.setdefault(state.miner_id, []).append((_seconds(state.start), _seconds(state.end)))
    return episodes, ignore


def _episode_span(ep: Any) -> Span:
    """[start, failure] of a failure's precursor; [start, end] of a near miss or pool incident."""
    hi = ep.failure_at if ep.failure_at is not None else ep.end
    return (_seconds(ep.start), _seconds(min(hi, ep.end)))


def episode_kinds(fleet: Any) -> dict[Span, str]:
    """Each anomaly episode span (see anomaly_spans) -> its kind: a failure mode's precursor, a near
    miss, or a pool incident (fleet-wide ones share a span on many miners)."""
    kinds: dict[Span, str] = {}
    for ep in fleet.episodes:
        near_miss = ep.failure_at is None and ep.kind != "pool"
        kinds[_episode_span(ep)] = ep.kind + (" (near miss)" if near_miss else "")
    return kinds


def detection_by_kind(
    units: Sequence[AnomalyUnit], rules: dict[int, tuple[float, int]], kinds: dict[int, dict[Span, str]]
) -> dict[str, tuple[int, int]]:
    """Episode kind -> (detected, episodes) under per-seed alarm rules (threshold, k)."""
    found: dict[str, list[int]] = {}
    for u in units:
        threshold, k = rules[u.seed]
        flags = smooth_alarms(u.rows, u.score > threshold, k)
        for span in u.episodes:
            one = event_counts(u.starts, u.ends, u.rows, flags, [span], [])
            if one.episodes:  # 0 when the episode lies outside this miner's scored windows
                counts = found.setdefault(kinds[u.seed].get(span, "other"), [0, 0])
                counts[0] += one.detected
                counts[1] += 1
    return {kind: (c[0], c[1]) for kind, c in sorted(found.items())}


def precursor_progress(fleet: Any, windows: WindowSet) -> np.ndarray:
    """(N,) ground truth: how far the precursor of a COMING failure has progressed at each window's
    end (0 = none). Not a model: its ROC-AUC is the ceiling for any model of the telemetry, since a
    positive window before its failure's precursor starts looks exactly like a healthy one."""
    ends = windows.window_ends.astype(np.int64)
    progress = np.zeros(len(windows))
    for ep in fleet.episodes:
        if ep.failure_at is None or ep.failure_at <= ep.start:
            continue
        lo, hi = _seconds(ep.start), _seconds(ep.failure_at)
        inside = (windows.miner_ids == ep.miner_id) & (ends >= lo) & (ends < hi)
        progress[inside] = np.maximum(progress[inside], (ends[inside] - lo) / (hi - lo) + 1e-3)
    return progress


# ---- baselines -------------------------------------------------------------------------------------


def rule_inputs(windows: WindowSet, series: dict[str, MinerSeries]) -> np.ndarray:
    """(N, 3): window max temperature (C), min hashrate / nominal, min fan / its trailing 24 h median."""
    cfg = windows.config
    fan_rel = []
    for miner_id in sorted(series):  # the row order of windows.channels (see build_windows)
        if len(series[miner_id]) < cfg.sequence_length:
            continue
        fan = series[miner_id].values[:, 2]
        fan_rel.append(fan / np.maximum(trailing_median(fan, cfg.share_reference_samples), 1.0))
    fan_rows = np.concatenate(fan_rel)[:, None]
    table = np.concatenate([windows.channels[:, :2], fan_rows], axis=1)  # hashrate ratio, temp, fan rel
    x = windows.gather(np.arange(len(windows)), table)  # (N, T, 3)
    with warnings.catch_warnings():  # all-NaN windows (a dark miner) give NaN, filled below
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.stack([np.nanmax(x[:, :, 1], 1), np.nanmin(x[:, :, 0], 1), np.nanmin(x[:, :, 2], 1)], 1)
    return np.where(np.isnan(out), np.array([60.0, 1.0, 1.0]), out)


@dataclass(frozen=True)
class ThresholdRule:
    """Alert when temperature > max_temp or hashrate < min_hashrate x nominal or fan < min_fan x median."""

    max_temp: float
    min_hashrate: float
    min_fan: float

    def margin(self, inputs: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N,) > 1 where the rule fires; larger is further past a threshold."""
        with np.errstate(divide="ignore"):
            return np.maximum.reduce(
                [
                    inputs[:, 0] / self.max_temp,
                    self.min_hashrate / np.maximum(inputs[:, 1], 1e-3),
                    self.min_fan / np.maximum(inputs[:, 2], 1e-3),
                ]
            )

    @classmethod
    def fit(cls, inputs: np.ndarray, labels: np.ndarray) -> ThresholdRule:
        """The grid point with the best window-level F1 on (training) labels."""
        y = labels > 0
        best, best_f1 = cls(90.0, 0.5, 0.5), -1.0
        for t in np.arange(70.0, 100.1, 2.5):
            hot = inputs[:, 0] > t
            for h in np.arange(0.3, 0.96, 0.05):
                hot_or_slow = hot | (inputs[:, 1] < h)
                for f in np.arange(0.3, 0.96, 0.05):
                    fires = hot_or_slow | (inputs[:, 2] < f)
                    tp = float((fires & y).sum())
                    score = f1(_ratio(tp, float(fires.sum())) if fires.any() else 0.0, _ratio(tp, y.sum()))
                    if score > best_f1:
                        best, best_f1 = cls(float(t), float(h), float(f)), score
        return best


def summary_features(x: np.ndarray) -> np.ndarray:
    """(N, T, C) normalised windows -> (N, 5C): mean, last, min, max, least-squares slope per channel."""
    t = np.arange(x.shape[1], dtype=np.float32)
    t = (t - t.mean()) / np.sum((t - t.mean()) ** 2)
    slope = np.einsum("ntc,t->nc", x, t)
    return np.concatenate([x.mean(1), x[:, -1], x.min(1), x.max(1), slope], axis=1)


def normalised(windows: WindowSet, norm: Any, batch: int = 8192) -> Callable[[], Any]:
    """Batches of (N, T, C) normalised windows, lazily (the stride-1 test set is large)."""

    def generate() -> Any:
        for lo in range(0, len(windows), batch):
            yield norm.apply(windows.gather(np.arange(lo, min(lo + batch, len(windows)))))

    return generate


# ---- one seed --------------------------------------------------------------------------------------


@dataclass
class SeedResult:
    failure: dict[float, dict[str, list[FailureUnit]]] = field(
        default_factory=dict
    )  # horizon -> model -> units
    anomaly: dict[str, list[AnomalyUnit]] = field(default_factory=dict)
    alarm_rules: dict[str, tuple[float, int, float]] = field(
        default_factory=dict
    )  # model -> (thr, k, val F1)
    notes: dict[str, Any] = field(default_factory=dict)


def _split_units(windows: WindowSet) -> dict[str, np.ndarray]:
    order = np.argsort(windows.miner_ids, kind="stable")
    ids, first = np.unique(windows.miner_ids[order], return_index=True)
    return {m: idx for m, idx in zip(ids, np.split(order, first[1:]), strict=True)}


def run_seed(
    seed: int,
    n_miners: int,
    days: float,
    lstm_epochs: int,
    ae_epochs: int,
    log: Callable[[str], None],
    horizons: Sequence[float] = (24.0,),
) -> SeedResult:
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from server.models.inference import AnomalyScorer
    from server.models.registry import ModelRegistry
    from server.models.train import AUTOENCODER_DEFAULTS, train_autoencoder

    started = time.perf_counter()
    fleet, series = load_fleet_series(n_miners, days, seed)
    miners: dict[str, Miner] = {m.miner_id: m for m in fleet.miners}
    ids = sorted(series)
    shuffled = list(np.random.default_rng(seed).permutation(ids))
    n_train = round(TRAIN_MINER_FRACTION * len(ids))
    train_ids, test_ids = sorted(shuffled[:n_train]), sorted(shuffled[n_train:])
    cutoff = fleet.start + TRAIN_TIME_FRACTION * (fleet.end - fleet.start)
    window = WindowConfig(sequence_length=24, sample_interval_s=300, horizon_hours=24)  # as the server
    scan = replace(window, stride=1)
    anomaly_window = replace(scan, horizon_hours=0.0, gap_hours=0.0)  # every window, no labels needed
    train_series = {m: truncate(series[m], cutoff) for m in train_ids}
    test_series = {m: series[m] for m in test_ids}
    train = build_windows(train_series, miners, fleet.failures, fleet.planned_states, window)  # AE: healthy
    test_any = after(build_windows(test_series, miners, [], [], anomaly_window), cutoff)
    log(f"seed {seed}: data {time.perf_counter() - started:.0f}s")
    result = SeedResult()
    with tempfile.TemporaryDirectory() as tmp:
        registry = ModelRegistry(Path(tmp))
        for hours in horizons:
            result.failure[hours] = _failure_models(
                seed,
                replace(window, horizon_hours=hours),
                fleet,
                miners,
                train_series,
                test_series,
                cutoff,
                lstm_epochs,
                registry,
                result.notes.setdefault(f"{hours:g}h", {}),
                log,
            )
        for hours in REFERENCE_HORIZONS:  # the ground-truth reference where no model was trained
            if hours in horizons:
                continue  # _failure_models stored it with the test windows it scored
            other = after(
                build_windows(
                    test_series,
                    miners,
                    fleet.failures,
                    fleet.planned_states,
                    replace(scan, horizon_hours=hours),
                ),
                cutoff,
            )
            result.notes.setdefault(f"{hours:g}h", {})["oracle"] = (
                precursor_progress(fleet, other),
                other.labels,
            )

        # ---- anomaly detectors
        t0 = time.perf_counter()
        ae_cfg = replace(AUTOENCODER_DEFAULTS, epochs=ae_epochs, seed=seed, threads=1)
        trained_ae = train_autoencoder(train, ae_cfg)
        scorer = AnomalyScorer.from_registry(registry, registry.save(trained_ae.to_artifact()))
        result.notes["autoencoder"] = {**trained_ae.metrics, "seconds": time.perf_counter() - t0}
        log(
            f"seed {seed}: autoencoder {trained_ae.metrics['epochs_run']:.0f} epochs, "
            f"{time.perf_counter() - t0:.0f}s"
        )
        episodes, ignore = anomaly_spans(fleet)
        result.notes["episode_kinds"] = episode_kinds(fleet)
        _, ae_val = split_by_miner(train, ae_cfg.validation_split, ae_cfg.seed)
        val_ids = sorted(set(ae_val.miner_ids))
        val_any = build_windows({m: train_series[m] for m in val_ids}, miners, [], [], anomaly_window)
        fit_any = build_windows(
            {m: train_series[m] for m in train_ids if m not in val_ids},
            miners,
            [],
            [],
            replace(anomaly_window, stride=6),
        )

        def episode_labels(ws: WindowSet) -> np.ndarray:
            starts, ends = window_starts(ws), ws.window_ends.astype(np.int64)
            return np.array(
                [
                    _overlaps(int(s), int(e), episodes.get(m, []))
                    for s, e, m in zip(starts, ends, ws.miner_ids, strict=True)
                ]
            )

        any_logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        any_logistic.fit(
            summary_features(scorer.norm.apply(fit_any.gather(np.arange(len(fit_any))))),
            episode_labels(fit_any),
        )
        any_rule = ThresholdRule.fit(
            rule_inputs(fit_any, {m: train_series[m] for m in train_ids if m not in val_ids}),
            episode_labels(fit_any).astype(np.float32),
        )
        detectors: dict[str, Callable[[WindowSet, dict[str, MinerSeries]], np.ndarray]] = {
            "Autoencoder": lambda ws, _s: np.concatenate(
                [scorer.score(x) for x in normalised(ws, scorer.norm)()]
            ),
            "Logistic regression": lambda ws, _s: np.concatenate(
                [any_logistic.predict_proba(summary_features(x))[:, 1] for x in normalised(ws, scorer.norm)()]
            ),
            "Threshold rule": lambda ws, s: any_rule.margin(rule_inputs(ws, s)),
        }
        val_series = {m: train_series[m] for m in val_ids}
        for name, detect in detectors.items():
            val_units = _anomaly_units(seed, val_any, detect(val_any, val_series), episodes, ignore)
            val_scores = np.concatenate([u.score for u in val_units])
            candidates = np.unique(
                np.quantile(val_scores, [0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995])
            )
            if name == "Autoencoder":  # also the scorer's own threshold
                candidates = np.unique(np.r_[candidates, scorer.threshold])
            result.alarm_rules[name] = choose_alarm_rule(val_units, candidates.tolist())
            result.anomaly[name] = _anomaly_units(
                seed, test_any, detect(test_any, test_series), episodes, ignore
            )
        torch.set_num_threads(1)
    log(f"seed {seed}: done in {time.perf_counter() - started:.0f}s")
    return result


def _failure_models(
    seed: int,
    window: WindowConfig,
    fleet: Any,
    miners: dict[str, Miner],
    train_series: dict[str, MinerSeries],
    test_series: dict[str, MinerSeries],
    cutoff: datetime,
    lstm_epochs: int,
    registry: Any,
    notes: dict[str, Any],
    log: Callable[[str], None],
) -> dict[str, list[FailureUnit]]:
    """Train the LSTM and the two baselines at one horizon; score every test window."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from server.models.inference import FailureRiskPredictor
    from server.models.train import TrainConfig, train_failure_model

    train = build_windows(train_series, miners, fleet.failures, fleet.planned_states, window)
    test = after(
        build_windows(test_series, miners, fleet.failures, fleet.planned_states, replace(window, stride=1)),
        cutoff,
    )
    t0 = time.perf_counter()
    lstm_cfg = TrainConfig(epochs=lstm_epochs, seed=seed, threads=1)
    trained = train_failure_model(train, lstm_cfg)
    predictor = FailureRiskPredictor.from_registry(registry, registry.save(trained.to_artifact()))
    notes["lstm"] = {**trained.metrics, "seconds": time.perf_counter() - t0}
    log(
        f"seed {seed}, {window.horizon_hours:g} h: {len(train)} training windows "
        f"({int(train.labels.sum())} positive), {len(test)} test windows ({int(test.labels.sum())} "
        f"positive); LSTM val ROC-AUC {trained.metrics['val_roc_auc']:.3f}, "
        f"{trained.metrics['epochs_run']:.0f} epochs, {time.perf_counter() - t0:.0f}s"
    )
    lstm_risk = np.concatenate([predictor.predict(x) for x in normalised(test, predictor.norm)()])

    fit_part, _ = split_by_miner(train, lstm_cfg.validation_split, lstm_cfg.seed)
    x_fit = summary_features(predictor.norm.apply(fit_part.gather(np.arange(len(fit_part)))))
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    logistic.fit(x_fit, fit_part.labels > 0)
    lr_risk = np.concatenate(
        [logistic.predict_proba(summary_features(x))[:, 1] for x in normalised(test, predictor.norm)()]
    )

    rule = ThresholdRule.fit(rule_inputs(train, train_series), train.labels)
    train_margin = rule.margin(rule_inputs(train, train_series))
    fires = train_margin > 1
    rate_on = float(train.labels[fires].mean()) if fires.any() else 0.0
    rate_off = float(train.labels[~fires].mean())
    test_margin = rule.margin(rule_inputs(test, test_series))
    rule_risk = np.where(test_margin > 1, rate_on, rate_off)  # calibrated on training windows
    notes["rule"] = {"rule": rule, "p_fire": rate_on, "p_quiet": rate_off}
    notes["oracle"] = (precursor_progress(fleet, test), test.labels)

    out: dict[str, list[FailureUnit]] = {}
    units = _split_units(test)
    labelled = {int(m) for m in window.label_modes}
    gap = window.gap_hours * 3600
    lead = (gap, gap + window.horizon_hours * 3600)
    for name, risk, score, high in (
        ("LSTM", lstm_risk, lstm_risk, lstm_risk >= HIGH),
        ("Logistic regression", lr_risk, lr_risk, lr_risk >= HIGH),
        ("Threshold rule", rule_risk, test_margin, test_margin > 1),
    ):
        out[name] = []
        for miner_id, idx in units.items():
            ends = test.window_ends[idx].astype(np.int64)
            occurred = [
                _seconds(f.occurred_at)
                for f in fleet.failures
                if f.miner_id == miner_id and int(f.mode) in labelled
            ]
            with_positive = [
                o
                for o in occurred
                if ((o - ends > lead[0]) & (o - ends <= lead[1]) & (test.labels[idx] > 0)).any()
            ]
            out[name].append(
                FailureUnit(
                    seed,
                    risk[idx],
                    score[idx],
                    high[idx],
                    test.labels[idx],
                    ends,
                    test.starts[idx],
                    with_positive,
                    lead,
                )
            )
    return out


def _anomaly_units(
    seed: int,
    ws: WindowSet,
    score: np.ndarray,
    episodes: dict[str, list[Span]],
    ignore: dict[str, list[Span]],
) -> list[AnomalyUnit]:
    starts, ends = window_starts(ws), ws.window_ends.astype(np.int64)
    return [
        AnomalyUnit(
            seed, starts[idx], ends[idx], ws.starts[idx], score[idx], episodes.get(m, []), ignore.get(m, [])
        )
        for m, idx in _split_units(ws).items()
    ]


# ---- report ----------------------------------------------------------------------------------------


def _fmt(value: float, ci: tuple[float, float] | None, digits: int = 3) -> str:
    if not np.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


FAILURE_ROWS = (
    ("roc_auc", "ROC-AUC", 3),
    ("pr_auc", "PR-AUC", 3),
    ("brier", "Brier score", 4),
    ("ece", "Expected calibration error (10 bins)", 4),
    ("precision_high", "Precision at HIGH (risk >= 0.5)", 3),
    ("recall_high", "Recall at HIGH (windows)", 3),
    ("false_alarms_per_1000_miner_days", "False alarms per 1,000 miner-days", 1),
    ("top5_precision", "Precision of the daily top-5", 3),
    ("median_lead_h", "Median lead time, h (first HIGH before a failure)", 1),
    ("never_flagged", "Share of failures never flagged", 3),
)
ANOMALY_ROWS = (
    ("event_precision", "Event precision", 3),
    ("event_recall", "Event recall", 3),
    ("event_f1", "Event F1 (no point adjustment)", 3),
    ("pa_f1", "Point-adjusted F1 (inflated; for comparison only)", 3),
)


def _pooled_auc(results: list[SeedResult], hours: float) -> float:
    """ROC-AUC of the ground-truth reference at one horizon, test windows of every seed pooled."""
    oracle = [r.notes[f"{hours:g}h"]["oracle"] for r in results]
    return roc_auc(np.concatenate([o[0] for o in oracle]), np.concatenate([o[1] for o in oracle]))


def _failure_section(results: list[SeedResult], seeds: list[int], hours: float) -> list[str]:
    """The failure-prediction table, reference and reliability table of one horizon."""
    key = f"{hours:g}h"
    names = list(results[0].failure[hours])
    by_model = {n: {s: r.failure[hours][n] for s, r in zip(seeds, results, strict=True)} for n in names}
    values, cis = {}, {}
    for name, by_seed in by_model.items():
        values[name] = failure_metrics([u for units in by_seed.values() for u in units])
        cis[name] = bootstrap(by_seed, failure_metrics)
    lines = [
        f"## Failure prediction (P(hardware failure within {hours:g} h), every 5-min test window)",
        "",
        "| Metric | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for metric, label, digits in FAILURE_ROWS:
        lines.append(
            f"| {label} | "
            + " | ".join(_fmt(values[n][metric], cis[n].get(metric), digits) for n in names)
            + " |"
        )
    first = values[names[0]]
    oracle = [r.notes[key]["oracle"] for r in results]
    paired = []
    for other in names[1:]:
        point, ci, ahead = paired_auc_difference(by_model[names[0]], by_model[other])
        paired.append(
            f"{names[0]} - {other} {point:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}], "
            f"{names[0]} ahead in {ahead:.0%} of resamples"
        )
    lines += [
        "",
        "Paired ROC-AUC difference (the same resampled test miners for both models): "
        + "; ".join(paired)
        + ".",
        "",
        f"Test set: {first['windows']} windows, {first['positives']} positive, "
        f"{first['failures']} failures with a positive window (lead times).",
        "Per-seed ROC-AUC: "
        + "; ".join(
            f"{name} "
            + ", ".join(f"{failure_metrics(r.failure[hours][name])['roc_auc']:.3f}" for r in results)
            for name in names
        ),
        "",
        "Reference: ROC-AUC of the simulator's ground-truth precursor progress on the same test windows "
        "(a positive window before its failure's precursor starts looks like a healthy one, so no model "
        "of the telemetry can rank it; the reference is not a strict bound, since a model may also tell "
        "precursor kinds apart): "
        + _fmt(_pooled_auc(results, hours), None)
        + "; share of positive test windows with a visible precursor: "
        + _fmt(float(np.mean(np.concatenate([o[0][o[1] > 0] for o in oracle]) > 0)), None, 2)
        + ".",
        "",
        f"### Reliability of the LSTM at {hours:g} h (10 bins, pooled test windows)",
        "",
        "| Bin | Windows | Mean predicted | Observed rate |",
        "|---|---|---|---|",
    ]
    for row in first["reliability"]:
        lines.append(
            f"| {row.lo:.1f}-{row.hi:.1f} | {row.count} | "
            f"{_fmt(row.mean_predicted, None, 3)} | {_fmt(row.observed_rate, None, 3)} |"
        )
    return [*lines, ""]


def report(results: list[SeedResult], args: argparse.Namespace, seconds: float, command: str) -> str:
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    horizons = list(results[0].failure)
    lines = [
        "# Model quality report (issue 3)",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; "
        + (f"runtime {seconds / 60:.1f} min" if seconds else "rendered from saved per-seed results"),
        f"- Machine: {platform.machine()}, {platform.processor() or platform.platform()}, "
        f"Python {platform.python_version()}, one torch thread",
        f"- Fleet: {args.miners} miners x {args.days} days per seed, seeds {seeds}, "
        "simulator settings frozen; "
        f"end {END.isoformat()}",
        f"- Training: LSTM up to {args.lstm_epochs} epochs per horizon "
        f"({', '.join(f'{h:g} h' for h in horizons)}), "
        f"autoencoder up to {args.ae_epochs} epochs (each epoch a sample of 8,192 windows; early stopping on "
        "validation); server defaults otherwise",
        f"- Split: {TRAIN_MINER_FRACTION:.0%} of miners train on the first {TRAIN_TIME_FRACTION:.0%} of the "
        "time; test = the other miners in the remaining time. Validation (early stopping, calibration, "
        "thresholds) = held-out training miners in the training period. Never tuned on test.",
        f"- 95 % intervals: bootstrap over test miners ({BOOTSTRAP} resamples, within each seed).",
        "- Ground-truth reference (see below) by horizon: "
        + ", ".join(f"{h:g} h {_pooled_auc(results, h):.3f}" for h in REFERENCE_HORIZONS),
        "",
    ]
    for hours in horizons:
        lines += _failure_section(results, seeds, hours)
    values: dict[str, Any] = {}
    cis: dict[str, Any] = {}
    lines += ["## Anomaly detection (simulator episodes, event level)", ""]
    names = list(results[0].anomaly)
    served = "Autoencoder, served (its threshold, k=1)"  # what DetectAnomalies answers
    columns = [(n, n, {s: r.alarm_rules[n][:2] for s, r in zip(seeds, results, strict=True)}) for n in names]
    columns.insert(
        1,
        (
            served,
            names[0],
            {s: (float(r.notes["autoencoder"]["threshold"]), 1) for s, r in zip(seeds, results, strict=True)},
        ),
    )
    for name, source, rules in columns:
        anomaly_by_seed = {s: r.anomaly[source] for s, r in zip(seeds, results, strict=True)}
        values[name] = anomaly_metrics([u for us in anomaly_by_seed.values() for u in us], rules)

        def metric(units: list[Any], rules: dict[int, tuple[float, int]] = rules) -> dict[str, Any]:
            return anomaly_metrics(units, rules)

        cis[name] = bootstrap(dict(anomaly_by_seed), metric)
    shown = [c[0] for c in columns]
    lines += ["| Metric | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for key, label, digits in ANOMALY_ROWS:
        lines.append(
            f"| {label} | " + " | ".join(_fmt(values[n][key], cis[n].get(key), digits) for n in shown) + " |"
        )
    lines.append(
        "| Episodes / alarm events | "
        + " | ".join(f"{values[n]['episodes']} / {values[n]['alarm_events']}" for n in shown)
        + " |"
    )
    kinds = {s: r.notes["episode_kinds"] for s, r in zip(seeds, results, strict=True)}
    lines += ["", "Episodes detected, by kind (detected / episodes):", ""]
    for name, source, rules in columns:
        found = detection_by_kind([u for r in results for u in r.anomaly[source]], rules, kinds)
        lines.append(f"- {name}: " + ", ".join(f"{k} {d}/{n}" for k, (d, n) in found.items()))
    lines += [
        "",
        "The served autoencoder alarms on any window above its stored threshold (the 99th percentile of "
        "healthy validation errors): "
        + "; ".join(
            f"seed {s}: {float(r.notes['autoencoder']['threshold']):.4g}"
            for s, r in zip(seeds, results, strict=True)
        )
        + ". The other columns use an alarm rule chosen on validation episodes (threshold, consecutive "
        "windows k, validation event F1):",
        "",
    ]
    for name in names:
        lines.append(
            f"- {name}: "
            + "; ".join(
                f"seed {s}: {r.alarm_rules[name][0]:.4g}, k={r.alarm_rules[name][1]}, "
                f"F1 {r.alarm_rules[name][2]:.3f}"
                for s, r in zip(seeds, results, strict=True)
            )
        )
    lines += ["", "Baseline settings (from training data):", ""]
    for s, r in zip(seeds, results, strict=True):
        parts = []
        for hours in horizons:
            notes = r.notes[f"{hours:g}h"]
            rule, lstm = notes["rule"]["rule"], notes["lstm"]
            parts.append(
                f"{hours:g} h: rule temperature > {rule.max_temp:.1f} C or hashrate < "
                f"{rule.min_hashrate:.2f} x nominal or fan < {rule.min_fan:.2f} x 24 h median, "
                "LSTM stopped after "
                f"{lstm['epochs_run']:.0f} epochs (best {lstm['best_epoch']:.0f}), val ROC-AUC "
                f"{lstm['val_roc_auc']:.3f}"
            )
        lines.append(
            f"- seed {s}: "
            + "; ".join(parts)
            + f"; autoencoder {r.notes['autoencoder']['epochs_run']:.0f} epochs"
        )
    return "\n".join(lines) + "\n"


_STARTED = time.perf_counter()


def _log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:6.0f}s] {message}", file=sys.stderr, flush=True)


def _run_seed(seed: int, args: argparse.Namespace) -> SeedResult:
    import torch

    torch.set_num_threads(1)
    return run_seed(seed, args.miners, args.days, args.lstm_epochs, args.ae_epochs, _log, args.horizons)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=int, default=3, help="fleets to simulate, train and test (seeds 0..N-1)"
    )
    parser.add_argument("--miners", type=int, default=200, help="miners per simulated fleet")
    parser.add_argument("--days", type=float, default=30.0, help="days of telemetry per fleet")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds run from here (fresh seeds: fresh fleets)"
    )
    parser.add_argument(
        "--horizons",
        type=float,
        nargs="+",
        default=[24.0],
        help="failure horizons in hours; an LSTM and both baselines are trained for each",
    )
    parser.add_argument("--lstm-epochs", type=int, default=50)
    parser.add_argument("--ae-epochs", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1, help="seeds run in parallel, one core each")
    parser.add_argument("--out", type=Path, default=Path("bench/results/quality.md"))
    parser.add_argument(
        "--results",
        type=Path,
        help="pickle of the per-seed results: written after a run, or read instead of running when it "
        "exists (to rewrite the report without retraining)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    loaded = args.results is not None and args.results.exists()
    if loaded:
        with args.results.open("rb") as handle:
            results = pickle.load(handle)  # noqa: S301 - our own file, written below
    elif args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            results = list(pool.map(_run_seed, seeds, [args] * args.seeds))
    else:
        results = [_run_seed(s, args) for s in seeds]
    if args.results is not None and not args.results.exists():
        with args.results.open("wb") as handle:
            pickle.dump(results, handle)
    given = list(sys.argv[1:] if argv is None else argv)
    if "--results" in given:  # not part of what made the numbers
        del given[given.index("--results") : given.index("--results") + 2]
    command = ".venv/bin/python -m bench.quality " + " ".join(
        a for a in given if not a.startswith("--results=")
    )
    text = report(results, args, 0.0 if loaded else time.perf_counter() - started, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
