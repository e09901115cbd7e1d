"""ScoringService servicer: PredictFailureRisk, DetectAnomalies (ScoreFleet, SubscribeScores to come)."""

from __future__ import annotations

import grpc
from mining.analytics.v1alpha1 import common_pb2, scoring_pb2, scoring_pb2_grpc

from server.domain.scoring import Scoring
from server.transport.convert import from_timestamp, to_timestamp


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, scoring: Scoring) -> None:
        self._scoring = scoring

    async def PredictFailureRisk(
        self, request: scoring_pb2.PredictFailureRiskRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.PredictFailureRiskResponse:
        p = await self._scoring.predict(request.miner_id, explain=request.explain)
        return scoring_pb2.PredictFailureRiskResponse(
            miner_id=p.miner_id,
            risk_score=p.risk_score,
            risk_level=int(p.risk_level),
            features_used=p.features_used,
            model_type=common_pb2.LSTM,
            model_version=p.model_version,
            window_start=to_timestamp(p.window_start),
            window_end=to_timestamp(p.window_end),
            window_samples=p.window_samples,
            horizon_hours=p.horizon_hours,
            risk_factors=[
                scoring_pb2.RiskFactor(
                    feature=f.feature,
                    importance=f.importance,
                    recent_value=f.recent_value,
                    fleet_norm=f.fleet_norm,
                    unit=f.unit,
                )
                for f in p.factors
            ],
            likely_failure_mode=int(p.likely_failure_mode),
        )

    async def DetectAnomalies(
        self, request: scoring_pb2.DetectAnomaliesRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.DetectAnomaliesResponse:
        d = await self._scoring.detect(
            request.miner_id, start=from_timestamp(request, "start"), end=from_timestamp(request, "end")
        )
        return scoring_pb2.DetectAnomaliesResponse(
            miner_id=d.miner_id,
            is_anomaly=[w.is_anomaly for w in d.windows],
            anomaly_scores=[w.score for w in d.windows],
            threshold=d.threshold,
            features_analyzed=d.features_analyzed,
            windows=[
                scoring_pb2.AnomalyWindow(
                    window_end=to_timestamp(w.window_end),
                    score=w.score,
                    is_anomaly=w.is_anomaly,
                    confidence=w.confidence,
                    top_features=w.top_features,
                )
                for w in d.windows
            ],
            model_version=d.model_version,
        )
