"""Quality report of the anomaly DECISION on held-out fleets with every confounder on.

    .venv/bin/python -m bench.anomaly [--seeds 201 202 ...] [--jobs 1] [--cache DIR]
        [--out bench/results/anomaly.md]

Per seed (settings in bench/anomaly_settings.py): simulate the fleet with heat waves, firmware
updates, site pool outages, healthy reboots, slow drifts, curtailments and repairs; write it to a temp
DuckDB file through the real Store and read the feature series back; train the autoencoder as the
server does on 70 % of the miners during the first 70 % of the time; score every window of every
miner; then decide (server/domain/anomaly_decision.py, the code DetectAnomalies runs) with only what
the store knows: planned states, recorded failures and repairs, the telemetry itself and the site.

Scored in the last 30 % of the time, on every miner, per event without point adjustment (a window
belongs to its end time): a flagged run is one alarm event; a *miner anomaly* (a failure's precursor,
a near miss, a slow drift, one miner's network trouble) is detected when an alarm event overlaps it;
an alarm event that overlaps no miner anomaly, no recorded downtime and no planned state is a false
alarm, including alarms inside site events (heat waves, firmware updates, pool outages of a site: those
must be reported once per site, not per miner) and in warm-ups. Site events found are matched with
the true ones of the same site (overlap within SITE_EVENT_TOLERANCE_HOURS). 95 % intervals: bootstrap
over miners within each fleet.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import anomaly_settings as S
from bench.quality import EventCounts, bootstrap, event_counts, runs, truncate
from server.domain.anomaly_decision import (
    DEFAULT_DECISION,
    DecisionSettings,
    MinerInput,
    Prior,
    SiteEventSpan,
    Suppression,
    context_reasons,
    decide_site,
    persistent,
    restarts,
    window_temperature,
)
from server.models.windows import WindowConfig, build_windows
from server.records import FEATURE_COLUMNS
from server.sim.settings import SimSettings

Span = tuple[int, int]
INTERVAL_S = 300


def _s(moment: datetime) -> int:
    return int(moment.timestamp())


def load_fleet_series(
    n_miners: int, days: float, seed: int, sim: SimSettings = S.SIM
) -> tuple[Any, dict[str, Any]]:
    """Simulate the fleet (evaluation settings) and read its feature series back through a temp store."""
    from server.sim import seed_store, simulate_fleet
    from server.store import Store

    fleet = simulate_fleet(n_miners, days, seed, end=S.END, settings=sim)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "fleet.duckdb")
        try:
            seed_store(store, fleet)
            series = store.load_series()
        finally:
            store.close()
    return fleet, series


@dataclass
class MinerData:
    """One miner's scored windows over the whole span and what the store knows about it."""

    miner_id: str
    site: str
    ends: np.ndarray  # (N,) int64 s
    errors: np.ndarray  # (N,)
    grid: np.ndarray  # (T,) int64 s, the miner's sample grid
    hashrate: np.ndarray  # (T,) TH/s, NaN where missing
    observed: np.ndarray  # (T,) bool
    nominal_hashrate: float
    planned: list[Span]
    downtime: list[Span]
    temperature: np.ndarray | None = None  # (T,) °C, NaN where missing
    rejection: np.ndarray | None = None  # (T,) rejection rate, NaN where missing


@dataclass
class SeedData:
    """Everything the decision and the metrics need for one fleet (cached between runs)."""

    seed: int
    cutoff: int
    end: int
    miners: dict[str, MinerData]
    threshold: float  # the served p99 threshold
    val_errors: np.ndarray
    episodes: dict[str, list[tuple[Span, str]]]  # miner -> (span, kind)
    ignore: dict[str, list[Span]]
    site_truth: list[tuple[str, str, Span, tuple[str, ...]]]  # site, kind, span, miners
    context_truth: dict[str, list[tuple[int, str]]]  # miner -> (time, kind)
    ae_metrics: dict[str, float]
    seconds: float


def prepare(
    seed: int,
    log: Callable[[str], None],
    *,
    miners_n: int = S.MINERS,
    days: float = S.DAYS,
    epochs: int = S.AUTOENCODER_EPOCHS,
    sim: SimSettings = S.SIM,
) -> SeedData:
    """Simulate, train the autoencoder and score every window of one fleet (sizes: the evaluation's)."""
    from server.models.inference import AnomalyScorer
    from server.models.registry import ModelRegistry
    from server.models.train import AUTOENCODER_DEFAULTS, train_autoencoder

    started = time.perf_counter()
    fleet, series = load_fleet_series(miners_n, days, seed, sim)
    miners = {m.miner_id: m for m in fleet.miners}
    ids = sorted(series)
    shuffled = list(np.random.default_rng(seed).permutation(ids))
    train_ids = sorted(shuffled[: round(S.TRAIN_MINER_FRACTION * len(ids))])
    cutoff = fleet.start + S.TRAIN_TIME_FRACTION * (fleet.end - fleet.start)
    window = WindowConfig(sequence_length=24, sample_interval_s=INTERVAL_S, horizon_hours=24)
    train = build_windows(
        {m: truncate(series[m], cutoff) for m in train_ids},
        miners,
        fleet.failures,
        fleet.planned_states,
        window,
    )
    cfg = replace(AUTOENCODER_DEFAULTS, epochs=epochs, seed=seed, threads=1)
    trained = train_autoencoder(train, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        registry = ModelRegistry(Path(tmp))
        scorer = AnomalyScorer.from_registry(registry, registry.save(trained.to_artifact()))
    log(
        f"seed {seed}: autoencoder {trained.metrics['epochs_run']:.0f} epochs, {time.perf_counter() - started:.0f}s"  # noqa: E501
    )
    every = replace(window, horizon_hours=0.0, gap_hours=0.0, stride=1)
    windows = build_windows(series, miners, [], [], every)
    # As DetectAnomalies does: the baseline period only on the baseline grid, the scored period whole.
    keep = _scored(windows.window_ends.astype(np.int64), _s(cutoff))
    windows = windows.subset(np.flatnonzero(keep))
    errors = np.concatenate(
        [
            scorer.score(scorer.norm.apply(windows.gather(np.arange(lo, min(lo + 8192, len(windows))))))
            for lo in range(0, len(windows), 8192)
        ]
    )
    ends_all = windows.window_ends.astype(np.int64)
    planned: dict[str, list[Span]] = {}
    for p in fleet.planned_states:
        planned.setdefault(p.miner_id, []).append((_s(p.start), _s(p.end)))
    downtime: dict[str, list[Span]] = {}
    for f in fleet.failures:
        downtime.setdefault(f.miner_id, []).append((_s(f.occurred_at), _s(f.repaired_at or fleet.end)))
    data: dict[str, MinerData] = {}
    for m in ids:
        pick = windows.miner_ids == m
        s = series[m]
        grid = s.timestamps.astype("datetime64[s]").astype(np.int64)
        data[m] = MinerData(
            m,
            miners[m].site,
            ends_all[pick],
            errors[pick],
            grid,
            s.values[:, 0].astype(np.float32),
            s.observed,
            miners[m].nominal_hashrate_ths,
            planned.get(m, []),
            downtime.get(m, []),
            temperature=s.values[:, 1].astype(np.float32),
            rejection=s.values[:, FEATURE_COLUMNS.index("rejection_rate")].astype(np.float32),
        )
    episodes: dict[str, list[tuple[Span, str]]] = {}
    for ep in fleet.episodes:
        if ep.failure_at is not None and ep.failure_at <= ep.start:
            continue  # no precursor: nothing to detect
        hi = min(ep.failure_at or ep.end, ep.end)
        kind = ep.kind + (
            " (near miss)" if ep.failure_at is None and ep.kind not in ("pool", "drift") else ""
        )
        episodes.setdefault(ep.miner_id, []).append(((_s(ep.start), _s(hi)), kind))
    ignore = {m: planned.get(m, []) + downtime.get(m, []) for m in ids}
    contexts: dict[str, list[tuple[int, str]]] = {}
    for c in fleet.contexts:
        contexts.setdefault(c.miner_id, []).append((_s(c.at), c.kind))
    for m in ids:
        for _, hi in planned.get(m, []):
            contexts.setdefault(m, []).append((hi, "planned state ended"))
        for _, hi in downtime.get(m, []):
            contexts.setdefault(m, []).append((hi, "repair"))
    log(f"seed {seed}: scored {len(windows)} windows, {time.perf_counter() - started:.0f}s")
    return SeedData(
        seed=seed,
        cutoff=_s(cutoff),
        end=_s(fleet.end),
        miners=data,
        threshold=scorer.threshold,
        val_errors=scorer.val_errors,
        episodes=episodes,
        ignore=ignore,
        site_truth=[
            (e.site, e.kind, (_s(e.start), _s(e.end) + int(S.FOOTPRINT_HOURS * 3600)), e.miner_ids)
            for e in fleet.site_events
        ],
        context_truth=contexts,
        ae_metrics=dict(trained.metrics),
        seconds=time.perf_counter() - started,
    )


def _scored(ends: np.ndarray, cutoff: int) -> np.ndarray:
    """Windows to score: every one from 2 h before the test period, baseline-grid ones before."""
    return (ends >= cutoff - 2 * 3600) | ((ends // INTERVAL_S) % DEFAULT_DECISION.baseline_stride == 0)


def load_or_prepare(seed: int, cache: Path | None, log: Callable[[str], None]) -> SeedData:
    path = cache / f"anomaly-seed-{seed}.pkl" if cache else None
    if path is not None and path.exists():
        with path.open("rb") as fh:
            data: SeedData = pickle.load(fh)
        for d in data.miners.values():
            keep = _scored(d.ends, data.cutoff)
            d.ends, d.errors = d.ends[keep], d.errors[keep]
        return data
    data = prepare(seed, log)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump(data, fh)
    return data


# ---- decisions under comparison ---------------------------------------------------------------------


def window_temperatures(d: MinerData) -> np.ndarray | None:
    """(N,) mean temperature over each scored window's last hour (12 samples), as DetectAnomalies."""
    if d.temperature is None:
        return None
    rows = np.searchsorted(d.grid, d.ends)
    last_hour = rows[:, None] - np.arange(11, -1, -1)[None, :]
    return window_temperature(np.where(last_hour >= 0, d.temperature[np.maximum(last_hour, 0)], np.nan))


def _last_hour_mean(d: MinerData, values: np.ndarray) -> np.ndarray:
    """(N,) mean of a (T,) series over each scored window's last hour (12 samples), as DetectAnomalies."""
    rows = np.searchsorted(d.grid, d.ends)
    last_hour = rows[:, None] - np.arange(11, -1, -1)[None, :]
    return window_temperature(np.where(last_hour >= 0, values[np.maximum(last_hour, 0)], np.nan))


def window_hashrate(d: MinerData) -> np.ndarray:
    """(N,) mean hashrate per nominal over each scored window's last hour, as DetectAnomalies."""
    return _last_hour_mean(d, d.hashrate / max(d.nominal_hashrate, 1e-9))


def _restarts(d: MinerData, cfg: DecisionSettings = DEFAULT_DECISION) -> np.ndarray:
    return restarts(d.grid, d.hashrate, d.observed, d.nominal_hashrate, cfg.restart_idle_samples)


def _context(d: MinerData, cfg: DecisionSettings = DEFAULT_DECISION) -> np.ndarray:
    return context_reasons(d.ends, d.planned, d.downtime, _restarts(d, cfg), cfg)


def miner_input(d: MinerData, cfg: DecisionSettings = DEFAULT_DECISION) -> MinerInput:
    """What DetectAnomalies hands the decision for one miner."""
    spans = _restarts(d, cfg)
    rejection = getattr(d, "rejection", None)  # fleets cached before it was kept have none
    return MinerInput(
        d.ends,
        d.errors,
        context_reasons(d.ends, d.planned, d.downtime, spans, cfg),
        window_temperatures(d),
        window_hashrate(d),
        rejection=None if rejection is None else _last_hour_mean(d, rejection),
        restart_spans=spans,
    )


@dataclass
class Decided:
    """Flags per miner (aligned with MinerData.ends) and the site events found."""

    flags: dict[str, np.ndarray]
    site_events: list[SiteEventSpan] = field(default_factory=list)


def new_decision(data: SeedData, cfg: DecisionSettings = DEFAULT_DECISION, sites: bool = True) -> Decided:
    prior = Prior.from_errors(data.val_errors, cfg.scale_floor)
    by_site: dict[str, dict[str, MinerInput]] = {}
    for m, d in data.miners.items():
        by_site.setdefault(d.site if sites else m, {})[m] = miner_input(d, cfg)
    out = Decided({})
    for site, items in by_site.items():
        decisions, events = decide_site(site, items, prior, cfg, INTERVAL_S)
        out.site_events += events
        out.flags.update({m: dec.is_anomaly for m, dec in decisions.items()})
    return out


def served_decision(data: SeedData, suppress_context: bool = False) -> Decided:
    """Today's rule: every window above the p99 threshold (optionally without context windows)."""
    flags = {}
    for m, d in data.miners.items():
        above = d.errors > data.threshold
        if suppress_context:
            above &= _context(d) == Suppression.NONE
        flags[m] = above
    return Decided(flags)


def fixed_z_decision(data: SeedData, k: int = 3, n: int = 4) -> Decided:
    """Fleet-prior z (no per-miner baseline, no site), k of n, context suppressed: an ablation."""
    cfg = DEFAULT_DECISION
    prior = Prior.from_errors(data.val_errors, cfg.scale_floor)
    flags = {}
    for m, d in data.miners.items():
        z = (np.log(np.maximum(d.errors, 1e-9)) - prior.median) / prior.scale
        ok = _context(d, cfg) == Suppression.NONE
        flags[m] = persistent(z >= cfg.z_threshold, k, n) & ok
    return Decided(flags)


# ---- metrics -----------------------------------------------------------------------------------------


@dataclass
class Unit:
    """One miner's test-period counts under one decision."""

    seed: int
    counts: EventCounts
    miner_days: float
    by_kind: dict[str, tuple[int, int]]
    false_by_cause: dict[str, int]


def _cause(data: SeedData, miner: str, lo: int, hi: int) -> str:
    for _, kind, (a, b), members in data.site_truth:
        if miner in members and a - 3600 <= hi and lo <= b:
            return f"site event ({kind})"
    for at, kind in data.context_truth.get(miner, []):
        if at <= hi and lo <= at + 6 * 3600:
            return f"after {kind}"
    return "other"


def units(data: SeedData, decided: Decided) -> list[Unit]:
    out = []
    for m, d in data.miners.items():
        test = d.ends >= data.cutoff
        ends, flags = d.ends[test], decided.flags[m][test]
        rows = (ends - data.cutoff) // INTERVAL_S
        spans = [(max(a, data.cutoff), b) for (a, b), _ in data.episodes.get(m, []) if b >= data.cutoff]
        counts = event_counts(ends, ends, rows, flags, spans, data.ignore.get(m, []))
        by_kind: dict[str, tuple[int, int]] = {}
        for (a, b), kind in data.episodes.get(m, []):
            if b < data.cutoff:
                continue
            one = event_counts(ends, ends, rows, flags, [(max(a, data.cutoff), b)], [])
            if one.episodes:
                got = by_kind.get(kind, (0, 0))
                by_kind[kind] = (got[0] + one.detected, got[1] + 1)
        causes: dict[str, int] = {}
        for i, j in runs(rows, flags):
            lo, hi = int(ends[i]), int(ends[j])
            if any(a <= hi and lo <= b for a, b in spans) or any(
                a <= hi and lo <= b for a, b in data.ignore.get(m, [])
            ):
                continue
            cause = _cause(data, m, lo, hi)
            causes[cause] = causes.get(cause, 0) + 1
        out.append(Unit(data.seed, counts, ends.shape[0] * INTERVAL_S / 86400, by_kind, causes))
    return out


def unit_metric(sample: Sequence[Unit]) -> dict[str, Any]:
    total = sum((u.counts for u in sample), EventCounts())
    days = sum(u.miner_days for u in sample)
    scores = total.scores()
    return {
        "event_f1": scores["event_f1"],
        "event_precision": scores["event_precision"],
        "event_recall": scores["event_recall"],
        "false_per_1000_miner_days": 1000.0 * total.false_alarms / max(days, 1e-9),
        "false_alarms": total.false_alarms,
        "episodes": total.episodes,
        "detected": total.detected,
        "miner_days": days,
    }


def site_metric(data: SeedData, decided: Decided) -> tuple[int, int, int, int]:
    """(found matched, found, true matched, true) in the test period."""
    tol = int(S.SITE_EVENT_TOLERANCE_HOURS * 3600)
    truth = [(site, span) for site, _, span, _ in data.site_truth if span[1] >= data.cutoff]
    found = [e for e in decided.site_events if e.end >= data.cutoff]

    def match(site: str, lo: int, hi: int, other: str, span: Span) -> bool:
        return site == other and lo - tol <= span[1] and span[0] <= hi + tol

    found_ok = sum(any(match(e.site, e.start, e.end, s, sp) for s, sp in truth) for e in found)
    truth_ok = sum(any(match(e.site, e.start, e.end, s, sp) for e in found) for s, sp in truth)
    return found_ok, len(found), truth_ok, len(truth)


DECISIONS: dict[str, Callable[[SeedData], Decided]] = {
    "new decision (served)": new_decision,
    "new, without site events": lambda d: new_decision(d, sites=False),
    "fleet-prior z, k of n, context suppressed": fixed_z_decision,
    "p99 threshold + context suppressed": lambda d: served_decision(d, True),
    "p99 threshold (previous served rule)": served_decision,
}


def evaluate(datas: Sequence[SeedData]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, decide in DECISIONS.items():
        by_seed: dict[int, list[Unit]] = {}
        site = [0, 0, 0, 0]
        for data in datas:
            decided = decide(data)
            by_seed[data.seed] = units(data, decided)
            for i, v in enumerate(site_metric(data, decided)):
                site[i] += v
        every = [u for us in by_seed.values() for u in us]
        kinds: dict[str, list[int]] = {}
        causes: dict[str, int] = {}
        for u in every:
            for k, (a, b) in u.by_kind.items():
                kinds.setdefault(k, [0, 0])
                kinds[k][0] += a
                kinds[k][1] += b
            for c, n in u.false_by_cause.items():
                causes[c] = causes.get(c, 0) + n
        results[name] = {
            "pooled": unit_metric(every),
            "interval": bootstrap(by_seed, unit_metric),
            "per_fleet": {s: unit_metric(us) for s, us in by_seed.items()},
            "site": site,
            "kinds": kinds,
            "causes": causes,
        }
    return results


# ---- report ------------------------------------------------------------------------------------------


def _f(v: float, d: int = 3) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.{d}f}"


def report(datas: Sequence[SeedData], results: dict[str, Any], command: str, seconds: float) -> str:
    seeds = [d.seed for d in datas]
    lines = [
        "# Anomaly decision quality (held-out fleets, every confounder on)",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {seconds / 60:.1f} min on "
        f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}  ",
        f"Fleets: seeds {', '.join(map(str, seeds))} (tuning used seeds {', '.join(map(str, S.TUNING_SEEDS))} only), "  # noqa: E501
        f"{S.MINERS} miners x {S.DAYS:g} days each, sites of 20; autoencoder {S.AUTOENCODER_EPOCHS} epochs on "  # noqa: E501
        f"{S.TRAIN_MINER_FRACTION:.0%} of the miners over the first {S.TRAIN_TIME_FRACTION:.0%} of the time; "
        "every miner scored in the last 30 %.  ",
        f"Decision settings: `{DEFAULT_DECISION}`",
        "",
        "## Miner anomalies (event F1 without point adjustment) and false alarms",
        "",
        "| decision | event F1 pooled [95 %] | precision | recall | false alarms / 1,000 miner-days [95 %] | F1 per fleet |",  # noqa: E501
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        p, ci = r["pooled"], r["interval"]
        f1ci = ci.get("event_f1", (np.nan, np.nan))
        faci = ci.get("false_per_1000_miner_days", (np.nan, np.nan))
        per = ", ".join(_f(r["per_fleet"][s]["event_f1"]) for s in seeds)
        lines.append(
            f"| {name} | {_f(p['event_f1'])} [{_f(f1ci[0])}, {_f(f1ci[1])}] | {_f(p['event_precision'])} | "
            f"{_f(p['event_recall'])} ({p['detected']}/{p['episodes']}) | "
            f"{_f(p['false_per_1000_miner_days'], 1)} [{_f(faci[0], 1)}, {_f(faci[1], 1)}] ({p['false_alarms']} "  # noqa: E501
            f"in {p['miner_days']:.0f} miner-days) | {per} |"
        )
    lines += ["", "## Site events", "", "| decision | precision | recall |", "|---|---|---|"]
    for name, r in results.items():
        fo, fn, to, tn = r["site"]
        if fn or name.startswith("new decision"):
            lines.append(
                f"| {name} | {_f(fo / fn if fn else np.nan)} ({fo}/{fn}) | {_f(to / tn if tn else np.nan)} ({to}/{tn}) |"  # noqa: E501
            )
        else:
            lines.append(f"| {name} | none reported | 0/{tn} |")
    names = list(results)
    kinds = sorted({k for r in results.values() for k in r["kinds"]})
    lines += [
        "",
        "## Recall by fault kind",
        "",
        "| kind | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for k in kinds:
        cells = []
        for n in names:
            a, b = results[n]["kinds"].get(k, (0, 0))
            cells.append(f"{a}/{b}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    causes = sorted({c for r in results.values() for c in r["causes"]})
    lines += [
        "",
        "## False alarm events by what they coincide with",
        "",
        "| cause | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for c in causes:
        lines.append(f"| {c} | " + " | ".join(str(results[n]["causes"].get(c, 0)) for n in names) + " |")
    lines += [
        "",
        "## Per fleet (served decision)",
        "",
        "| seed | event F1 | precision | recall | false alarms / 1,000 miner-days | site events found (matched) | true site events (found) | autoencoder epochs |",  # noqa: E501
        "|---|---|---|---|---|---|---|---|",
    ]
    served = results[names[0]]
    for d in datas:
        p = served["per_fleet"][d.seed]
        fo, fn, to, tn = site_metric(d, new_decision(d))
        lines.append(
            f"| {d.seed} | {_f(p['event_f1'])} | {_f(p['event_precision'])} | {_f(p['event_recall'])} | "
            f"{_f(p['false_per_1000_miner_days'], 1)} | {fn} ({fo}) | {tn} ({to}) | {d.ae_metrics.get('epochs_run', 0):.0f} |"  # noqa: E501
        )
    return "\n".join(lines) + "\n"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _prepare(seed: int, cache: Path | None) -> SeedData:
    return load_or_prepare(seed, cache, _log)


def _limit_threads(threads: int) -> None:
    """Each worker's torch threads: the cores shared out (6 workers with torch's default thread
    count each stalled for minutes in window scoring on a 16-core machine; 2 each took 80 s a fleet)."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(S.HELD_OUT_SEEDS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=None, help="keep each fleet's scored windows here")
    parser.add_argument("--out", type=Path, default=Path("bench/results/anomaly.md"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.jobs > 1:
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        with ProcessPoolExecutor(args.jobs, initializer=_limit_threads, initargs=(threads,)) as pool:
            datas = list(pool.map(_prepare, args.seeds, [args.cache] * len(args.seeds)))
    else:
        datas = [_prepare(s, args.cache) for s in args.seeds]
    results = evaluate(datas)
    command = "python -m bench.anomaly " + " ".join(sys.argv[1:] if argv is None else argv)
    text = report(datas, results, command, time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    from bench.anomaly import main as _main  # pickled fleets then name bench.anomaly's classes

    raise SystemExit(_main())
