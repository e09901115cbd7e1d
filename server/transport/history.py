"""HistoryService servicer: GetMinerTelemetry, GetMinerRiskHistory, ListMinerEvents."""

from __future__ import annotations

import math

import grpc
import numpy as np
from google.protobuf import struct_pb2
from mining.analytics.v1alpha1 import history_pb2, history_pb2_grpc

from server.domain.history import History, Series, TimelineEvent
from server.transport.convert import from_timestamp, to_timestamp

_EVENT_KINDS = {
    "failure": history_pb2.MINER_EVENT_KIND_FAILURE,
    "outage": history_pb2.MINER_EVENT_KIND_OUTAGE,
    "planned_state": history_pb2.MINER_EVENT_KIND_PLANNED_STATE,
    "feedback": history_pb2.MINER_EVENT_KIND_FEEDBACK,
}


def _values(column: np.ndarray) -> struct_pb2.ListValue:
    """A ListValue of numbers with null where the value is missing (NaN or infinite)."""
    values = struct_pb2.ListValue()
    values.extend([v if math.isfinite(v) else None for v in column.tolist()])
    return values


def _series(series: Series) -> history_pb2.TelemetrySeries:
    return history_pb2.TelemetrySeries(
        name=series.name,
        kind=series.kind,
        unit=series.unit,
        min=_values(series.minimum),
        mean=_values(series.mean),
        max=_values(series.maximum),
    )


def _event(event: TimelineEvent) -> history_pb2.MinerEvent:
    return history_pb2.MinerEvent(
        kind=_EVENT_KINDS[event.kind],
        start=to_timestamp(event.start),
        end=to_timestamp(event.end),
        id=event.event_id,
        label=event.label,
        note=event.note,
    )


class HistoryServicer(history_pb2_grpc.HistoryServiceServicer):
    def __init__(self, history: History) -> None:
        self._history = history

    async def GetMinerTelemetry(
        self, request: history_pb2.GetMinerTelemetryRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.GetMinerTelemetryResponse:
        telemetry = await self._history.telemetry(
            request.miner_id,
            start=from_timestamp(request, "start"),
            end=from_timestamp(request, "end"),
            step_s=request.step,
        )
        response = history_pb2.GetMinerTelemetryResponse(
            miner_id=telemetry.miner_id,
            start=to_timestamp(telemetry.start),
            end=to_timestamp(telemetry.end),
            step=telemetry.step_s,
            samples=telemetry.samples.tolist(),
            planned=telemetry.planned.tolist(),
            source=telemetry.source,
            series=[_series(s) for s in telemetry.series],
            planned_states=[
                history_pb2.PlannedSpan(
                    kind=int(s.kind), start=to_timestamp(s.start), end=to_timestamp(s.end)
                )
                for s in telemetry.planned_states
            ],
        )
        for second in telemetry.step_starts.tolist():
            response.times.add(seconds=second)
        return response

    async def GetMinerRiskHistory(
        self, request: history_pb2.GetMinerRiskHistoryRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.GetMinerRiskHistoryResponse:
        miner_id, points = await self._history.risk_history(
            request.miner_id, start=from_timestamp(request, "start"), end=from_timestamp(request, "end")
        )
        return history_pb2.GetMinerRiskHistoryResponse(
            miner_id=miner_id,
            points=[
                history_pb2.RiskPoint(
                    time=to_timestamp(p.window_end),
                    model_version=p.model_version,
                    risk_score=p.risk_score,
                    risk_level=int(p.risk_level),
                    is_anomaly=p.is_anomaly,
                    anomaly_score=p.anomaly_score,
                    anomaly_model_version=p.anomaly_model_version,
                    scored_at=to_timestamp(p.scored_at),
                )
                for p in points
            ],
        )

    async def ListMinerEvents(
        self, request: history_pb2.ListMinerEventsRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.ListMinerEventsResponse:
        miner_id, events = await self._history.events(
            request.miner_id, start=from_timestamp(request, "start"), end=from_timestamp(request, "end")
        )
        return history_pb2.ListMinerEventsResponse(miner_id=miner_id, events=[_event(e) for e in events])
