"""Scoring: a miner's failure risk and its anomaly scores, from the active models.

The store gives the miner's recent series; the models prepare windows exactly as in training and
score them. Torch work runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from server.config import Settings
from server.domain import liveness, validation
from server.domain.access import MinerAccess
from server.domain.active_models import ActiveModels, ServingModel
from server.domain.anomaly_decision import (
    DEFAULT_DECISION,
    SHORT_GAP_S,
    DecisionSettings,
    MinerDecision,
    MinerInput,
    Prior,
    context_reasons,
    decide_site,
    restarts,
    window_temperature,
)
from server.domain.batcher import BatchFn, MicroBatcher
from server.domain.feature_cache import FeatureCache
from server.domain.scores import LatestScores
from server.domain.site_events import SiteEvent, SiteEvents, kind_of, utc
from server.errors import InsufficientHistory, InvalidArgument, ModelNotTrained, next_step
from server.models.explain import RiskFactor
from server.models.features import history_rows
from server.models.inference import AnomalyScorer, FailureRiskPredictor, WindowBatch
from server.records import (
    FEATURE_COLUMNS,
    FailureMode,
    Miner,
    MinerScore,
    MinerSeries,
    MinerStatus,
    RiskLevel,
)
from server.store import Store

MAX_DETECT_RANGE = timedelta(days=7)
log = logging.getLogger(__name__)

DEFAULT_DETECT_RANGE = timedelta(hours=24)
FLEET_DECISION_RANGE = timedelta(hours=6)
"""Windows the fleet path decides before its latest one (k of n and hysteresis look back)."""
FLEET_NORM_TTL_S = 600.0
FLEET_NORM_WINDOW = timedelta(hours=6)
MAX_SITE_PEERS = 40
"""DetectAnomalies scores at most this many other miners of the site (the site's same-time behaviour)."""


@dataclass(frozen=True, slots=True)
class Factor:
    feature: str
    importance: float
    recent_value: float
    fleet_norm: float
    unit: str


@dataclass(frozen=True, slots=True)
class Prediction:
    miner_id: str
    risk_score: float
    risk_level: RiskLevel
    features_used: tuple[str, ...]
    model_version: str
    window_start: datetime
    window_end: datetime
    window_samples: int
    horizon_hours: int
    factors: tuple[Factor, ...]
    likely_failure_mode: FailureMode


@dataclass(frozen=True, slots=True)
class WindowScore:
    window_end: datetime
    score: float
    is_anomaly: bool
    confidence: float
    top_features: tuple[str, ...]
    decision_score: float = 0.0
    window_threshold: float = 0.0
    deviates: bool = False
    suppression: int = 0


@dataclass(frozen=True, slots=True)
class Detection:
    miner_id: str
    threshold: float
    features_analyzed: tuple[str, ...]
    model_version: str
    windows: tuple[WindowScore, ...]
    decision_threshold: float = 0.0
    site: str = ""
    site_events: tuple[SiteEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class FleetScores:
    scores: tuple[MinerScore, ...]
    miners_scored: int
    miners_skipped: int
    elapsed_ms: float
    statuses: dict[str, MinerStatus] = field(default_factory=dict)
    """miner_id -> its state (live, down, stale, recovering) for each score; see liveness.py."""


@dataclass(frozen=True, slots=True)
class _GroupDecision:
    """The anomaly decision of a group of miners of one site (see Scoring._decide_group)."""

    items: dict[str, MinerInput]
    batches: dict[str, tuple[WindowBatch, np.ndarray]]  # miner -> (its windows, channel errors (N, C))
    decisions: dict[str, MinerDecision]
    events: list[SiteEvent]
    prior: Prior


def _history(model: FailureRiskPredictor | AnomalyScorer) -> int:
    """Rows to load for a model's latest window: the window plus the history its channels read."""
    return model.window.sequence_length + history_rows(model.window.share_reference_samples)


def _chunked(fn: BatchFn, x: np.ndarray, size: int = 4096) -> np.ndarray:
    return np.concatenate([fn(x[i : i + size]) for i in range(0, x.shape[0], size)])


def _utc(moment: np.datetime64) -> datetime:
    return datetime.fromtimestamp(int(moment.astype("datetime64[s]").astype(np.int64)), UTC)


class Scoring:
    """PredictFailureRisk, DetectAnomalies and fleet-wide scoring.

    The plain prediction path reads the miner's window from the feature cache (no database round
    trip) and joins a dynamic batch for the forward pass; explanations and anomaly ranges, which
    cost more anyway, compute directly.
    """

    def __init__(
        self,
        store: Store,
        models: ActiveModels,
        scores: LatestScores,
        settings: Settings,
        cache: FeatureCache | None = None,
        access: MinerAccess | None = None,
    ) -> None:
        self._store = store
        self._access = access or MinerAccess(store)
        self._models = models
        self._scores = scores
        self._settings = settings
        self._cache = cache
        self.decision: DecisionSettings = DEFAULT_DECISION
        self.site_events = SiteEvents()
        """The latest site events per site, as the anomaly decisions found them (for gauges)."""
        self._fleet_decided_at: dict[str, float] = {}  # site -> monotonic time of its last fleet decision
        self._fleet_flags: dict[str, tuple[int, bool]] = {}  # miner -> (window end s, is_anomaly)
        self._fleet_norms: dict[str, tuple[float, dict[str, float]]] = {}
        self._batchers: dict[str, MicroBatcher] = {}
        self._retiring: set[asyncio.Task[None]] = set()  # old batchers finishing their queue
        self.on_batch: Callable[[int], None] | None = None
        """Told each dynamic batch's size (the batch-size histogram)."""
        self._score_lock = threading.Lock()
        # (model version, miner_id) -> (series, miner, its latest WindowBatch or why there is none):
        # predictions and fleet scoring prepare a miner's window once per cache refresh, not per call.
        self._latest: dict[tuple[str, str], tuple[MinerSeries, Miner, WindowBatch | InsufficientHistory]] = {}

    def _batcher(self, version: str, fn: BatchFn) -> MicroBatcher:
        """One batcher per served model version (a new version gets a fresh one)."""
        batcher = self._batchers.get(version)
        if batcher is None:
            batcher = MicroBatcher(
                fn,
                max_batch=self._settings.batch_max_size,
                max_delay_s=self._settings.batch_max_delay_ms / 1000.0,
                name=f"batcher-{version}",
                on_batch=self._observe_batch,
            )
            for old in self._batchers.values():  # old versions' batchers finish their queue and end
                retiring = asyncio.get_running_loop().create_task(old.retire(), name=f"retire-{version}")
                self._retiring.add(retiring)
                retiring.add_done_callback(self._retiring.discard)
            self._batchers = {version: batcher}
        return batcher

    def _observe_batch(self, size: int) -> None:
        if self.on_batch is not None:  # set once metrics exist, possibly after a batcher was made
            self.on_batch(size)

    async def close(self) -> None:
        for batcher in list(self._batchers.values()):
            await batcher.close()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _recent(self, miner: Miner, history: int) -> MinerSeries:
        cached = self._cache.get(miner.miner_id) if self._cache is not None else None
        if cached is not None and len(cached[1]) >= history:
            return cached[1]
        return await asyncio.to_thread(self._store.recent_series, miner.miner_id, history)

    async def predict(self, miner_id: str, *, explain: bool) -> Prediction:
        miner = await self._cached_miner(miner_id) or await self._miner(miner_id)
        loaded = self._lstm()
        predictor: FailureRiskPredictor = loaded.model
        history = _history(predictor)
        series = await self._recent(miner, history)
        if explain:
            prediction = await asyncio.to_thread(self._predict, predictor, loaded, miner, series, True)
        else:
            batch = self._latest_batch(predictor, loaded.summary.version, miner, series)
            batcher = self._batcher(loaded.summary.version, predictor.predict)
            risk = float(np.clip(await batcher.submit(batch.x[-1]), 0.0, 1.0))
            prediction = self._prediction(predictor, loaded, miner, batch, risk, (), FailureMode.UNSPECIFIED)
        previous = self._scores.get(miner.miner_id)
        self._scores.put(
            MinerScore(
                miner_id=miner.miner_id,
                risk_score=prediction.risk_score,
                risk_level=prediction.risk_level,
                window_end=prediction.window_end,
                model_version=prediction.model_version,
                is_anomaly=previous.is_anomaly if previous else False,
                anomaly_score=previous.anomaly_score if previous else 0.0,
            )
        )
        return prediction

    def _predict(
        self,
        predictor: FailureRiskPredictor,
        loaded: ServingModel,
        miner: Miner,
        series: MinerSeries,
        explain: bool,
    ) -> Prediction:
        batch = predictor.prepare_latest(series, miner)
        risk = float(np.clip(predictor.predict(batch.x)[-1], 0.0, 1.0))
        factors: tuple[Factor, ...] = ()
        mode = FailureMode.UNSPECIFIED
        if explain:
            raw_factors = predictor.explain(batch)
            mode = FailureMode(int(predictor.likely_failure_mode(raw_factors)))
            norms = self._fleet_norm(miner.hardware_model)
            factors = tuple(self._factor(f, norms) for f in raw_factors)
        return self._prediction(predictor, loaded, miner, batch, risk, factors, mode)

    def _prediction(
        self,
        predictor: FailureRiskPredictor,
        loaded: ServingModel,
        miner: Miner,
        batch: WindowBatch,
        risk: float,
        factors: tuple[Factor, ...],
        mode: FailureMode,
    ) -> Prediction:
        return Prediction(
            miner_id=miner.miner_id,
            risk_score=risk,
            risk_level=RiskLevel.from_score(risk, self._settings.risk_cutoffs),
            features_used=tuple(predictor.feature_columns),
            model_version=loaded.summary.version,
            window_start=_utc(batch.window_starts[-1]),
            window_end=_utc(batch.window_ends[-1]),
            window_samples=int(batch.observed[-1]),
            horizon_hours=int(round(predictor.horizon_hours)),
            factors=factors,
            likely_failure_mode=mode,
        )

    @staticmethod
    def _factor(factor: RiskFactor, norms: dict[str, float]) -> Factor:
        recent = factor.recent_value
        return Factor(
            feature=factor.feature,
            importance=float(factor.importance),
            recent_value=float(recent) if math.isfinite(recent) else 0.0,
            fleet_norm=norms.get(factor.feature, 0.0),
            unit=factor.unit,
        )

    def _fleet_norm(self, hardware_model: str) -> dict[str, float]:
        """Median of each feature over the last hours across miners of the same hardware model (cached)."""
        cached = self._fleet_norms.get(hardware_model)
        if cached is not None and time.monotonic() - cached[0] < FLEET_NORM_TTL_S:
            return cached[1]
        peers = [m.miner_id for m in self._store.list_miners() if m.hardware_model == hardware_model]
        counts = self._store.counts()
        end = counts.data_end or datetime.now(UTC)
        series = self._store.load_series(peers, start=end - FLEET_NORM_WINDOW, end=end + timedelta(seconds=1))
        stacked = [s.values for s in series.values() if len(s)]
        norms: dict[str, float] = {}
        if stacked:
            values = np.concatenate(stacked)  # (rows, features)
            # A feature no peer reported (all NaN) has no norm; nanmedian would warn on it.
            medians = np.full(values.shape[1], np.nan)
            seen = np.isfinite(values).any(axis=0)
            if seen.any():
                medians[seen] = np.nanmedian(values[:, seen], axis=0)
            norms = {
                name: float(v) for name, v in zip(FEATURE_COLUMNS, medians, strict=False) if math.isfinite(v)
            }
        self._fleet_norms[hardware_model] = (time.monotonic(), norms)
        return norms

    async def detect(self, miner_id: str, *, start: datetime | None, end: datetime | None) -> Detection:
        miner = await self._miner(miner_id)
        loaded = self._autoencoder()
        scorer: AnomalyScorer = loaded.model
        if start is not None and end is not None and end <= start:
            raise InvalidArgument.for_field("end", "must be after start")
        if end is None:
            counts = await asyncio.to_thread(self._store.miner_stats)
            end = counts.get(miner.miner_id, (0, None))[1] or datetime.now(UTC)
        if start is None:
            start = end - DEFAULT_DETECT_RANGE
        if end - start > MAX_DETECT_RANGE:
            raise InvalidArgument.for_field("start", "the range may span at most 7 days; narrow start..end")
        detection = await asyncio.to_thread(self._detect, scorer, loaded, miner, start, end)
        if detection.windows:
            last = detection.windows[-1]
            previous = self._scores.get(miner.miner_id)
            if previous is not None:
                self._scores.put(
                    MinerScore(
                        miner_id=previous.miner_id,
                        risk_score=previous.risk_score,
                        risk_level=previous.risk_level,
                        window_end=previous.window_end,
                        model_version=previous.model_version,
                        is_anomaly=last.is_anomaly,
                        anomaly_score=last.score,
                    )
                )
        return detection

    def _site_peers(self, miner: Miner) -> list[Miner]:
        """The miner and up to MAX_SITE_PEERS others of its site (by id), the miner first."""
        if not miner.site:
            return [miner]
        others = sorted(
            (m for m in self._store.list_miners() if m.site == miner.site and m.miner_id != miner.miner_id),
            key=lambda m: m.miner_id,
        )
        return [miner, *others[:MAX_SITE_PEERS]]

    def _decision_input(
        self,
        scorer: AnomalyScorer,
        miner: Miner,
        series: MinerSeries,
        baseline_start: datetime,
        start: datetime,
        end: datetime,
    ) -> tuple[MinerInput, WindowBatch, np.ndarray]:
        """One miner's windows from baseline_start to end (the baseline part on the baseline grid),
        their channel errors (N, C) and the context the store knows."""
        cfg, interval = self.decision, self._settings.sample_interval_s
        batch = scorer.prepare(series, miner, start=baseline_start, end=end)
        ends = batch.window_ends.astype(np.int64)
        keep = (ends >= int(start.timestamp()) - SHORT_GAP_S) | (  # k of n looks back a little
            (ends // interval) % cfg.baseline_stride == 0
        )
        batch = batch.select(keep)
        ends = ends[keep]
        channel_errors = scorer.channel_errors(batch.x) if batch.x.shape[0] else np.zeros((0, 1))
        errors = channel_errors.mean(axis=1) if batch.x.shape[0] else np.zeros(0)
        planned = [
            (int(p.start.timestamp()), int(p.end.timestamp()))
            for p in self._store.list_planned_states(miner.miner_id)
        ]
        downtime = [
            (int(f.occurred_at.timestamp()), int((f.repaired_at or datetime.now(UTC)).timestamp()))
            for f in self._store.list_failures(miner.miner_id, limit=10_000)
        ]
        grid = series.timestamps.astype("datetime64[s]").astype(np.int64)
        restart_times = restarts(
            grid,
            series.values[:, 0],
            series.observed,
            miner.nominal_hashrate_ths or 1.0,
            cfg.restart_idle_samples,
        )
        context = context_reasons(ends, planned, downtime, restart_times, cfg)
        last_hour = batch.raw[:, -12:, :]  # (N, 12, 11) raw features of each window's last hour
        temperature = window_temperature(last_hour[:, :, FEATURE_COLUMNS.index("temperature")])
        hashrate = window_temperature(
            last_hour[:, :, FEATURE_COLUMNS.index("hashrate")] / max(miner.nominal_hashrate_ths or 1.0, 1e-9)
        )
        rejection = window_temperature(last_hour[:, :, FEATURE_COLUMNS.index("rejection_rate")])
        item = MinerInput(ends, errors, context, temperature, hashrate, rejection, restart_times)
        return item, batch, channel_errors

    def _decide_group(
        self,
        scorer: AnomalyScorer,
        site: str,
        peers: list[Miner],
        start: datetime,
        end: datetime,
        required: str = "",
    ) -> _GroupDecision:
        """Scores a group of miners of one site from the start of the baseline and decides every
        window together (the site's same-time behaviour, site events); updates the site's open events
        when the range reaches the newest windows. `required` (a miner id) must have a window, else
        INSUFFICIENT_HISTORY; other miners without one are left out. Blocking."""
        cfg, interval = self.decision, self._settings.sample_interval_s
        baseline_start = start - timedelta(hours=cfg.baseline_hours)
        history = timedelta(seconds=_history(scorer) * interval)
        series = self._store.load_series(
            [m.miner_id for m in peers], baseline_start - history, end + timedelta(seconds=1)
        )
        items: dict[str, MinerInput] = {}
        batches: dict[str, tuple[WindowBatch, np.ndarray]] = {}
        for peer in peers:
            one = series.get(peer.miner_id)
            if one is None or len(one) < scorer.window.sequence_length:
                if peer.miner_id == required:
                    have = int(np.sum(one.observed)) if one is not None else 0
                    raise InsufficientHistory(required, have, scorer.window.sequence_length)
                continue
            item, batch, channel_errors = self._decision_input(scorer, peer, one, baseline_start, start, end)
            items[peer.miner_id] = item
            batches[peer.miner_id] = (batch, channel_errors)
        prior = Prior.from_errors(scorer.val_errors, cfg.scale_floor)
        if not items:
            return _GroupDecision(items, batches, {}, [], prior)
        decisions, spans = decide_site(site or peers[0].miner_id, items, prior, cfg, interval)
        last_scored = max((int(i.ends[-1]) for i in items.values() if i.ends.size), default=0)
        events = []
        for span in spans:
            tops = []
            for peer_id in span.miner_ids:
                batch, channel_errors = batches[peer_id]
                ends = items[peer_id].ends
                inside = np.flatnonzero(
                    (ends >= span.start) & (ends <= span.end) & decisions[peer_id].deviates
                )
                if inside.size:
                    tops += scorer.top_features(channel_errors[inside])
            events.append(
                SiteEvent(
                    site=site,
                    kind=span.kind or kind_of(tops),
                    start=utc(span.start),
                    end=utc(span.end),
                    open=span.end >= last_scored,
                    miners_affected=span.peak_miners,
                    miners_reporting=span.reporting,
                    miner_ids=span.miner_ids,
                )
            )
        if site and end >= utc(last_scored) - timedelta(seconds=interval):
            self.site_events.update(site, [e for e in events if e.end >= start])
        return _GroupDecision(items, batches, decisions, events, prior)

    def decide_latest(self, scores: list[MinerScore]) -> list[MinerScore]:
        """The fleet path's anomaly flags under the decision DetectAnomalies serves, not a fixed
        threshold: each scored miner's site is decided in groups of up to MAX_SITE_PEERS + 1 miners over
        the last FLEET_DECISION_RANGE, and a score's is_anomaly becomes its latest window's decision.
        A site decided less than `anomaly_fleet_decision_interval_s` ago reuses that decision (the
        flag may lag a new window by that long). Updates the latest scores; returns the new scores.
        Blocking."""
        loaded = self._models.autoencoder
        if loaded is None or not scores:
            return scores
        scorer: AnomalyScorer = loaded.model
        interval = self._settings.sample_interval_s
        by_site: dict[str, list[Miner]] = {}
        for m in self._store.list_miners():
            by_site.setdefault(m.site or m.miner_id, []).append(m)
        site_of = {m.miner_id: key for key, members in by_site.items() for m in members}
        wanted = {site_of[s.miner_id] for s in scores if s.miner_id in site_of}
        now = time.monotonic()
        for key in sorted(wanted):
            last = self._fleet_decided_at.get(key)
            if last is not None and now - last < self._settings.anomaly_fleet_decision_interval_s:
                continue
            self._fleet_decided_at[key] = now
            members = sorted(by_site[key], key=lambda m: m.miner_id)
            site = members[0].site
            for offset in range(0, len(members), MAX_SITE_PEERS + 1):
                group = members[offset : offset + MAX_SITE_PEERS + 1]
                ids = {m.miner_id for m in group}
                # the group's newest scored window: this round's, else the latest known
                known = [p for i in ids if (p := self._scores.get(i)) is not None]
                ends = [s.window_end for s in (*scores, *known) if s.miner_id in ids and s.window_end]
                if not ends:
                    continue
                newest = max(e for e in ends if e is not None)
                end = newest + timedelta(seconds=1)
                decided = self._decide_group(scorer, site, group, end - FLEET_DECISION_RANGE, end)
                for miner_id, decision in decided.decisions.items():
                    if decision.ends.size:
                        self._fleet_flags[miner_id] = (int(decision.ends[-1]), bool(decision.is_anomaly[-1]))
        decided_scores = []
        for score in scores:
            flag = self._fleet_flags.get(score.miner_id)
            window_end = int(score.window_end.timestamp()) if score.window_end else 0
            # the decision of the score's own window, or of the one before it within a sample interval
            is_anomaly = flag is not None and flag[1] and window_end - flag[0] <= interval
            decided_score = replace(score, is_anomaly=is_anomaly)
            self._scores.put(decided_score)
            decided_scores.append(decided_score)
        return decided_scores

    def _detect(
        self,
        scorer: AnomalyScorer,
        loaded: ServingModel,
        miner: Miner,
        start: datetime,
        end: datetime,
    ) -> Detection:
        """Scores the miner and its site peers from the start of the baseline, decides every window
        (server/domain/anomaly_decision.py) and returns the miner's windows in [start, end]."""
        cfg = self.decision
        group = self._decide_group(scorer, miner.site, self._site_peers(miner), start, end, miner.miner_id)
        items, batches, decisions, events, prior = (
            group.items,
            group.batches,
            group.decisions,
            group.events,
            group.prior,
        )
        mine = decisions[miner.miner_id]
        batch, channel_errors = batches[miner.miner_id]
        shown = np.flatnonzero(mine.ends >= int(start.timestamp()))
        scores = items[miner.miner_id].errors
        confidence = scorer.confidence(scores[shown]) if shown.size else np.zeros(0)
        top = scorer.top_features(channel_errors[shown]) if shown.size else []
        windows = tuple(
            WindowScore(
                window_end=utc(int(mine.ends[i])),
                score=float(scores[i]),
                is_anomaly=bool(mine.is_anomaly[i]),
                confidence=float(confidence[j]),
                top_features=tuple(top[j]) if mine.deviates[i] else (),
                decision_score=float(mine.score[i]),
                window_threshold=float(mine.threshold[i]),
                deviates=bool(mine.deviates[i]),
                suppression=int(mine.suppression[i]),
            )
            for j, i in enumerate(shown)
        )
        return Detection(
            miner_id=miner.miner_id,
            threshold=windows[-1].window_threshold
            if windows
            else float(np.exp(prior.median + cfg.z_threshold * prior.scale)),
            features_analyzed=tuple(scorer.feature_columns),
            model_version=loaded.summary.version,
            windows=windows,
            decision_threshold=cfg.z_threshold,
            site=miner.site,
            site_events=tuple(e for e in events if e.end >= start),
        )

    async def visible_miner_ids(self) -> frozenset[str] | None:
        """The miners the caller may see, or None when its token is not scoped (streams filter by it)."""
        return await self._access.visible_ids()

    # -- fleet-wide scoring ----------------------------------------------------------------------------

    async def score_fleet(
        self, *, miner_ids: list[str], min_risk_level: RiskLevel, top_k: int, hardware_model: str
    ) -> FleetScores:
        if not 0 <= top_k <= 100_000:
            raise InvalidArgument.for_field("top_k", "must be between 0 and 100000 (0 = 100)")
        for index, miner_id in enumerate(miner_ids):
            validation.miner_id(miner_id, f"miner_ids[{index}]")
        self._lstm()
        started = time.perf_counter()
        if self._cache is not None and len(self._cache):
            entries = self._cache.items()
        else:
            entries = await asyncio.to_thread(self._entries_from_store)
        wanted = set(miner_ids)
        entries = [
            (miner, series)
            for miner, series in entries
            if (not wanted or miner.miner_id in wanted)
            and (not hardware_model or miner.hardware_model == hardware_model)
            and self._access.allows(miner)
        ]
        scores, skipped = await asyncio.to_thread(self.score_entries, entries)
        selected = [s for s in scores if not min_risk_level or s.risk_level >= min_risk_level]
        # Live miners first by risk; a down, stale or recovering one keeps its last risk, ranked after.
        # The scores' window ends stand in for each miner's newest sample: no scan of every sample.
        seen = {s.miner_id: s.window_end for s in scores if s.window_end is not None}
        conditions = await asyncio.to_thread(self._store.miner_conditions, seen)
        statuses = liveness.statuses(conditions, self._settings)
        selected.sort(
            key=lambda s: (
                liveness.RANK[statuses.get(s.miner_id, liveness.LIVE).state],
                -s.risk_score,
                s.miner_id,
            )
        )
        top = tuple(selected[: top_k or 100])
        return FleetScores(
            scores=top,
            miners_scored=len(scores),
            miners_skipped=skipped,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
            statuses={s.miner_id: statuses.get(s.miner_id, liveness.LIVE) for s in top},
        )

    def _entries_from_store(self) -> list[tuple[Miner, MinerSeries]]:
        loaded = self._lstm()
        predictor: FailureRiskPredictor = loaded.model
        history = _history(predictor)
        miners = {m.miner_id: m for m in self._store.list_miners()}
        return [(miners[i], self._store.recent_series(i, history)) for i in miners]

    def score_entries(self, entries: list[tuple[Miner, MinerSeries]]) -> tuple[list[MinerScore], int]:
        """Scores each miner's latest window with both models in large batches; updates the latest
        scores. Returns the scores and how many miners had too little history. Blocking.

        Calls run one at a time: a fleet scoring that arrives during the start-up warm-up (or a
        re-scoring round) waits for it and then reuses the windows it prepared, instead of preparing
        them all a second time on the same core."""
        with self._score_lock:
            scores, skipped = self._score_entries(entries)
            try:
                return self.decide_latest(scores), skipped
            except Exception:  # noqa: BLE001 - the risk scores stand without the anomaly decision
                log.exception("deciding anomalies for %d miner(s) failed", len(scores))
                return scores, skipped

    def _score_entries(self, entries: list[tuple[Miner, MinerSeries]]) -> tuple[list[MinerScore], int]:
        lstm = self._lstm()
        predictor: FailureRiskPredictor = lstm.model
        autoencoder = self._models.autoencoder
        rows, kept, skipped = [], [], 0
        for miner, series in entries:
            prepared = self._prepared(predictor, lstm.summary.version, miner, series)
            if prepared is None:
                skipped += 1
                continue
            rows.append(prepared[0])
            kept.append((miner, series, prepared[1]))
        if not kept:
            return [], skipped
        risks = np.clip(_chunked(predictor.predict, np.stack(rows)), 0.0, 1.0)
        anomaly = np.zeros(len(kept))  # reconstruction errors; the flags come from decide_latest
        if autoencoder is not None:
            scorer: AnomalyScorer = autoencoder.model
            ae_rows, ae_index = [], []
            for i, (miner, series, _) in enumerate(kept):
                prepared = self._prepared(scorer, autoencoder.summary.version, miner, series)
                if prepared is not None:
                    ae_rows.append(prepared[0])
                    ae_index.append(i)
            if ae_rows:
                errors = _chunked(scorer.score, np.stack(ae_rows))
                anomaly[ae_index] = errors
        scores = []
        for i, (miner, _, window_end) in enumerate(kept):
            score = MinerScore(
                miner_id=miner.miner_id,
                risk_score=float(risks[i]),
                risk_level=RiskLevel.from_score(float(risks[i]), self._settings.risk_cutoffs),
                window_end=window_end,
                model_version=lstm.summary.version,
                is_anomaly=False,
                anomaly_score=float(anomaly[i]),
            )
            self._scores.put(score)
            scores.append(score)
        return scores, skipped

    def _latest_batch(
        self, model: FailureRiskPredictor | AnomalyScorer, version: str, miner: Miner, series: MinerSeries
    ) -> WindowBatch:
        """The model's latest prepared window for a miner, memoised per (version, miner) while the series
        object (a new one on every cache refresh) and the miner record are unchanged. Too little history
        is memoised too, and raised again on every hit."""
        key = (version, miner.miner_id)
        memo = self._latest.get(key)
        if memo is None or memo[0] is not series or memo[1] != miner:
            try:
                prepared: WindowBatch | InsufficientHistory = (
                    model.prepare_latest(series, miner)
                    if isinstance(model, FailureRiskPredictor)
                    else model.prepare(series, miner, latest_only=True)
                )
            except InsufficientHistory as exc:
                prepared = exc
            memo = (series, miner, prepared)
            self._latest[key] = memo
        if isinstance(memo[2], InsufficientHistory):
            raise memo[2]
        return memo[2]

    def _prepared(
        self, model: FailureRiskPredictor | AnomalyScorer, version: str, miner: Miner, series: MinerSeries
    ) -> tuple[np.ndarray, datetime] | None:
        """The miner's latest normalised window and its end time, or None with too little history."""
        try:
            batch = self._latest_batch(model, version, miner, series)
        except InsufficientHistory:
            return None
        return batch.x[-1], _utc(batch.window_ends[-1])

    async def _cached_miner(self, miner_id: str) -> Miner | None:
        """The miner's record from the feature cache (no database round trip), when the id is one the
        cache holds and the caller may see it; None sends the caller to the store (aliases, scope
        errors, unknown miners). The cache re-reads a miner's record whenever it changes."""
        cached = self._cache.get(miner_id) if self._cache is not None else None
        if cached is None or not self._access.allows(cached[0]):
            return None
        validation.miner_id(miner_id)
        return cached[0]

    async def _miner(self, miner_id: str) -> Miner:
        return await self._access.resolve(miner_id)  # out of the caller's scope reads as absent

    def _lstm(self) -> ServingModel:
        loaded = self._models.lstm
        if loaded is None:
            raise ModelNotTrained(
                f"no trained LSTM model: {next_step('TrainingService.Train', model_kind='lstm')}"
            )
        return loaded

    def _autoencoder(self) -> ServingModel:
        loaded = self._models.autoencoder
        if loaded is None:
            train = next_step("TrainingService.Train", model_kind="autoencoder")
            raise ModelNotTrained(f"no trained anomaly autoencoder: {train}")
        return loaded
