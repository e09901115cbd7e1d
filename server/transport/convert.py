"""Small conversions between protobuf types and plain Python values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from mining.analytics.v1alpha1 import common_pb2

from server.errors import InvalidArgument
from server.records import Miner, RiskLevel


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp, or None (leave the field unset) for None."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC))
    return stamp


def optional(message: Any, field: str) -> Any:
    """A proto3 `optional` (or message) field's value, or None when it is unset."""
    return getattr(message, field) if message.HasField(field) else None


def from_timestamp(message: object, field: str) -> datetime | None:
    """The UTC datetime of a Timestamp field, or None when it is unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise _invalid_time(stamp, field) from exc


# The seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range a Timestamp may hold.
_SECONDS_RANGE = (-62_135_596_800, 253_402_300_799)


def timestamp_us(stamp: timestamp_pb2.Timestamp, field: str = "timestamp") -> int:
    """A Timestamp as microseconds since the Unix epoch (nanos truncated, as ToDatetime does), or
    INVALID_ARGUMENT for one outside what from_timestamp accepts."""
    if not (_SECONDS_RANGE[0] <= stamp.seconds <= _SECONDS_RANGE[1] and 0 <= stamp.nanos <= 999_999_999):
        raise _invalid_time(stamp, field)
    return stamp.seconds * 1_000_000 + stamp.nanos // 1000


def _invalid_time(stamp: timestamp_pb2.Timestamp, field: str) -> InvalidArgument:
    return InvalidArgument.for_field(
        field,
        f"is not a valid time (seconds={stamp.seconds}, nanos={stamp.nanos}): it must lie in years "
        "1-9999 with nanos in 0..999999999, e.g. 2026-01-01T00:00:00Z",
    )


def risk_level(value: int, field: str = "min_risk_level") -> RiskLevel:
    """The RiskLevel of an enum field, or INVALID_ARGUMENT for a number the proto does not define."""
    try:
        return RiskLevel(value)
    except ValueError as exc:
        raise InvalidArgument.for_field(
            field, f"unknown risk level {value}; use LOW, MEDIUM, HIGH or CRITICAL"
        ) from exc


def miner_from_proto(message: common_pb2.Miner) -> Miner:
    return Miner(
        miner_id=message.miner_id,
        hardware_model=message.hardware_model,
        make=message.make,
        nominal_hashrate_ths=message.nominal_hashrate_ths,
        nominal_power_w=message.nominal_power_w,
        serial=message.serial,
        mac=message.mac,
        site=message.site,
    )
