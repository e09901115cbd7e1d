"""Small conversions between protobuf types and plain Python values."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from mining.analytics.v1alpha1 import common_pb2

from server.records import Miner


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp, or None (leave the field unset) for None."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC))
    return stamp


def from_timestamp(message: object, field: str) -> datetime | None:
    """The UTC datetime of a Timestamp field, or None when it is unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


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
