"""TelemetryService servicer: WriteMetrics, IngestMetrics, RecordFailure, RecordRepair, ListFailures,
SetPlannedState, RecordFeedback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np
from mining.analytics.v1alpha1 import telemetry_pb2, telemetry_pb2_grpc

from server.domain.feedback import Feedback, FeedbackLog
from server.domain.ingest import COLUMN_COUNTERS, COLUMN_METRICS, ColumnInput, Ingest, SampleInput
from server.errors import InvalidArgument
from server.records import BoardReading, FailureEvent, PlannedState
from server.transport.convert import from_timestamp, optional, to_timestamp


def sample_inputs(request: telemetry_pb2.WriteMetricsRequest) -> list[SampleInput]:
    """Row samples, then column samples, as plain inputs."""
    inputs = [
        SampleInput(
            miner_id=s.miner_id,
            timestamp=from_timestamp(s, "timestamp"),
            hashrate_ths=optional(s, "hashrate_ths"),
            temperature_c=optional(s, "temperature_c"),
            fan_speed_rpm=optional(s, "fan_speed_rpm"),
            power_w=optional(s, "power_w"),
            accepted_shares=optional(s, "accepted_shares"),
            rejected_shares=optional(s, "rejected_shares"),
            boards=tuple(
                BoardReading(
                    index=b.index,
                    hashrate_ths=optional(b, "hashrate_ths"),
                    temperature_c=optional(b, "temperature_c"),
                    chip_temperature_c=optional(b, "chip_temperature_c"),
                )
                for b in s.boards
            ),
            fan_speeds_rpm=tuple(s.fan_speeds_rpm),
            hardware_model=s.hardware_model,
            serial=s.serial,
            mac=s.mac,
        )
        for s in request.samples
    ]
    if request.HasField("columns"):
        inputs.extend(_column_inputs(request.columns, offset=len(inputs)))
    return inputs


def _check_column_lengths(columns: telemetry_pb2.MetricColumns) -> int:
    """The number of samples; INVALID_ARGUMENT when a column's length differs from miner_id's."""
    n = len(columns.miner_id)
    for name in ("timestamp_ms", *COLUMN_METRICS, *COLUMN_COUNTERS):
        length = len(getattr(columns, name))
        if length not in (0, n) or (name == "timestamp_ms" and length != n):
            raise InvalidArgument.for_field(
                f"columns.{name}",
                f"has {length} values, miner_id has {n}; every column must have one value per sample",
            )
    return n


def column_input(columns: telemetry_pb2.MetricColumns) -> ColumnInput:
    """Column samples as numpy arrays, without a per-sample Python object (the fast path)."""
    n = _check_column_lengths(columns)

    def array(name: str, dtype: type) -> np.ndarray | None:
        values = getattr(columns, name)
        return np.fromiter(values, dtype=dtype, count=n) if len(values) else None

    return ColumnInput(
        miner_id=np.array(columns.miner_id, dtype=object),
        timestamp_ms=np.fromiter(columns.timestamp_ms, dtype=np.int64, count=n),
        metrics={name: array(name, np.float64) for name in COLUMN_METRICS},
        counters={name: array(name, np.int64) for name in COLUMN_COUNTERS},
    )


def _column_inputs(columns: telemetry_pb2.MetricColumns, offset: int) -> list[SampleInput]:
    from datetime import UTC, datetime

    n = _check_column_lengths(columns)

    def metric(name: str, i: int) -> float | None:
        values = getattr(columns, name)
        if not values:
            return None
        value = values[i]
        return None if value != value else value  # NaN marks a missing reading

    def counter(name: str, i: int) -> int | None:
        values = getattr(columns, name)
        return None if not values or values[i] == -1 else values[i]

    return [
        SampleInput(
            miner_id=columns.miner_id[i],
            timestamp=datetime.fromtimestamp(columns.timestamp_ms[i] / 1000, UTC),
            hashrate_ths=metric("hashrate_ths", i),
            temperature_c=metric("temperature_c", i),
            fan_speed_rpm=metric("fan_speed_rpm", i),
            power_w=metric("power_w", i),
            accepted_shares=counter("accepted_shares", i),
            rejected_shares=counter("rejected_shares", i),
        )
        for i in range(n)
    ]


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(self, ingest: Ingest, feedback: FeedbackLog | None = None) -> None:
        self._ingest = ingest
        self._feedback = feedback

    async def WriteMetrics(
        self, request: telemetry_pb2.WriteMetricsRequest, context: grpc.aio.ServicerContext
    ) -> telemetry_pb2.WriteMetricsResponse:
        if request.HasField("columns") and not request.samples:
            # Columns only: the vectorised fast path (a batch mixing rows and columns takes the row path).
            result = await self._ingest.write_columns(column_input(request.columns))
        else:
            result = await self._ingest.write(sample_inputs(request))
        return telemetry_pb2.WriteMetricsResponse(
            written=result.written,
            duplicates=result.duplicates,
            miners_registered=result.miners_registered,
            batch_id=request.batch_id,
            kept_raw=result.kept_raw,
            kept_hourly=result.kept_hourly,
        )

    async def IngestMetrics(
        self,
        request_iterator: AsyncIterator[telemetry_pb2.WriteMetricsRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[telemetry_pb2.WriteMetricsResponse]:
        # Each batch is acknowledged once stored; a bad batch ends the stream with INVALID_ARGUMENT,
        # and every batch acknowledged before it stays stored.
        async for request in request_iterator:
            yield await self.WriteMetrics(request, context)

    async def RecordFailure(
        self, request: telemetry_pb2.RecordFailureRequest, context: grpc.aio.ServicerContext
    ) -> telemetry_pb2.FailureEvent:
        event = await self._ingest.record_failure(
            request.miner_id,
            from_timestamp(request, "occurred_at"),
            request.mode,
            from_timestamp(request, "repaired_at"),
            request.note,
        )
        return failure_to_proto(event)

    async def RecordRepair(
        self, request: telemetry_pb2.RecordRepairRequest, context: grpc.aio.ServicerContext
    ) -> telemetry_pb2.FailureEvent:
        event = await self._ingest.record_repair(
            request.event_id, from_timestamp(request, "repaired_at"), request.note
        )
        return failure_to_proto(event)

    async def ListFailures(
        self, request: telemetry_pb2.ListFailuresRequest, context: grpc.aio.ServicerContext
    ) -> telemetry_pb2.ListFailuresResponse:
        events = await self._ingest.list_failures(request.miner_id, request.page_size)
        return telemetry_pb2.ListFailuresResponse(failures=[failure_to_proto(e) for e in events])

    async def SetPlannedState(
        self, request: telemetry_pb2.SetPlannedStateRequest, context: grpc.aio.ServicerContext
    ) -> telemetry_pb2.PlannedState:
        state = await self._ingest.set_planned_state(
            request.miner_id,
            request.kind,
            from_timestamp(request, "start"),
            from_timestamp(request, "end"),
            request.note,
        )
        return planned_state_to_proto(state)

    async def RecordFeedback(
        self, request: telemetry_pb2.RecordFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> telemetry_pb2.Feedback:
        if self._feedback is None:
            raise NotImplementedError("RecordFeedback")
        feedback = await self._feedback.record(
            request.miner_id, request.verdict, request.model_version, request.note
        )
        return feedback_to_proto(feedback)


def feedback_to_proto(feedback: Feedback) -> telemetry_pb2.Feedback:
    return telemetry_pb2.Feedback(
        feedback_id=feedback.feedback_id,
        miner_id=feedback.miner_id,
        verdict=int(feedback.verdict),
        model_version=feedback.model_version,
        recorded_at=to_timestamp(feedback.recorded_at),
        note=feedback.note,
    )


def failure_to_proto(event: FailureEvent) -> telemetry_pb2.FailureEvent:
    return telemetry_pb2.FailureEvent(
        event_id=event.event_id,
        miner_id=event.miner_id,
        occurred_at=to_timestamp(event.occurred_at),
        mode=int(event.mode),
        source=int(event.source),
        repaired_at=to_timestamp(event.repaired_at),
        note=event.note,
        repair_source=int(event.repair_source),
    )


def planned_state_to_proto(state: PlannedState) -> telemetry_pb2.PlannedState:
    return telemetry_pb2.PlannedState(
        state_id=state.state_id,
        miner_id=state.miner_id,
        kind=int(state.kind),
        start=to_timestamp(state.start),
        end=to_timestamp(state.end),
        note=state.note,
    )
