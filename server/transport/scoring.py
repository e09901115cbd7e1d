"""ScoringService servicer: PredictFailureRisk, DetectAnomalies, ScoreFleet, SubscribeScores."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.rpc import code_pb2, status_pb2
from mining.analytics.v1alpha1 import common_pb2, scoring_pb2, scoring_pb2_grpc

from server import auth
from server.domain import subscriptions, validation
from server.domain.scoring import Scoring
from server.domain.subscriptions import ScoreFilter, ScoreHub
from server.errors import InvalidArgument
from server.ops.limits import SubscriptionSlots
from server.records import MinerScore, MinerStatus
from server.transport.convert import from_timestamp, risk_level, to_timestamp


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, scoring: Scoring, hub: ScoreHub, slots: SubscriptionSlots) -> None:
        self._scoring = scoring
        self._hub = hub
        self._slots = slots

    async def ScoreFleet(
        self, request: scoring_pb2.ScoreFleetRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.ScoreFleetResponse:
        fleet = await self._scoring.score_fleet(
            miner_ids=list(request.miner_ids),
            min_risk_level=risk_level(request.min_risk_level),
            top_k=request.top_k,
            hardware_model=request.hardware_model,
        )
        return scoring_pb2.ScoreFleetResponse(
            scores=[with_status(score_to_proto(s), fleet.statuses.get(s.miner_id)) for s in fleet.scores],
            miners_scored=fleet.miners_scored,
            miners_skipped=fleet.miners_skipped,
            elapsed_ms=fleet.elapsed_ms,
        )

    async def SubscribeScores(
        self, request: scoring_pb2.SubscribeScoresRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[scoring_pb2.ScoreEvent]:
        # Validate before the first message: an error after it is invisible to HTTP/1.1 clients.
        for index, miner_id in enumerate(request.miner_ids):
            validation.miner_id(miner_id, f"miner_ids[{index}]")
        heartbeat = request.heartbeat_seconds or 15
        if not 1 <= heartbeat <= 3600:
            raise InvalidArgument.for_field("heartbeat_seconds", "must be between 1 and 3600 (0 = 15)")
        score_filter = ScoreFilter(
            allowed=await self._scoring.visible_miner_ids(),
            miner_ids=frozenset(request.miner_ids),
            min_risk_level=risk_level(request.min_risk_level),
            anomalies_only=request.anomalies_only,
        )
        events = self._hub.subscribe(
            score_filter, after_sequence=request.after_sequence, heartbeat_s=heartbeat
        )
        # Caps concurrent streams, in total and per token (RESOURCE_EXHAUSTED beyond either cap).
        with self._slots.hold(auth.current().name):
            # Headers now, not with the first event (up to heartbeat_seconds later): a REST client
            # behind Envoy sees its 200 at once.
            await context.send_initial_metadata(())
            async for event in events:
                yield event_to_proto(event)

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
                    decision_score=w.decision_score,
                    window_threshold=w.window_threshold,
                    deviates=w.deviates,
                    suppression=w.suppression,
                )
                for w in d.windows
            ],
            model_version=d.model_version,
            decision_scores=[w.decision_score for w in d.windows],
            decision_threshold=d.decision_threshold,
            site_events=[
                scoring_pb2.SiteEvent(
                    site=e.site,
                    kind=e.kind,
                    start=to_timestamp(e.start),
                    end=to_timestamp(e.end),
                    open=e.open,
                    miners_affected=e.miners_affected,
                    miners_reporting=e.miners_reporting,
                    miner_ids=e.miner_ids,
                )
                for e in d.site_events
            ],
            site=d.site,
        )


def score_to_proto(score: MinerScore) -> scoring_pb2.MinerScore:
    return scoring_pb2.MinerScore(
        miner_id=score.miner_id,
        risk_score=score.risk_score,
        risk_level=int(score.risk_level),
        is_anomaly=score.is_anomaly,
        anomaly_score=score.anomaly_score,
        window_end=to_timestamp(score.window_end),
        model_version=score.model_version,
    )


def with_status(score: scoring_pb2.MinerScore, status: MinerStatus | None) -> scoring_pb2.MinerScore:
    """The score with its miner's state (ScoreFleet)."""
    if status is not None:
        score.state = int(status.state)
        score.state_reason = status.reason
        since = to_timestamp(status.since)
        if since is not None:
            score.state_since.CopyFrom(since)
    return score


def event_to_proto(event: subscriptions.Event) -> scoring_pb2.ScoreEvent:
    if isinstance(event, subscriptions.Update):
        return scoring_pb2.ScoreEvent(sequence=event.sequence, update=score_to_proto(event.score))
    if isinstance(event, subscriptions.Heartbeat):
        return scoring_pb2.ScoreEvent(
            sequence=event.sequence, heartbeat=scoring_pb2.Heartbeat(time=to_timestamp(event.time))
        )
    if isinstance(event, subscriptions.Dropped):
        return scoring_pb2.ScoreEvent(
            sequence=event.sequence, dropped=scoring_pb2.Dropped(count=min(event.count, 2**31 - 1))
        )
    return scoring_pb2.ScoreEvent(
        sequence=event.sequence, error=status_pb2.Status(code=code_pb2.UNAVAILABLE, message=event.message)
    )
