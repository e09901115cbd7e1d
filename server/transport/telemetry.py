"""TelemetryService servicer: WriteMetrics, IngestMetrics, RecordFailure, RecordRepair, ListFailures,
SetPlannedState, RecordFeedback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np
from mining.analytics.v1alpha1 import telemetry_pb2, telemetry_pb2_grpc

from server.domain.feedback import Feedback, FeedbackLog
from server.domain.ingest import (
    COLUMN_COUNTERS,
    COLUMN_METRICS,
    IDENTITY_FIELDS,
    TS_MISSING,
    ColumnInput,
    Ingest,
)
from server.errors import InvalidArgument
from server.records import BoardReading, FailureEvent, PlannedState
from server.transport.convert import from_timestamp, optional, timestamp_us, to_timestamp


def sample_columns(request: telemetry_pb2.WriteMetricsRequest) -> ColumnInput:
    """The request's samples, rows first and then columns, as one ColumnInput (the only conversion).

    Decodes each form's encoding: an unset row field and a column's NaN or -1 become NaN (missing); a
    row's NaN is marked as sent, for validation to refuse.
    """
    rows = request.samples
    if not rows and request.HasField("columns"):
        return _columns_only(request.columns)
    n_rows = len(rows)
    columns = request.columns if request.HasField("columns") else None
    n_columns = _check_column_lengths(columns) if columns is not None else 0
    miner_id = np.empty(n_rows + n_columns, dtype=object)
    ts_us = np.empty(n_rows + n_columns, dtype=np.int64)
    metrics = {name: np.full(n_rows + n_columns, np.nan) for name in (*COLUMN_METRICS, *COLUMN_COUNTERS)}
    boards: list[tuple[BoardReading, ...]] = []
    fans: list[tuple[float, ...]] = []
    identity = {name: np.full(n_rows + n_columns, "", dtype=object) for name in IDENTITY_FIELDS}
    nan_sent: dict[str, np.ndarray] = {}  # metric -> (N,) bool
    for i, s in enumerate(rows):
        miner_id[i] = s.miner_id
        ts_us[i] = timestamp_us(s.timestamp) if s.HasField("timestamp") else TS_MISSING
        for name, column in metrics.items():
            if s.HasField(name):
                value = column[i] = getattr(s, name)
                if value != value:  # a NaN sent as a row's value is refused, not read as missing
                    nan_sent.setdefault(name, np.zeros(n_rows + n_columns, dtype=bool))[i] = True
        boards.append(
            tuple(
                BoardReading(
                    index=b.index,
                    hashrate_ths=optional(b, "hashrate_ths"),
                    temperature_c=optional(b, "temperature_c"),
                    chip_temperature_c=optional(b, "chip_temperature_c"),
                )
                for b in s.boards
            )
        )
        fans.append(tuple(s.fan_speeds_rpm))
        for name, values in identity.items():
            values[i] = getattr(s, name)
    if columns is not None:
        tail = _columns_only(columns)
        miner_id[n_rows:] = tail.miner_id
        ts_us[n_rows:] = tail.ts_us
        for name, column in metrics.items():
            column[n_rows:] = tail.metrics[name]
        boards.extend(() for _ in range(n_columns))
        fans.extend(() for _ in range(n_columns))
    return ColumnInput(
        miner_id=miner_id,
        ts_us=ts_us,
        metrics=metrics,
        rows=n_rows,
        batch_field="samples",
        nan_sent=nan_sent,
        boards=boards if any(boards) else None,
        fan_speeds_rpm=fans if any(fans) else None,
        identity=identity if any(values.any() for values in identity.values()) else None,
    )


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


# Epoch milliseconds that still fit in int64 microseconds; a time beyond them is far out of range anyway.
_MS_LIMITS = (TS_MISSING // 1000 + 1, np.iinfo(np.int64).max // 1000)


def _columns_only(columns: telemetry_pb2.MetricColumns) -> ColumnInput:
    """Column samples as numpy arrays, without a per-sample Python object (the fast path)."""
    n = _check_column_lengths(columns)

    def metric(name: str) -> np.ndarray:
        values = getattr(columns, name)
        if not len(values):
            return np.full(n, np.nan)
        return np.fromiter(values, dtype=np.float64, count=n)  # NaN marks a missing reading

    def counter(name: str) -> np.ndarray:
        values = getattr(columns, name)
        if not len(values):
            return np.full(n, np.nan)
        counts = np.fromiter(values, dtype=np.int64, count=n)
        return np.where(counts == -1, np.nan, counts.astype(np.float64))  # -1 marks a missing counter

    ts_ms = np.fromiter(columns.timestamp_ms, dtype=np.int64, count=n)
    return ColumnInput(
        miner_id=np.array(columns.miner_id, dtype=object),
        ts_us=np.clip(ts_ms, *_MS_LIMITS) * 1000,
        metrics={
            **{name: metric(name) for name in COLUMN_METRICS},
            **{name: counter(name) for name in COLUMN_COUNTERS},
        },
    )


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(self, ingest: Ingest, feedback: FeedbackLog | None = None) -> None:
        self._ingest = ingest
        self._feedback = feedback

    async def WriteMetrics(
        self, request: telemetry_pb2.WriteMetricsRequest, context: grpc.aio.ServicerContext
    ) -> telemetry_pb2.WriteMetricsResponse:
        result = await self._ingest.write(sample_columns(request))
        return telemetry_pb2.WriteMetricsResponse(
            written=result.written,
            duplicates=result.duplicates,
            miners_registered=result.miners_registered,
            batch_id=request.batch_id,
            kept_raw=result.kept_raw,
            kept_hourly=result.kept_hourly,
            conflicts=result.conflicts,
            conflict_details=[
                telemetry_pb2.SampleConflict(
                    miner_id=c.miner_id,
                    timestamp=to_timestamp(c.timestamp),
                    samples=c.samples,
                    fields=c.fields,
                )
                for c in result.conflict_details
            ],
        )

    async def IngestMetrics(
        self,
        request_iterator: AsyncIterator[telemetry_pb2.WriteMetricsRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[telemetry_pb2.WriteMetricsResponse]:
        # Each batch is acknowledged once stored; a bad batch ends the stream with INVALID_ARGUMENT,
        # and every batch acknowledged before it stays stored.
        # The stream is one import: re-scoring what it moved waits for its end (rescoring.py).
        with self._ingest.import_stream():
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
