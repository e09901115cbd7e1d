"""Scoring: a miner's failure risk and its anomaly scores, from the active models.

The store gives the miner's recent series; the models prepare windows exactly as in training and
score them. Torch work runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from server.config import Settings
from server.domain import validation
from server.domain.active_models import ActiveModels, Loaded
from server.domain.scores import LatestScores
from server.errors import InvalidArgument, MinerNotFound, ModelNotTrained
from server.models.explain import RiskFactor
from server.models.inference import AnomalyScorer, FailureRiskPredictor
from server.records import FEATURE_COLUMNS, FailureMode, Miner, MinerScore, RiskLevel
from server.store import Store

MAX_DETECT_RANGE = timedelta(days=7)
DEFAULT_DETECT_RANGE = timedelta(hours=24)
FLEET_NORM_TTL_S = 600.0
FLEET_NORM_WINDOW = timedelta(hours=6)


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


@dataclass(frozen=True, slots=True)
class Detection:
    miner_id: str
    threshold: float
    features_analyzed: tuple[str, ...]
    model_version: str
    windows: tuple[WindowScore, ...]


def _utc(moment: np.datetime64) -> datetime:
    return datetime.fromtimestamp(int(moment.astype("datetime64[s]").astype(np.int64)), UTC)


class Scoring:
    """PredictFailureRisk and DetectAnomalies."""

    def __init__(self, store: Store, models: ActiveModels, scores: LatestScores, settings: Settings) -> None:
        self._store = store
        self._models = models
        self._scores = scores
        self._settings = settings
        self._fleet_norms: dict[str, tuple[float, dict[str, float]]] = {}

    async def predict(self, miner_id: str, *, explain: bool) -> Prediction:
        miner = await self._miner(miner_id)
        loaded = self._lstm()
        predictor: FailureRiskPredictor = loaded.model
        history = predictor.window.sequence_length + predictor.window.share_reference_samples
        series = await asyncio.to_thread(self._store.recent_series, miner.miner_id, history)
        prediction = await asyncio.to_thread(self._predict, predictor, loaded, miner, series, explain)
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
        self, predictor: FailureRiskPredictor, loaded: Loaded, miner: Miner, series: object, explain: bool
    ) -> Prediction:
        batch = predictor.prepare_latest(series, miner)  # type: ignore[arg-type]
        risk = float(np.clip(predictor.predict(batch.x)[-1], 0.0, 1.0))
        factors: tuple[Factor, ...] = ()
        mode = FailureMode.UNSPECIFIED
        if explain:
            raw_factors = predictor.explain(batch)
            mode = FailureMode(int(predictor.likely_failure_mode(raw_factors)))
            norms = self._fleet_norm(miner.hardware_model)
            factors = tuple(self._factor(f, norms) for f in raw_factors)
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
            values = np.concatenate(stacked)
            with np.errstate(all="ignore"):
                medians = np.nanmedian(values, axis=0) if values.size else []
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
        rows_before = scorer.window.sequence_length + scorer.window.share_reference_samples
        history = timedelta(seconds=rows_before * self._settings.sample_interval_s)
        series = await asyncio.to_thread(
            self._store.load_series, [miner.miner_id], start - history, end + timedelta(seconds=1)
        )
        detection = await asyncio.to_thread(
            self._detect, scorer, loaded, miner, series[miner.miner_id], start, end
        )
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

    def _detect(
        self,
        scorer: AnomalyScorer,
        loaded: Loaded,
        miner: Miner,
        series: object,
        start: datetime,
        end: datetime,
    ) -> Detection:
        batch = scorer.prepare(series, miner, start=start, end=end)  # type: ignore[arg-type]
        channel_errors = scorer.channel_errors(batch.x) if batch.x.shape[0] else np.zeros((0, 1))
        scores = channel_errors.mean(axis=1) if batch.x.shape[0] else np.zeros(0)
        flags = scorer.is_anomaly(scores)
        confidence = scorer.confidence(scores)
        top = scorer.top_features(channel_errors) if batch.x.shape[0] else []
        windows = tuple(
            WindowScore(
                window_end=_utc(batch.window_ends[i]),
                score=float(scores[i]),
                is_anomaly=bool(flags[i]),
                confidence=float(confidence[i]),
                top_features=tuple(top[i]) if flags[i] else (),
            )
            for i in range(scores.shape[0])
        )
        return Detection(
            miner_id=miner.miner_id,
            threshold=scorer.threshold,
            features_analyzed=tuple(scorer.feature_columns),
            model_version=loaded.summary.version,
            windows=windows,
        )

    async def _miner(self, miner_id: str) -> Miner:
        validation.miner_id(miner_id)
        miner = await asyncio.to_thread(self._store.get_miner, miner_id)
        if miner is None:
            raise MinerNotFound(miner_id)
        return miner

    def _lstm(self) -> Loaded:
        loaded = self._models.lstm
        if loaded is None:
            raise ModelNotTrained("no trained LSTM model: POST /api/advanced/train/lstm")
        return loaded

    def _autoencoder(self) -> Loaded:
        loaded = self._models.autoencoder
        if loaded is None:
            raise ModelNotTrained("no trained anomaly autoencoder: POST /api/advanced/train/autoencoder")
        return loaded
