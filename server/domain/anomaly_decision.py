"""The anomaly decision: from reconstruction errors to flags that hold on a fleet they were not tuned on.

A fixed threshold on the autoencoder's error (the 99th percentile of healthy validation errors) does
not transfer: a new fleet, or one miner, has its own error level, and every condition that moves the
telemetry (a heat wave, a curtailment ending, a repair) reads as an anomaly. The decision here:

1. **Own baseline** (`z`): the robust z-score of log(error) under the miner's OWN error distribution
   over a long baseline (`baseline_hours`, 5 days, ending `baseline_gap_hours` (a day) before the
   window; sampled every `baseline_stride` windows on the absolute grid). Windows scoring
   `baseline_max_z` or more (after the site's shared part is taken off) and context windows never
   enter it, so a slow drift does not become the new normal while a shift the whole site shares
   (new firmware readings) does. A miner without `min_baseline_windows` such windows uses its
   history up to 2 h ago, then the model's healthy validation errors (the fleet prior).
2. **Same site, same time**: the site's median z (when positive) is taken off the miner's z; and
   two peer scores, each under the miner's own baseline of the offset, catch what the
   autoencoder's 24 h-relative channels smooth away: temperature above the site median (a fan
   slowing, paste drying, dust) and hashrate per nominal below it (chips wearing out). The decision
   score is the largest of the three.
3. **Deviation**: the score reaches `z_threshold` in `persist_k` of the last `persist_n` windows and
   lasts while it stays at or above `release_z` (hysteresis: one condition, one alarm).
4. **Context is not a fault** (`Suppression`): windows during a planned state or a recorded failure's
   downtime, and for `warmup_hours` after a planned state ends, a repair, or a restart seen in the
   telemetry (hashing resumes after idling), are suppressed with the reason. Restarts in a loop
   (`loop_restarts` within `loop_hours`, counted up to the window) are a fault, not context.
5. **Site events**: when at least `site_share` of a site's reporting miners (and `site_min_miners`)
   have z >= `site_z` at once, that is one site event; a miner whose deviation began with it (from
   `site_lead_hours` before) is suppressed as SITE_EVENT until the event ends plus
   `site_release_hours`, unless it also runs hotter or slower than its peers (its own fault).

`is_anomaly = deviates and not suppressed`. Pure numpy: the server (DetectAnomalies) and the quality
report (bench.anomaly) call the same functions. Settings were tuned on bench fleets 101-102 only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LOG_FLOOR = 1e-9
SHORT_GAP_S = 2 * 3600
"""A miner younger than baseline_gap_hours + 12 h is judged against its history up to 2 h ago."""
MAD_TO_SIGMA = 1.4826


class Suppression(enum.IntEnum):
    """Why a deviating window is not an anomaly; values match the proto enum AnomalySuppression."""

    NONE = 0
    PLANNED_STATE = 1
    FAILURE_DOWNTIME = 2
    WARM_UP = 3
    SITE_EVENT = 4


@dataclass(frozen=True, slots=True)
class DecisionSettings:
    """The decision's parameters (frozen before evaluation; see bench/anomaly_settings.py)."""

    z_threshold: float = 4.0
    """Decision score at or above which a window deviates."""
    persist_k: int = 3
    """...in at least this many..."""
    persist_n: int = 4
    """...of the last this many windows (5-minute steps)."""
    release_z: float = 2.5
    """A deviation lasts until the decision score falls below this (hysteresis)."""
    baseline_hours: float = 120.0
    """Length of the miner's own baseline of errors."""
    baseline_gap_hours: float = 24.0
    """The baseline ends this long before the window: the last day never judges itself, so a drift
    has to be compared with how the miner was at least a day earlier."""
    baseline_max_z: float = 2.0
    """A window joins later baselines only below this score (a creeping drift does not ratchet it up)."""
    baseline_stride: int = 6
    """Baseline windows are those whose end is on every baseline_stride-th grid step."""
    min_baseline_windows: int = 24
    """Below this many baseline windows the model's validation errors stand in (12 h at stride 6)."""
    scale_floor: float = 0.3
    """Smallest spread of log(error) a baseline may claim (a very steady miner is not hair-trigger)."""
    warmup_hours: float = 8.5
    """Context after a planned state ends, a repair or a restart: the 6 h context channels and the
    2 h window clear of it (measured on the tuning fleets: alarms began 6.2 h after reboots at 6 h)."""
    restart_idle_samples: int = 6
    """Missing samples in a row that count as a restart when hashing resumes (30 min)."""
    loop_restarts: int = 3
    """This many restarts within loop_hours are a reboot loop: a fault, not context."""
    loop_hours: float = 6.0
    """Span for counting restarts of a loop."""
    site_z: float = 2.5
    """Decision score at or above which a miner counts as hit by a site-wide condition."""
    site_share: float = 0.3
    """Share of a site's reporting miners that must be hit at once for a site event..."""
    site_min_miners: int = 3
    """...and at least this many."""
    site_lead_hours: float = 1.0
    """A miner's deviation that starts this long before a site event belongs to it."""
    site_release_hours: float = 2.0
    """Suppression as SITE_EVENT lasts this long after the event ends."""
    site_median_min_miners: int = 4
    """The site median is taken out of a miner's score only with this many miners reporting."""
    thermal_floor_c: float = 1.0
    """Smallest spread (°C) of a miner's temperature offset from its site's median."""
    hashrate_floor: float = 0.02
    """Smallest spread of a miner's hashrate-per-nominal offset from its site's median."""


DEFAULT_DECISION = DecisionSettings()


@dataclass(frozen=True, slots=True)
class Prior:
    """The fleet prior: median and spread of log(error) of the model's healthy validation windows."""

    median: float
    scale: float

    @classmethod
    def from_errors(cls, errors: np.ndarray, floor: float) -> Prior:
        logs = np.log(np.maximum(np.asarray(errors, dtype=np.float64), LOG_FLOOR))
        if not logs.size:
            return cls(0.0, 1.0)
        median = float(np.median(logs))
        return cls(median, max(MAD_TO_SIGMA * float(np.median(np.abs(logs - median))), floor))


@dataclass(slots=True)
class MinerInput:
    """One miner's scored windows, time-ordered: window ends (epoch s), errors and context."""

    ends: np.ndarray  # (N,) int64 seconds
    errors: np.ndarray  # (N,) reconstruction error
    context: np.ndarray  # (N,) int Suppression from context_reasons (no SITE_EVENT yet)
    temperature: np.ndarray | None = None  # (N,) °C, mean over each window's last hour; NaN missing
    hashrate: np.ndarray | None = None  # (N,) hashrate / nominal, mean over the last hour; NaN missing


@dataclass(slots=True)
class MinerDecision:
    """The decision per window of one miner (same order as its MinerInput)."""

    ends: np.ndarray  # (N,) int64 seconds
    z: np.ndarray  # (N,) the miner's own z of log(error) (before the site median is taken out)
    score: np.ndarray  # (N,) decision score: max(z minus the positive site median z, thermal z)
    threshold: np.ndarray  # (N,) the error that z_threshold corresponds to under the baseline
    deviates: np.ndarray  # (N,) bool: score >= z_threshold in k of the last n windows
    suppression: np.ndarray  # (N,) int Suppression
    is_anomaly: np.ndarray  # (N,) bool


@dataclass(frozen=True, slots=True)
class SiteEventSpan:
    """One site event found in the scores: [start, end] (epoch s), miners hit at its peak."""

    site: str
    start: int
    end: int
    peak_miners: int
    reporting: int
    miner_ids: tuple[str, ...]


# ---- context -----------------------------------------------------------------------------------


def restarts(
    ends: np.ndarray, hashrate: np.ndarray, observed: np.ndarray, nominal: float, idle_samples: int
) -> np.ndarray:
    """(R, 2) [idle start, resume] times (epoch s) where hashing resumes after idling: after an
    observed sample hashing below 10 % of nominal, or after `idle_samples` missing samples in a row.
    (T,) grid rows in."""
    hashing = observed & (np.nan_to_num(hashrate, nan=0.0) > 0.1 * max(nominal, 1e-9))
    idle_observed = observed & ~hashing
    out = []
    last_hashing, missing, idle, idle_from = -1, 0, False, 0
    for i in range(ends.shape[0]):
        if hashing[i]:
            if last_hashing >= 0 and (idle or missing >= idle_samples):
                out.append((int(ends[idle_from]), int(ends[i])))
            last_hashing, missing, idle = i, 0, False
        else:
            if not idle and missing == 0:
                idle_from = i
            if idle_observed[i]:
                idle = True
            else:
                missing += 1
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def context_reasons(
    ends: np.ndarray,
    planned: Sequence[tuple[int, int]],
    downtime: Sequence[tuple[int, int]],
    restart_spans: np.ndarray,
    cfg: DecisionSettings = DEFAULT_DECISION,
) -> np.ndarray:
    """(N,) window ends -> (N,) Suppression for context: planned states, recorded downtime, the
    warm-up after either ends, and a restart from its idling to the end of its warm-up, unless the
    miner restarted loop_restarts times within the loop_hours before the window (a reboot loop is a
    fault; only restarts up to the window count, so the decision never looks ahead)."""
    reasons = np.zeros(ends.shape[0], dtype=np.int64)
    warm = int(cfg.warmup_hours * 3600)
    spans = np.asarray(restart_spans, dtype=np.int64).reshape(-1, 2)
    resumes = np.sort(spans[:, 1])
    recent = np.searchsorted(resumes, ends, side="right") - np.searchsorted(
        resumes, ends - int(cfg.loop_hours * 3600), side="right"
    )
    warming = np.zeros(ends.shape[0], dtype=bool)
    for idle_from, resumed in spans:
        warming |= (ends >= idle_from) & (ends <= resumed + warm)
    reasons[warming & (recent < cfg.loop_restarts)] = Suppression.WARM_UP
    for _, hi in list(planned) + list(downtime):
        reasons[(ends > hi) & (ends <= hi + warm)] = Suppression.WARM_UP
    for lo, hi in downtime:
        reasons[(ends >= lo) & (ends <= hi)] = Suppression.FAILURE_DOWNTIME
    for lo, hi in planned:
        reasons[(ends >= lo) & (ends <= hi)] = Suppression.PLANNED_STATE
    return reasons


# ---- the miner's own score ----------------------------------------------------------------------


def _baseline_z(
    ends: np.ndarray,
    values: np.ndarray,
    candidate: np.ndarray,
    floor: float,
    prior: Prior | None,
    cfg: DecisionSettings,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, baseline median, baseline spread) per window of `values` under the miner's own baseline,
    hour by hour, so a window's baseline holds only earlier candidate windows that did not deviate.
    Without a baseline of its own: the prior, or z = 0 when there is none. `offset` (the site's
    median z) is taken off before asking whether a window deviated: a shift the whole site shares
    (new firmware readings) joins the baseline and is absorbed instead of deviating for ever."""
    offset = np.zeros(ends.shape[0]) if offset is None else offset
    n = ends.shape[0]
    z = np.zeros(n)
    median = np.full(n, prior.median if prior else np.nan)
    scale = np.full(n, prior.scale if prior else np.nan)
    usable = np.zeros(n, dtype=bool)
    span, gap = int(cfg.baseline_hours * 3600), int(cfg.baseline_gap_hours * 3600)
    hours = ends // 3600
    bounds = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1], True]) if n else np.zeros(1, dtype=np.int64)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        t0 = int(hours[lo]) * 3600
        a = int(np.searchsorted(ends, t0 - span, side="left"))
        b = int(np.searchsorted(ends, t0 - gap, side="right"))
        base = values[a:b][usable[a:b]]
        if base.size < cfg.min_baseline_windows:  # a young miner: its history up to 2 h ago
            b = int(np.searchsorted(ends, t0 - SHORT_GAP_S, side="right"))
            base = values[a:b][usable[a:b]]
        own = base.size >= cfg.min_baseline_windows
        if own:
            m = float(np.median(base))
            median[lo:hi] = m
            scale[lo:hi] = max(MAD_TO_SIGMA * float(np.median(np.abs(base - m))), floor)
        if own or prior is not None:
            z[lo:hi] = np.nan_to_num((values[lo:hi] - median[lo:hi]) / scale[lo:hi], nan=0.0)
        # Until the miner has a baseline of its own, every candidate window joins it: judged
        # against the fleet prior, a miner whose normal differs would never get one.
        usable[lo:hi] = candidate[lo:hi] & ((z[lo:hi] - offset[lo:hi] < cfg.baseline_max_z) | (not own))
    return z, median, scale


def own_scores(
    item: MinerInput,
    prior: Prior,
    cfg: DecisionSettings,
    interval_s: int,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(z, threshold error) per window: log(error) under the miner's own baseline."""
    logs = np.log(np.maximum(np.asarray(item.errors, dtype=np.float64), LOG_FLOOR))
    candidate = (item.context == Suppression.NONE) & ((item.ends // interval_s) % cfg.baseline_stride == 0)
    z, median, scale = _baseline_z(item.ends, logs, candidate, cfg.scale_floor, prior, cfg, offset)
    return z, np.exp(median + cfg.z_threshold * scale)


def window_temperature(last_hour: np.ndarray) -> np.ndarray:
    """(N, k) readings of each window's last samples -> (N,) their mean, NaN where none."""
    finite = np.isfinite(last_hour)
    count = finite.sum(axis=1)
    total = np.where(finite, last_hour, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def peer_scores(
    items: Mapping[str, MinerInput], cfg: DecisionSettings, interval_s: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per miner, the larger of two z-scores against the site's same-time median (the same ambient,
    the same pool), each under the miner's own baseline of that offset: temperature above the site
    (a fan slowing, paste drying, dust) and hashrate per nominal below it (chips wearing out). A
    slow drift is not absorbed, and what the whole site does (a heat wave) cancels out. Zero where
    the site has too few peers reporting or the miner has no baseline yet. Returns (temperature z,
    hashrate z), both positive where the miner is worse than its peers."""
    hot = {m: np.zeros(i.ends.shape[0]) for m, i in items.items()}
    slow = {m: np.zeros(i.ends.shape[0]) for m, i in items.items()}
    hot.update(_peer_z(items, "temperature", cfg.thermal_floor_c, cfg, interval_s))
    slow.update({m: -z for m, z in _peer_z(items, "hashrate", cfg.hashrate_floor, cfg, interval_s).items()})
    return hot, slow


def _peer_z(
    items: Mapping[str, MinerInput], attr: str, floor: float, cfg: DecisionSettings, interval_s: int
) -> dict[str, np.ndarray]:
    live = {m: i for m, i in items.items() if i.ends.size and getattr(i, attr) is not None}
    out: dict[str, np.ndarray] = {}
    if len(live) < cfg.site_median_min_miners:
        return out
    t0, steps = _grid(live, interval_s)
    names = sorted(live)
    table = np.full((len(names), steps), np.nan)
    values = {m: np.asarray(getattr(i, attr), dtype=np.float64) for m, i in live.items()}
    for r, m in enumerate(names):
        ok = (live[m].context == Suppression.NONE) & np.isfinite(values[m])
        table[r, (live[m].ends[ok] - t0) // interval_s] = values[m][ok]
    reporting = np.isfinite(table).sum(axis=0)
    median = np.full(steps, np.nan)
    enough = reporting >= cfg.site_median_min_miners
    if enough.any():
        median[enough] = np.nanmedian(table[:, enough], axis=0)
    for m, item in live.items():
        offset = values[m] - median[(item.ends - t0) // interval_s]
        candidate = (
            (item.context == Suppression.NONE)
            & np.isfinite(offset)
            & ((item.ends // interval_s) % cfg.baseline_stride == 0)
        )
        z, _, _ = _baseline_z(item.ends, np.nan_to_num(offset, nan=0.0), candidate, floor, None, cfg)
        out[m] = np.where(np.isfinite(offset), z, 0.0)
    return out


def hysteresis(deviates: np.ndarray, score: np.ndarray, release: float) -> np.ndarray:
    """(N,) bool -> (N,) bool: a deviation lasts while the score stays at or above `release`, so one
    condition whose score dips for a few windows is one alarm, not several."""
    out = deviates.copy()
    for i in range(1, out.shape[0]):
        if not out[i] and out[i - 1] and score[i] >= release:
            out[i] = True
    return out


def persistent(values: np.ndarray, k: int, n: int) -> np.ndarray:
    """(N,) bool -> (N,) bool: at least k of the last n (this one included) are True."""
    counts = np.convolve(values.astype(np.int64), np.ones(n, dtype=np.int64))[: values.shape[0]]
    return counts >= k


# ---- the site -----------------------------------------------------------------------------------


def _grid(items: Mapping[str, MinerInput], interval_s: int) -> tuple[int, int]:
    lo = min(int(i.ends[0]) for i in items.values() if i.ends.size)
    hi = max(int(i.ends[-1]) for i in items.values() if i.ends.size)
    return lo, (hi - lo) // interval_s + 1


def site_events(
    site: str,
    zs: Mapping[str, np.ndarray],
    items: Mapping[str, MinerInput],
    cfg: DecisionSettings,
    interval_s: int,
) -> tuple[list[SiteEventSpan], np.ndarray, int]:
    """Site events of one site from its miners' own z; also the site's median z per grid step
    (NaN where too few miners report) and the grid's first time."""
    live = {m: i for m, i in items.items() if i.ends.size}
    if not live:
        return [], np.zeros(0), 0
    t0, steps = _grid(live, interval_s)
    names = sorted(live)
    table = np.full((len(names), steps), np.nan)
    for r, m in enumerate(names):
        ok = live[m].context == Suppression.NONE
        table[r, (live[m].ends[ok] - t0) // interval_s] = zs[m][ok]
    reporting = np.sum(np.isfinite(table), axis=0)
    hit = np.nan_to_num(table, nan=-np.inf) >= cfg.site_z
    counts = hit.sum(axis=0)
    median = np.full(steps, np.nan)
    enough = reporting >= cfg.site_median_min_miners
    if enough.any():
        median[enough] = np.nanmedian(table[:, enough], axis=0)
    active = (counts >= cfg.site_min_miners) & (counts >= cfg.site_share * np.maximum(reporting, 1))
    events = []
    for a, b in _runs(active, bridge=6):
        peak = int(a + np.argmax(counts[a : b + 1]))
        members = tuple(names[r] for r in np.flatnonzero(hit[:, a : b + 1].any(axis=1)))
        events.append(
            SiteEventSpan(
                site,
                t0 + a * interval_s,
                t0 + b * interval_s,
                int(counts[peak]),
                int(reporting[peak]),
                members,
            )
        )
    return events, median, t0


def _runs(flags: np.ndarray, bridge: int = 0) -> list[tuple[int, int]]:
    """[a, b] index runs of True, joining runs separated by at most `bridge` False steps."""
    idx = np.flatnonzero(flags)
    if not idx.size:
        return []
    breaks = np.flatnonzero(np.diff(idx) > bridge + 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


# ---- the whole decision -----------------------------------------------------------------------------


def decide_site(
    site: str,
    items: Mapping[str, MinerInput],
    prior: Prior,
    cfg: DecisionSettings = DEFAULT_DECISION,
    interval_s: int = 300,
) -> tuple[dict[str, MinerDecision], list[SiteEventSpan]]:
    """Decide every window of every miner of one site (a miner with no site is a site of its own)."""
    zs, thresholds = {}, {}
    for m, item in items.items():
        zs[m], thresholds[m] = own_scores(item, prior, cfg, interval_s)
    _, median, t0 = site_events(site, zs, items, cfg, interval_s)
    if median.size:  # second pass: what the whole site shares joins each baseline
        for m, item in items.items():
            if item.ends.size:
                at = median[(item.ends - t0) // interval_s]
                offset = np.where(np.isfinite(at), np.maximum(at, 0.0), 0.0)
                zs[m], thresholds[m] = own_scores(item, prior, cfg, interval_s, offset)
    events, median, t0 = site_events(site, zs, items, cfg, interval_s)
    hot, slow = peer_scores(items, cfg, interval_s)
    lead, release = int(cfg.site_lead_hours * 3600), int(cfg.site_release_hours * 3600)
    out = {}
    for m, item in items.items():
        z = zs[m]
        score = z.copy()
        if median.size and item.ends.size:
            at = median[(item.ends - t0) // interval_s]
            score = z - np.where(np.isfinite(at), np.maximum(at, 0.0), 0.0)
        score = np.maximum(score, np.maximum(hot[m], slow[m]))
        deviates = hysteresis(
            persistent(score >= cfg.z_threshold, cfg.persist_k, cfg.persist_n), score, cfg.release_z
        )
        suppression = item.context.astype(np.int64).copy()
        elevated = z >= cfg.site_z
        for a, b in _runs(elevated | deviates):
            onset = int(item.ends[a])
            for event in events:
                if event.start - lead <= onset <= event.end:
                    until = (item.ends[a : b + 1] <= event.end + release) & (suppression[a : b + 1] == 0)
                    suppression[a : b + 1][until] = Suppression.SITE_EVENT
        # Running hotter than the site's own median is the miner's own, whatever the site does (the
        # whole site shares the ambient). Hashing slower than the site is not, during a site event:
        # in a heat wave the hottest miners throttle first (measured on fleet 204: 14 of its 17
        # false alarms before this rule).
        suppression[
            (suppression == Suppression.SITE_EVENT)
            & persistent(hot[m] >= cfg.z_threshold, cfg.persist_k, cfg.persist_n)
        ] = Suppression.NONE
        out[m] = MinerDecision(
            ends=item.ends,
            z=z,
            score=score,
            threshold=thresholds[m],
            deviates=deviates,
            suppression=suppression,
            is_anomaly=deviates & (suppression == Suppression.NONE),
        )
    return out, events
