"""Builders for the ingestion tests: grid times, samples with healthy readings, error details."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2
from mining.analytics.v1alpha1 import telemetry_pb2

from tests.harness import error_details

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
"""A 5-minute-grid start two days back: recent enough to be valid, old enough for late samples."""


def at(step: int) -> datetime:
    """T0 plus `step` 5-minute intervals."""
    return T0 + timedelta(minutes=5 * step)


def stamp(ts: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(ts)
    return out


def metric(miner_id: str, step: int, **fields: object) -> telemetry_pb2.MetricSample:
    """A healthy sample of an S19 Pro-class miner at grid step `step`; fields override (None drops)."""
    values: dict[str, object] = {
        "hashrate_ths": 100.0,
        "temperature_c": 70.0,
        "fan_speed_rpm": 4000.0,
        "power_w": 3200.0,
        "accepted_shares": 1000 * (step + 1),
        "rejected_shares": 5 * (step + 1),
    }
    values.update(fields)
    return telemetry_pb2.MetricSample(
        miner_id=miner_id,
        timestamp=stamp(at(step)),
        **{k: v for k, v in values.items() if v is not None},  # type: ignore[arg-type]
    )


def batch(*samples: telemetry_pb2.MetricSample, batch_id: str = "") -> telemetry_pb2.WriteMetricsRequest:
    return telemetry_pb2.WriteMetricsRequest(samples=list(samples), batch_id=batch_id)


violations = error_details  # (ErrorInfo reason, BadRequest field names) of a rich error
