"""A miner's history: telemetry on a grid, risk over time, events on the same timeline.

Reads validate their range (start < end, a bounded span, a step that keeps a response small) and
resolve the miner as every other read does (an alias names its miner; out of a token's scope reads
as absent). Risk points are recorded by the rescorer when a new window is scored, never on the
prediction path.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from server.config import Settings
from server.domain.access import MinerAccess
from server.domain.active_models import ActiveModels
from server.errors import InvalidArgument
from server.records import (
    FEATURE_COLUMNS,
    FEATURE_UNITS,
    EventSource,
    FailureEvent,
    Miner,
    MinerScore,
    PlannedState,
)
from server.store import FleetStore
from server.store.history import RAW_COLUMNS, RiskPoint

log = logging.getLogger(__name__)

MAX_POINTS = 2000
"""Most steps a telemetry response holds (per series)."""
MAX_TELEMETRY_SPAN = timedelta(days=400)
MAX_RISK_SPAN = timedelta(days=92)
MAX_EVENTS_SPAN = timedelta(days=400)
DEFAULT_TELEMETRY_SPAN = timedelta(hours=24)
DEFAULT_RISK_SPAN = timedelta(days=7)
DEFAULT_EVENTS_SPAN = timedelta(days=30)
MAX_FUTURE = timedelta(minutes=10)
"""Default ends reach this far past now: ingestion accepts samples stamped up to 10 min ahead."""

RAW_UNITS = {
    "hashrate_ths": "TH/s",
    "temperature_c": "C",
    "fan_speed_rpm": "RPM",
    "power_w": "W",
    "accepted_shares": "shares (cumulative)",
    "rejected_shares": "shares (cumulative)",
}


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    kind: str  # "raw" or "feature"
    unit: str
    minimum: np.ndarray  # (S,) float64, NaN where the step has no value
    mean: np.ndarray
    maximum: np.ndarray


@dataclass(frozen=True, slots=True)
class Telemetry:
    miner_id: str
    start: datetime
    end: datetime
    step_s: int
    step_starts: np.ndarray  # (S,) int64 epoch seconds
    samples: np.ndarray  # (S,) int64
    planned: np.ndarray  # (S,) bool
    source: list[str]
    series: tuple[Series, ...]
    planned_states: tuple[PlannedState, ...]


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    kind: str  # "failure", "outage", "planned_state", "feedback"
    start: datetime
    end: datetime | None
    event_id: str
    label: str
    note: str


def _range(
    start: datetime | None,
    end: datetime | None,
    default_end: datetime,
    default_span: timedelta,
    max_span: timedelta,
) -> tuple[datetime, datetime]:
    """The validated [start, end): end defaults to default_end, start to end - default_span; start <
    end and a span of at most max_span, or INVALID_ARGUMENT naming the field."""
    if start is not None and end is not None and end <= start:
        raise InvalidArgument.for_field("end", "must be after start")
    end = end or default_end
    start = start or end - default_span
    if end <= start:
        raise InvalidArgument.for_field("start", f"must be before end ({end.isoformat()})")
    if end - start > max_span:
        raise InvalidArgument.for_field(
            "start", f"the range may span at most {max_span.days} days; narrow start..end"
        )
    return start, end


class History:
    """The history reads, and the writer of risk points."""

    def __init__(
        self, store: FleetStore, models: ActiveModels, settings: Settings, access: MinerAccess | None = None
    ) -> None:
        self._store = store
        self._models = models
        self._settings = settings
        self._access = access or MinerAccess(store)

    # -- writing (the rescorer) -----------------------------------------------------------------------

    def record(self, scores: list[MinerScore]) -> int:
        """Stores a point per newly scored window (blocking). Returns how many; 0 when turned off."""
        if not self._settings.risk_history or not scores:
            return 0
        autoencoder = self._models.autoencoder
        anomaly_version = autoencoder.summary.version if autoencoder is not None else ""
        now = datetime.now(UTC)
        points = [
            RiskPoint(
                miner_id=s.miner_id,
                window_end=s.window_end,
                model_version=s.model_version,
                risk_score=s.risk_score,
                risk_level=s.risk_level,
                is_anomaly=s.is_anomaly,
                anomaly_score=s.anomaly_score,
                anomaly_model_version=anomaly_version,
                scored_at=now,
            )
            for s in scores
            if s.window_end is not None
        ]
        return self._store.write_risk_points(points)

    # -- reading --------------------------------------------------------------------------------------

    async def _miner(self, miner_id: str) -> Miner:
        return await self._access.resolve(miner_id)  # out of the caller's scope reads as absent

    def _step(self, start: datetime, end: datetime, step_s: int) -> int:
        interval = self._settings.sample_interval_s
        span_s = (end - start).total_seconds()
        smallest = max(interval, math.ceil(span_s / MAX_POINTS / interval) * interval)
        if step_s == 0:
            return smallest
        if step_s < interval:
            raise InvalidArgument.for_field(
                "step", f"must be 0 (automatic) or at least the sample interval, {interval} s; got {step_s}"
            )
        if math.ceil(span_s / step_s) > MAX_POINTS:
            raise InvalidArgument.for_field(
                "step",
                f"{step_s} s gives more than {MAX_POINTS} points over this range; use at least {smallest} s "
                "or 0 (automatic)",
            )
        return step_s

    async def telemetry(
        self, miner_id: str, *, start: datetime | None, end: datetime | None, step_s: int
    ) -> Telemetry:
        miner = await self._miner(miner_id)
        newest = await asyncio.to_thread(self._store.miner_newest_sample, miner.miner_id)
        default_end = newest + timedelta(seconds=1) if newest is not None else datetime.now(UTC)
        start, end = _range(start, end, default_end, DEFAULT_TELEMETRY_SPAN, MAX_TELEMETRY_SPAN)
        step_s = self._step(start, end, step_s)
        aligned = datetime.fromtimestamp(int(start.timestamp()) // step_s * step_s, UTC)
        rows = await asyncio.to_thread(self._store.read_telemetry, miner.miner_id, aligned, end, step_s)
        planned_states = tuple(
            s
            for s in await asyncio.to_thread(self._store.list_planned_states, miner.miner_id)
            if s.start < end and s.end > aligned
        )
        planned = np.zeros(rows.step_starts.shape[0], dtype=bool)
        for state in planned_states:
            lo, hi = state.start.timestamp(), state.end.timestamp()
            planned |= (rows.step_starts < hi) & (rows.step_starts + step_s > lo)
        series = [Series(name, "raw", RAW_UNITS[name], *rows.raw[name]) for name in RAW_COLUMNS] + [
            Series(name, "feature", FEATURE_UNITS[name], *rows.features[name]) for name in FEATURE_COLUMNS
        ]
        return Telemetry(
            miner_id=miner.miner_id,
            start=aligned,
            end=end,
            step_s=step_s,
            step_starts=rows.step_starts,
            samples=rows.samples,
            planned=planned,
            source=rows.source,
            series=tuple(series),
            planned_states=planned_states,
        )

    async def risk_history(
        self, miner_id: str, *, start: datetime | None, end: datetime | None
    ) -> tuple[str, list[RiskPoint]]:
        miner = await self._miner(miner_id)
        start, end = _range(start, end, datetime.now(UTC) + MAX_FUTURE, DEFAULT_RISK_SPAN, MAX_RISK_SPAN)
        points = await asyncio.to_thread(self._store.read_risk_points, miner.miner_id, start, end)
        return miner.miner_id, points

    async def events(
        self, miner_id: str, *, start: datetime | None, end: datetime | None
    ) -> tuple[str, list[TimelineEvent]]:
        miner = await self._miner(miner_id)
        start, end = _range(start, end, datetime.now(UTC) + MAX_FUTURE, DEFAULT_EVENTS_SPAN, MAX_EVENTS_SPAN)
        failures, planned, feedback = await asyncio.to_thread(self._events, miner.miner_id)
        far = datetime.max.replace(tzinfo=UTC)
        timeline = [
            TimelineEvent(
                kind="outage" if f.source == EventSource.DERIVED else "failure",
                start=f.occurred_at,
                end=f.repaired_at,
                event_id=f.event_id,
                label=f"FAILURE_MODE_{f.mode.name}",
                note=f.note,
            )
            for f in failures
            if f.occurred_at < end and (f.repaired_at or far) >= start
        ]
        timeline += [
            TimelineEvent(
                kind="planned_state",
                start=s.start,
                end=s.end,
                event_id=s.state_id,
                label=f"PLANNED_STATE_KIND_{s.kind.name}",
                note=s.note,
            )
            for s in planned
            if s.start < end and s.end >= start
        ]
        for row in feedback:
            recorded = row["recorded_at"]
            assert isinstance(recorded, datetime)
            recorded = recorded if recorded.tzinfo else recorded.replace(tzinfo=UTC)
            if start <= recorded < end:
                timeline.append(
                    TimelineEvent(
                        kind="feedback",
                        start=recorded,
                        end=None,
                        event_id=str(row["feedback_id"]),
                        label=_verdict(row["verdict"]),
                        note=str(row["note"]),
                    )
                )
        timeline.sort(key=lambda e: (e.start, e.kind, e.event_id))
        return miner.miner_id, timeline

    def _events(
        self, miner_id: str
    ) -> tuple[list[FailureEvent], list[PlannedState], list[dict[str, object]]]:
        return (
            self._store.list_failures(miner_id, 1_000_000),
            self._store.list_planned_states(miner_id),
            self._store.list_feedback(miner_id, 1_000_000),
        )


def _verdict(value: object) -> str:
    return {1: "FEEDBACK_VERDICT_CONFIRMED", 2: "FEEDBACK_VERDICT_FALSE_ALARM"}.get(
        int(value),  # type: ignore[call-overload]
        "FEEDBACK_VERDICT_UNSPECIFIED",
    )
