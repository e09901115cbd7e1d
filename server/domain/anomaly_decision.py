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
2. **Same site, same time**: the site's median z (when positive) is taken off the miner's z, and
   the rest counts in units of the site's same-time spread of z (at least `site_spread_floor`: when
   a condition lifts a whole site, a miner a little above the crowd is not a fault); and three peer
   scores, each under the miner's own baseline of the offset and in units of the site's spread of
   that score, catch what the autoencoder's 24 h-relative channels smooth away: temperature above
   the site median (a fan slowing, paste drying, dust), hashrate per nominal below it (chips
   wearing out) and rejection rate above it (the miner's own pool or network trouble, where a pool
   outage of the whole site lifts the median instead). The decision score is the largest of these.
3. **Deviation**: the score reaches `z_threshold` in `persist_k` of the last `persist_n` windows
   outside context (warm-up windows never count) and lasts while it stays at or above `release_z`
   (hysteresis: one condition, one alarm).
4. **Context is not a fault** (`Suppression`): windows during a planned state or a recorded failure's
   downtime, and for `warmup_hours` after a planned state ends, a repair, or a restart seen in the
   telemetry (hashing resumes after idling), are suppressed with the reason. Restarts in a loop
   (`loop_restarts` within `loop_hours`, counted up to the window) are a fault, not context.
5. **Site events**: when at least `site_share` of a site's reporting miners (and `site_min_miners`)
   have z >= `site_z` at once, that is one site event; a miner it hit, or whose deviation began
   with it, is suppressed as SITE_EVENT from `site_lead_hours` before it until `site_release_hours`
   after it (a miner already flagged before stays flagged: a fault in progress). A **site-wide
   restart** (`site_share` of the miners resume hashing within `site_restart_minutes`, not out of a
   planned state or recorded downtime: a firmware update, a power cycle) is a site event of kind
   "restart" whose members are suppressed as SITE_EVENT for `site_restart_hours` (the models'
   24 h comparisons still see the old readings). In both, a miner that runs hotter than its peers
   or rejects more than they do is flagged all the same (its own fault).

`is_anomaly = deviates and not suppressed`. Pure numpy: the server (DetectAnomalies) and the quality
report (bench.anomaly) call the same functions. Settings were tuned on bench fleets 101-102 only;
the rules of the second round (restarts, spread, rejection, warm-up in k of n, event membership) on
fleets 101-108 only (bench/anomaly_settings.py).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

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
    site_spread_floor: float = 1.0
    """A miner's z above the site median counts in units of the site's same-time spread of z, at
    least this (when a condition lifts the whole site, its miners' z spread widely: a miner 4 above
    the median of 15 is one of the crowd, not a fault)."""
    thermal_floor_c: float = 1.0
    """Smallest spread (°C) of a miner's temperature offset from its site's median."""
    hashrate_floor: float = 0.02
    """Smallest spread of a miner's hashrate-per-nominal offset from its site's median."""
    rejection_floor: float = 0.01
    """Smallest spread of a miner's rejection-rate offset from its site's median."""
    site_restart_minutes: float = 30.0
    """Restarts of site_share of a site's miners (and site_min_miners) that resume within this many
    minutes of each other are one site-wide restart (a firmware update, a power cycle)..."""
    site_restart_hours: float = 26.0
    """...whose footprint lasts this long after the last of them resumed: the models compare each
    miner with its own last 24 h (plus the 2 h window), so new firmware readings look like a change
    until the day before the window holds them too."""


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
    rejection: np.ndarray | None = None  # (N,) rejection rate, mean over the last hour; NaN missing
    restart_spans: np.ndarray | None = None  # (R, 2) [idle start, resume] epoch s, from restarts()


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
    kind: str = ""
    """"restart" for a site-wide restart; "" where the caller names it from the deviating features."""


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


@dataclass(frozen=True, slots=True)
class PeerScores:
    """Per miner, z-scores of its offset from the site's same-time median, each under the miner's own
    baseline of that offset, positive where the miner is worse than its peers."""

    hot: dict[str, np.ndarray]  # temperature above the site (a fan slowing, paste drying, dust)
    slow: dict[str, np.ndarray]  # hashrate per nominal below the site (chips wearing out)
    rejecting: dict[str, np.ndarray]  # rejection rate above the site (the miner's own pool trouble)

    def own(self, miner: str) -> np.ndarray:
        """What a site-wide condition does not explain: hotter, or rejecting more, than the site
        (hashing slower is left out: in a heat wave the hottest miners throttle first)."""
        return np.maximum(self.hot[miner], self.rejecting[miner])

    def any(self, miner: str) -> np.ndarray:
        return np.maximum(np.maximum(self.hot[miner], self.slow[miner]), self.rejecting[miner])


def peer_scores(items: Mapping[str, MinerInput], cfg: DecisionSettings, interval_s: int) -> PeerScores:
    """The site's same-time peers (the same ambient, the same pool) as a reference: a slow drift is
    not absorbed, and what the whole site does (a heat wave, a pool outage, new firmware) cancels
    out. Zero where the site has too few peers reporting or the miner has no baseline yet."""
    zero = {m: np.zeros(i.ends.shape[0]) for m, i in items.items()}
    hot, slow, rejecting = dict(zero), dict(zero), dict(zero)
    hot.update(_peer_z(items, "temperature", cfg.thermal_floor_c, cfg, interval_s))
    slow.update({m: -z for m, z in _peer_z(items, "hashrate", cfg.hashrate_floor, cfg, interval_s).items()})
    rejecting.update(_peer_z(items, "rejection", cfg.rejection_floor, cfg, interval_s))
    return PeerScores(hot, slow, rejecting)


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
    # In units of the site's same-time spread of these z (at least site_spread_floor): when a pool
    # outage lifts every miner's rejection rate by its own amount, no one of them stands out.
    zt = np.full((len(names), steps), np.nan)
    for r, m in enumerate(names):
        ok = live[m].context == Suppression.NONE
        zt[r, (live[m].ends[ok] - t0) // interval_s] = out[m][ok]
    spread = np.ones(steps)
    if enough.any():
        mid = np.nanmedian(zt[:, enough], axis=0)
        spread[enough] = np.maximum(
            MAD_TO_SIGMA * np.nanmedian(np.abs(zt[:, enough] - mid), axis=0), cfg.site_spread_floor
        )
    spread = np.nan_to_num(spread, nan=1.0)
    return {m: out[m] / spread[(live[m].ends - t0) // interval_s] for m in live}


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
) -> tuple[list[SiteEventSpan], np.ndarray, np.ndarray, int]:
    """Site events of one site from its miners' own z; also the site's median z and the spread of
    z across its miners (at least site_spread_floor) per grid step (NaN and 1 where too few miners
    report), and the grid's first time."""
    live = {m: i for m, i in items.items() if i.ends.size}
    if not live:
        return [], np.zeros(0), np.ones(0), 0
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
    spread = np.ones(steps)
    enough = reporting >= cfg.site_median_min_miners
    if enough.any():
        median[enough] = np.nanmedian(table[:, enough], axis=0)
        mad = np.nanmedian(np.abs(table[:, enough] - median[enough]), axis=0)
        spread[enough] = np.maximum(MAD_TO_SIGMA * mad, cfg.site_spread_floor)
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
    return events, median, spread, t0


def site_restarts(site: str, items: Mapping[str, MinerInput], cfg: DecisionSettings) -> list[SiteEventSpan]:
    """Site-wide restarts (kind "restart"): at least site_share of the site's miners (and
    site_min_miners) resume hashing within site_restart_minutes of each other. Each spans from the
    first idling to site_restart_hours after the last resume; its members are the miners that
    restarted in it. Reboot loops count too: what matters is that the site restarted at once."""
    live = [m for m, i in items.items() if i.ends.size]
    resumes = []
    for m in live:
        item = items[m]
        spans = np.asarray(item.restart_spans if item.restart_spans is not None else []).reshape(-1, 2)
        for a, r in spans.tolist():
            # idling the store explains (a planned curtailment, a recorded failure) is not a restart
            at = min(int(np.searchsorted(item.ends, a)), item.ends.shape[0] - 1)
            if item.context[at] not in (Suppression.PLANNED_STATE, Suppression.FAILURE_DOWNTIME):
                resumes.append((int(r), int(a), m))
    resumes.sort()
    need = max(cfg.site_min_miners, int(np.ceil(cfg.site_share * len(live))))
    window = int(cfg.site_restart_minutes * 60)
    out: list[SiteEventSpan] = []
    i = 0
    while i < len(resumes):
        j = i
        while j + 1 < len(resumes) and resumes[j + 1][0] - resumes[i][0] <= window:
            j += 1
        members = {m for _, _, m in resumes[i : j + 1]}
        if len(members) >= need:
            start = min(a for _, a, _ in resumes[i : j + 1])
            end = resumes[j][0] + int(cfg.site_restart_hours * 3600)
            if out and start <= out[-1].end:  # a second wave inside the footprint extends it
                prev = out.pop()
                members |= set(prev.miner_ids)
                start = prev.start
            out.append(
                SiteEventSpan(site, start, end, len(members), len(live), tuple(sorted(members)), "restart")
            )
            i = j + 1
        else:
            i += 1
    last = max((int(items[m].ends[-1]) for m in live), default=0)
    return [replace(e, end=min(e.end, last)) for e in out]  # an open one ends at the last window


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
    _, median, _, t0 = site_events(site, zs, items, cfg, interval_s)
    if median.size:  # second pass: what the whole site shares joins each baseline
        for m, item in items.items():
            if item.ends.size:
                at = median[(item.ends - t0) // interval_s]
                offset = np.where(np.isfinite(at), np.maximum(at, 0.0), 0.0)
                zs[m], thresholds[m] = own_scores(item, prior, cfg, interval_s, offset)
    events, median, spread, t0 = site_events(site, zs, items, cfg, interval_s)
    restarted = site_restarts(site, items, cfg)
    peers = peer_scores(items, cfg, interval_s)
    lead, release = int(cfg.site_lead_hours * 3600), int(cfg.site_release_hours * 3600)
    out = {}
    for m, item in items.items():
        z = zs[m]
        score = z.copy()
        if median.size and item.ends.size:
            step = (item.ends - t0) // interval_s
            at = median[step]
            score = (z - np.where(np.isfinite(at), np.maximum(at, 0.0), 0.0)) / spread[step]
        score = np.maximum(score, peers.any(m))
        # Context windows never count towards k of n: a miner deviating through its warm-up is not
        # flagged the moment the warm-up ends, only when it still deviates k times afterwards.
        live = item.context == Suppression.NONE
        deviates = hysteresis(
            persistent((score >= cfg.z_threshold) & live, cfg.persist_k, cfg.persist_n), score, cfg.release_z
        )
        suppression = item.context.astype(np.int64).copy()
        elevated = z >= cfg.site_z
        for a, b in _runs(elevated | deviates):
            onset = int(item.ends[a])
            for event in events:
                if event.start - lead <= onset <= event.end:
                    until = (item.ends[a : b + 1] <= event.end + release) & (suppression[a : b + 1] == 0)
                    suppression[a : b + 1][until] = Suppression.SITE_EVENT
        # A miner the event hit is the event's from site_lead_hours before it to site_release_hours
        # after it, unless it was flagged before that (a fault in progress stays an anomaly); a
        # site-wide restart (new firmware readings) is the site's for its whole footprint.
        for event in events:
            if m in event.miner_ids:
                inside = (item.ends >= event.start - lead) & (item.ends <= event.end + release)
                flagged = deviates & (suppression == 0) & (item.ends < event.start - lead)
                for a, b in _runs(deviates):
                    if flagged[a : b + 1].any():
                        inside[a : b + 1] = False
                suppression[inside & (suppression == 0)] = Suppression.SITE_EVENT
        for event in restarted:
            if m in event.miner_ids:
                inside = (item.ends >= event.start) & (item.ends <= event.end) & (suppression == 0)
                suppression[inside] = Suppression.SITE_EVENT
        # Running hotter, or rejecting more, than the site's own median is the miner's own, whatever
        # the site does (the whole site shares the ambient and the pool). Hashing slower than the
        # site is not, during a site event: in a heat wave the hottest miners throttle first
        # (measured on fleet 204: 14 of its 17 false alarms before this rule).
        suppression[
            (suppression == Suppression.SITE_EVENT)
            & persistent((peers.own(m) >= cfg.z_threshold) & live, cfg.persist_k, cfg.persist_n)
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
    return out, sorted(events + restarted, key=lambda e: (e.start, e.kind))
