"""Telemetry ingestion: validates batches of samples and writes them atomically.

Impossible values (NaN, -300 C, 10^9 RPM, negative counters, far-future times) reject the whole
batch with every bad sample listed by index and field; extreme but possible readings (a fan at 0 RPM,
105 C, zero hashrate) are exactly the signals of a failing miner and are stored.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.config import Settings
from server.domain import validation
from server.errors import FieldViolation, InvalidArgument, MinerNotFound
from server.records import (
    EventSource,
    FailureEvent,
    FailureMode,
    PlannedState,
    PlannedStateKind,
    Sample,
    WriteResult,
)
from server.store import Store

# Physical bounds beyond any sensor's range: values outside are errors, not data.
BOUNDS: dict[str, tuple[float, float]] = {
    "hashrate_ths": (0.0, 10_000.0),
    "temperature_c": (-60.0, 200.0),
    "fan_speed_rpm": (0.0, 50_000.0),
    "power_w": (0.0, 100_000.0),
}
MAX_FUTURE = timedelta(minutes=10)
OLDEST = datetime(2009, 1, 3, tzinfo=UTC)  # nothing mined before the genesis block

# Called after a batch is stored with the miners it touched and whether it was a backfill.
Listener = Callable[[set[str], bool], None]


@dataclass(frozen=True, slots=True)
class SampleInput:
    """A sample as received, before validation (None = absent)."""

    miner_id: str
    timestamp: datetime | None
    hashrate_ths: float | None
    temperature_c: float | None
    fan_speed_rpm: float | None
    power_w: float | None
    accepted_shares: int | None
    rejected_shares: int | None
    boards: tuple = ()
    fan_speeds_rpm: tuple[float, ...] = ()
    hardware_model: str = ""


class Ingest:
    """Validates and stores telemetry, failure events and planned states."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def write(self, inputs: Sequence[SampleInput]) -> WriteResult:
        if not inputs:
            raise InvalidArgument.for_field("samples", "the batch is empty; send at least one sample")
        if len(inputs) > self._settings.max_batch_samples:
            raise InvalidArgument.for_field(
                "samples",
                f"{len(inputs)} samples exceed the batch limit of {self._settings.max_batch_samples}; "
                "split the batch",
            )
        samples = validate_samples(inputs, now=datetime.now(UTC))
        result: WriteResult = await asyncio.to_thread(
            self._store.write_samples, samples, auto_register=self._settings.auto_register_miners
        )
        newest = max(s.timestamp for s in samples)
        backfill = datetime.now(UTC) - newest > timedelta(hours=1)
        touched = {s.miner_id for s in samples}
        for listener in self._listeners:
            listener(touched, backfill)
        return result

    async def record_failure(
        self, miner_id: str, occurred_at: datetime | None, mode: int, repaired_at: datetime | None, note: str
    ) -> FailureEvent:
        miner = await self._known_miner(miner_id)
        occurred_at = occurred_at or datetime.now(UTC)
        if repaired_at is not None and repaired_at < occurred_at:
            raise InvalidArgument.for_field("repaired_at", "must not be before occurred_at")
        if mode not in FailureMode._value2member_map_:
            raise InvalidArgument.for_field("mode", f"unknown failure mode {mode}")
        event = FailureEvent(
            event_id=uuid.uuid4().hex,
            miner_id=miner,
            occurred_at=occurred_at,
            mode=FailureMode(mode) if mode else FailureMode.OTHER,
            source=EventSource.MANUAL,
            repaired_at=repaired_at,
            note=note[:1000],
        )
        await asyncio.to_thread(self._store.add_failure, event)
        return event

    async def list_failures(self, miner_id: str, page_size: int) -> list[FailureEvent]:
        if not 0 <= page_size <= 1000:
            raise InvalidArgument.for_field("page_size", "must be between 0 and 1000 (0 = 100)")
        if miner_id:
            miner_id = await self._known_miner(miner_id)
        return await asyncio.to_thread(self._store.list_failures, miner_id or None, page_size or 100)

    async def set_planned_state(
        self, miner_id: str, kind: int, start: datetime | None, end: datetime | None, note: str
    ) -> PlannedState:
        miner = await self._known_miner(miner_id)
        if kind not in (PlannedStateKind.CURTAILMENT, PlannedStateKind.MAINTENANCE):
            raise InvalidArgument.for_field("kind", "must be PLANNED_STATE_KIND_CURTAILMENT or _MAINTENANCE")
        if start is None or end is None:
            raise InvalidArgument.for_field("start" if start is None else "end", "is required")
        if end <= start:
            raise InvalidArgument.for_field("end", "must be after start")
        state = PlannedState(uuid.uuid4().hex, miner, PlannedStateKind(kind), start, end, note[:1000])
        await asyncio.to_thread(self._store.add_planned_state, state)
        return state

    async def _known_miner(self, miner_id: str) -> str:
        validation.miner_id(miner_id)
        miner = await asyncio.to_thread(self._store.get_miner, miner_id)
        if miner is None:
            raise MinerNotFound(miner_id)
        return miner.miner_id


def validate_samples(inputs: Sequence[SampleInput], *, now: datetime) -> list[Sample]:
    """Samples, or INVALID_ARGUMENT listing every bad one by index and field."""
    violations: list[FieldViolation] = []
    samples: list[Sample] = []
    for index, item in enumerate(inputs):
        where = f"samples[{index}]"
        bad = len(violations)
        try:
            validation.miner_id(item.miner_id, f"{where}.miner_id")
        except InvalidArgument as exc:
            violations.extend(exc.violations)
        if item.timestamp is None:
            violations.append(FieldViolation(f"{where}.timestamp", "is required (UTC)"))
        elif item.timestamp > now + MAX_FUTURE:
            violations.append(
                FieldViolation(
                    f"{where}.timestamp",
                    f"{item.timestamp.isoformat()} is in the future; check the collector's clock",
                )
            )
        elif item.timestamp < OLDEST:
            violations.append(FieldViolation(f"{where}.timestamp", "is before 2009-01-03"))
        for name, (low, high) in BOUNDS.items():
            value = getattr(item, name)
            if value is None:
                continue
            if not math.isfinite(value):
                violations.append(FieldViolation(f"{where}.{name}", f"must be a finite number, got {value}"))
            elif not low <= value <= high:
                violations.append(
                    FieldViolation(
                        f"{where}.{name}", f"{value} is outside the possible range [{low:g}, {high:g}]"
                    )
                )
        for name in ("accepted_shares", "rejected_shares"):
            value = getattr(item, name)
            if value is not None and value < 0:
                violations.append(
                    FieldViolation(f"{where}.{name}", f"must be >= 0 (a cumulative counter), got {value}")
                )
        for fan_index, rpm in enumerate(item.fan_speeds_rpm):
            if not (math.isfinite(rpm) and 0 <= rpm <= BOUNDS["fan_speed_rpm"][1]):
                violations.append(
                    FieldViolation(f"{where}.fan_speeds_rpm[{fan_index}]", f"{rpm} is not a possible RPM")
                )
        if len(violations) == bad and item.timestamp is not None:
            samples.append(
                Sample(
                    miner_id=item.miner_id,
                    timestamp=item.timestamp,
                    hashrate_ths=item.hashrate_ths,
                    temperature_c=item.temperature_c,
                    fan_speed_rpm=item.fan_speed_rpm,
                    power_w=item.power_w,
                    accepted_shares=item.accepted_shares,
                    rejected_shares=item.rejected_shares,
                    boards=tuple(item.boards),
                    fan_speeds_rpm=tuple(item.fan_speeds_rpm),
                )
            )
    if violations:
        raise InvalidArgument.for_fields(violations, reason="INVALID_SAMPLES")
    return samples
