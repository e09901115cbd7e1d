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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from server.config import Settings
from server.domain import liveness, validation
from server.domain.access import MinerAccess
from server.domain.active_models import ActiveModels, ServingModel
from server.domain.batcher import BatchFn, VersionBatchers
from server.domain.feature_cache import FeatureCache
from server.domain.fleet_decisions import FleetDecisions
from server.domain.fleet_norms import FleetNorms
from server.domain.scores import LatestScores
from server.domain.site_decisions import SiteDecider
from server.domain.site_events import SiteEvent, utc
from server.domain.window_memo import WindowMemo, history_for
from server.errors import InsufficientHistory, InvalidArgument, ModelNotTrained, next_step
from server.models.explain import RiskFactor
from server.models.inference import AnomalyScorer, FailureRiskPredictor, WindowBatch
from server.records import (
    FailureMode,
    Miner,
    MinerScore,
    MinerSeries,
    MinerStatus,
    RiskLevel,
)
from server.store import FleetStore

MAX_DETECT_RANGE = timedelta(days=7)
log = logging.getLogger(__name__)

DEFAULT_DETECT_RANGE = timedelta(hours=24)


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
        store: FleetStore,
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
        self.decider = SiteDecider(store, settings)
        """Decides a site's miners together (DetectAnomalies and the fleet path)."""
        self.site_events = self.decider.site_events
        """The latest site events per site, as the anomaly decisions found them (for gauges)."""
        self.fleet_decisions = FleetDecisions(store, self.decider, scores, settings)
        self.norms = FleetNorms(store)
        self.batchers = VersionBatchers(
            max_batch=settings.batch_max_size, max_delay_s=settings.batch_max_delay_ms / 1000.0
        )
        self.memo = WindowMemo()
        """Each miner's latest prepared window per serving model version (once per cache refresh)."""
        self._score_lock = threading.Lock()

    @property
    def on_batch(self) -> Callable[[int], None] | None:
        """Told each dynamic batch's size (the batch-size histogram)."""
        return self.batchers.on_batch

    @on_batch.setter
    def on_batch(self, observe: Callable[[int], None] | None) -> None:
        self.batchers.on_batch = observe

    async def close(self) -> None:
        await self.batchers.close()

    async def _recent(self, miner: Miner, history: int) -> MinerSeries:
        """The miner's recent rows: the cache's, unless a batch stored since makes them stale (an
        acknowledged write is always reflected; the background refresh catches the cache up)."""
        cached = self._cache.get(miner.miner_id) if self._cache is not None else None
        if cached is not None and len(cached[1]) >= history and not self._cache_stale(miner.miner_id):
            return cached[1]
        return await asyncio.to_thread(self._store.recent_series, miner.miner_id, history)

    def _cache_stale(self, miner_id: str) -> bool:
        return self._cache is not None and self._cache.is_stale(miner_id)

    async def predict(self, miner_id: str, *, explain: bool) -> Prediction:
        miner = await self._cached_miner(miner_id) or await self._miner(miner_id)
        loaded = self._lstm()
        predictor: FailureRiskPredictor = loaded.model
        history = history_for(predictor)
        series = await self._recent(miner, history)
        if explain:
            prediction = await asyncio.to_thread(self._predict, predictor, loaded, miner, series, True)
        else:
            batch = self._latest_batch(predictor, loaded.summary.version, miner, series)
            batcher = self.batchers.get(loaded.summary.version, predictor.predict)
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
            norms = self.norms.for_model(miner.hardware_model)
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

    def decide_latest(self, scores: list[MinerScore]) -> list[MinerScore]:
        """The fleet path's anomaly flags under the decision DetectAnomalies serves (see
        server/domain/fleet_decisions.py). Updates the latest scores; returns the new scores. Blocking."""
        loaded = self._models.autoencoder
        if loaded is None or not scores:
            return scores
        return self.fleet_decisions.decide_latest(loaded.model, scores)

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
        cfg = self.decider.decision
        peers = self.decider.peers(miner)
        group = self.decider.decide_group(scorer, miner.site, peers, start, end, miner.miner_id)
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
            stale = self._cache.stale()
            if stale:  # batches acknowledged since the last refresh: one query reads them all
                await asyncio.to_thread(self._cache.refresh, stale)
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
        history = history_for(predictor)
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
        object (a new one on every cache refresh) and the miner record are unchanged (WindowMemo)."""
        self.memo.retain(self._serving_versions())
        if isinstance(model, FailureRiskPredictor):
            return self.memo.latest(version, miner, series, lambda: model.prepare_latest(series, miner))
        scorer: AnomalyScorer = model
        return self.memo.latest(
            version, miner, series, lambda: scorer.prepare(series, miner, latest_only=True)
        )

    def _serving_versions(self) -> list[str]:
        """The versions of the models serving now (the memo keeps only their windows)."""
        return [m.summary.version for m in (self._models.lstm, self._models.autoencoder) if m is not None]

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
