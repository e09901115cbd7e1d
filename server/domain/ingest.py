"""Telemetry ingestion: validates batches of samples and writes them atomically.

Impossible values (NaN, -300 C, 10^9 RPM, negative counters, far-future times) and, with
auto-registration off, unknown miners reject the whole batch with every bad sample listed by index
and field; nothing of it is written. Extreme but possible readings (a fan at 0 RPM, 105 C, zero
hashrate) are exactly the signals of a failing miner and are stored as they are. Readings a working
sensor cannot give but that are physically possible (below 0 C or above 130 C, a fan above 12,000
RPM, more than 3x the miner's nominal hashrate) are stored too, flagged QUALITY_SENSOR_GLITCH.

Identity: a sample's serial or MAC, when given, names the miner before its miner_id (an IP), so a
miner that moves keeps its history and its new IP becomes an alias. Miners registered automatically
take the sample's hardware model and, when the catalogue knows it, its nameplate figures.

Order and idempotency: the key is (miner, timestamp); re-sending it replaces the stored sample (last
write wins) or, when identical, counts as a duplicate. Late samples are stored in their place. A
batch whose newest sample is older than `backfill_after_minutes` is a backfill: listeners are told,
so they do not re-score on it. After every batch, outages are derived for the miners it touched.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from server.config import Settings
from server.domain import outages, validation
from server.domain.access import MinerAccess
from server.domain.catalog import known_model
from server.errors import FieldViolation, InvalidArgument
from server.records import (
    PLAUSIBLE_FAN_RPM,
    PLAUSIBLE_HASHRATE_FACTOR,
    PLAUSIBLE_TEMPERATURE_C,
    EventSource,
    FailureEvent,
    FailureMode,
    Miner,
    PlannedState,
    PlannedStateKind,
    Sample,
    WriteResult,
)
from server.store import QUALITY_SENSOR_GLITCH, Store

log = logging.getLogger(__name__)

# Physical bounds beyond any sensor's range: values outside are errors, not data.
BOUNDS = validation.READING_BOUNDS
MAX_FUTURE = timedelta(minutes=10)
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
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
    serial: str = ""
    mac: str = ""


COLUMN_METRICS = ("hashrate_ths", "temperature_c", "fan_speed_rpm", "power_w")
COLUMN_COUNTERS = ("accepted_shares", "rejected_shares")


@dataclass(frozen=True, slots=True)
class ColumnInput:
    """Samples as columns, before validation: every array has one value per sample (N,).

    A metric column holds float64 with NaN for a missing reading; a counter column holds int64 with -1
    for a missing one; None is an absent column (every value missing).
    """

    miner_id: np.ndarray  # (N,) object (str)
    timestamp_ms: np.ndarray  # (N,) int64, ms since the Unix epoch, UTC
    metrics: dict[str, np.ndarray | None]  # COLUMN_METRICS -> (N,) float64
    counters: dict[str, np.ndarray | None]  # COLUMN_COUNTERS -> (N,) int64

    def __len__(self) -> int:
        return int(self.miner_id.shape[0])


@dataclass(frozen=True, slots=True)
class ValidColumns:
    """Validated columns, ready for Store.bulk_append_columns."""

    miner_id: np.ndarray  # (N,) object (str)
    ts: np.ndarray  # (N,) datetime64[ms], UTC
    values: dict[str, np.ndarray]  # the six metrics, (N,) float64, NaN = missing
    quality: np.ndarray  # (N,) uint8: QUALITY_SENSOR_GLITCH where a reading is implausible


class Ingest:
    """Validates and stores telemetry, failure events and planned states."""

    def __init__(self, store: Store, settings: Settings, access: MinerAccess | None = None) -> None:
        self._store = store
        self._settings = settings
        self._access = access or MinerAccess(store)
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def write(self, inputs: Sequence[SampleInput]) -> WriteResult:
        """Validate and store one batch atomically, derive outages, tell the listeners."""
        if not inputs:
            raise InvalidArgument.for_field("samples", "the batch is empty; send at least one sample")
        if len(inputs) > self._settings.max_batch_samples:
            raise InvalidArgument.for_field(
                "samples",
                f"{len(inputs)} samples exceed the batch limit of {self._settings.max_batch_samples}; "
                "split the batch",
            )
        samples = validate_samples(inputs, now=datetime.now(UTC))
        result = await asyncio.to_thread(self._store_batch, inputs, samples)
        touched = result.miner_ids or {s.miner_id for s in samples}
        oldest = min(s.timestamp for s in samples)
        try:
            await asyncio.to_thread(outages.derive_after_ingest, self._store, self._settings, touched, oldest)
        except Exception:  # noqa: BLE001 - the batch is stored; the periodic scan derives them later
            log.exception("deriving outages after a batch failed; the periodic scan will retry")
        newest = max(s.timestamp for s in samples)
        backfill = datetime.now(UTC) - newest > timedelta(minutes=self._settings.backfill_after_minutes)
        for listener in self._listeners:
            listener(touched, backfill)
        return result

    async def write_columns(self, columns: ColumnInput) -> WriteResult:
        """The columnar fast path of `write`: the same rules, checked with numpy, and one bulk append.

        Bad values are named `columns.<field>[i]`; nothing of a bad batch is written.
        """
        n = len(columns)
        if n == 0:
            raise InvalidArgument.for_field("columns", "the batch is empty; send at least one sample")
        if n > self._settings.max_batch_samples:
            raise InvalidArgument.for_field(
                "columns",
                f"{n} samples exceed the batch limit of {self._settings.max_batch_samples}; split the batch",
            )
        valid = validate_columns(columns, now=datetime.now(UTC))
        result = await asyncio.to_thread(self._store_columns, valid)
        touched = result.miner_ids or set(valid.miner_id.tolist())
        oldest = _utc_ms(int(valid.ts.min().astype(np.int64)))
        try:
            await asyncio.to_thread(outages.derive_after_ingest, self._store, self._settings, touched, oldest)
        except Exception:  # noqa: BLE001 - the batch is stored; the periodic scan derives them later
            log.exception("deriving outages after a batch failed; the periodic scan will retry")
        newest = _utc_ms(int(valid.ts.max().astype(np.int64)))
        backfill = datetime.now(UTC) - newest > timedelta(minutes=self._settings.backfill_after_minutes)
        for listener in self._listeners:
            listener(touched, backfill)
        return result

    def _store_columns(self, valid: ValidColumns) -> WriteResult:
        """Like _store_batch for columns: refuse unknown miners (auto-registration off), flag hashrate
        glitches against each miner's nominal hashrate, one bulk append (runs in a worker thread)."""
        auto_register = self._settings.auto_register_miners
        given, row_miner = np.unique(valid.miner_id, return_inverse=True)  # (M,), (N,) -> index in given
        known = self._store.lookup_miners([str(m) for m in given])
        scoped = self._access.scoped()
        refused: dict[int, str] = {}  # index in given -> why its rows are refused
        for k, miner_id in enumerate(given.tolist()):
            miner = known.get(miner_id)
            if scoped and not self._access.allows(miner):
                # A token scoped to some miners writes only those; others read as unknown.
                refused[k] = f"unknown miner {miner_id!r} for this token"
            elif miner is None and not auto_register:
                refused[k] = (
                    f"unknown miner {miner_id!r} and auto-registration is off; register it first "
                    f"(PUT /api/advanced/miners/{miner_id}) or send its known serial or MAC"
                )
        if refused:
            bad = np.zeros(given.shape[0], dtype=bool)
            bad[list(refused)] = True
            raise InvalidArgument.for_fields(
                [
                    FieldViolation(f"columns.miner_id[{i}]", refused[int(row_miner[i])])
                    for i in np.flatnonzero(bad[row_miner]).tolist()
                ],
                reason="INVALID_SAMPLES",
            )
        nominal = np.array(
            [known[str(m)].nominal_hashrate_ths if str(m) in known else 0.0 for m in given], dtype=np.float64
        )[row_miner]  # (N,)
        hashrate = valid.values["hashrate_ths"]
        with np.errstate(invalid="ignore"):
            glitch = (nominal > 0) & (hashrate > PLAUSIBLE_HASHRATE_FACTOR * nominal)  # NaN compares False
        quality = valid.quality | np.where(glitch, QUALITY_SENSOR_GLITCH, 0).astype(np.uint8)
        return self._store.bulk_append_columns(
            valid.miner_id,
            valid.ts,
            hashrate_ths=valid.values["hashrate_ths"],
            temperature_c=valid.values["temperature_c"],
            fan_speed_rpm=valid.values["fan_speed_rpm"],
            power_w=valid.values["power_w"],
            accepted_shares=valid.values["accepted_shares"],
            rejected_shares=valid.values["rejected_shares"],
            quality=quality,  # one flag per row
            auto_register=auto_register,
        )

    def _store_batch(self, inputs: Sequence[SampleInput], samples: list[Sample]) -> WriteResult:
        """Resolve the batch's miners, refuse unknown ones (auto-registration off), flag hashrate
        glitches against each miner's nominal hashrate, write (runs in a worker thread)."""
        auto_register = self._settings.auto_register_miners
        keys = {k for item in inputs for k in (item.miner_id, item.serial.strip(), item.mac.strip()) if k}
        known = self._store.lookup_miners(sorted(keys))
        violations: list[FieldViolation] = []
        flagged: list[Sample] = []
        identities = _identities(inputs)
        scoped = self._access.scoped()
        for index, (item, sample) in enumerate(zip(inputs, samples, strict=True)):
            identity = identities.get(item.miner_id)
            aliases = (identity.serial, identity.mac) if identity else ()
            miner = next((known[k] for k in (*aliases, item.miner_id) if k in known), None)
            if scoped and not (
                self._access.allows(miner) and self._access.may_claim((*aliases, item.miner_id), known)
            ):
                # A token scoped to some miners writes only those, and never claims another miner's id,
                # serial or MAC as an alias; others read as unknown.
                violations.append(
                    FieldViolation(
                        f"samples[{index}].miner_id", f"unknown miner {item.miner_id!r} for this token"
                    )
                )
                continue
            if miner is None and not auto_register:
                violations.append(
                    FieldViolation(
                        f"samples[{index}].miner_id",
                        f"unknown miner {item.miner_id!r} and auto-registration is off; register it first "
                        f"(PUT /api/advanced/miners/{item.miner_id}) or send its known serial or MAC",
                    )
                )
                continue
            nominal = miner.nominal_hashrate_ths if miner else 0.0
            nominal = nominal or (identity.nominal_hashrate_ths if identity else 0.0)
            if (
                nominal > 0
                and sample.hashrate_ths is not None
                and sample.hashrate_ths > PLAUSIBLE_HASHRATE_FACTOR * nominal
            ):
                sample = replace(sample, quality=sample.quality | QUALITY_SENSOR_GLITCH)
            flagged.append(sample)
        if violations:
            raise InvalidArgument.for_fields(violations, reason="INVALID_SAMPLES")
        return self._store.write_samples(flagged, auto_register=auto_register, identities=identities)

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
        elif (visible := await self._access.visible_ids()) is not None:  # a scoped token: its miners only
            events = await asyncio.to_thread(self._store.list_failures, None, 10_000_000)
            return [e for e in events if e.miner_id in visible][: page_size or 100]
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
        return (await self._access.resolve(miner_id)).miner_id  # out of scope reads as absent


def validate_samples(inputs: Sequence[SampleInput], *, now: datetime) -> list[Sample]:
    """Samples, or INVALID_ARGUMENT listing every bad one by index and field."""
    violations: list[FieldViolation] = []
    samples: list[Sample] = []
    first_seen: dict[str, tuple[int, SampleInput]] = {}  # miner_id -> its first sample with an identity
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
        violations.extend(validation.boards(item.boards, where))
        violations.extend(_identity_violations(item, index, first_seen))
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
                    quality=QUALITY_SENSOR_GLITCH if _implausible(item) else 0,
                )
            )
    if violations:
        raise InvalidArgument.for_fields(violations, reason="INVALID_SAMPLES")
    return samples


def _utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def validate_columns(columns: ColumnInput, *, now: datetime) -> ValidColumns:
    """The rules of validate_samples, vectorised: valid columns, or INVALID_ARGUMENT listing every bad
    value as `columns.<field>[i]` (in row order, then field order)."""
    n = len(columns)
    found: list[tuple[int, int, FieldViolation]] = []  # (row, field rank, violation), sorted at the end

    ids = columns.miner_id
    given, row_miner = np.unique(ids, return_inverse=True)  # (M,) distinct ids, (N,) -> index in given
    problems: dict[int, str] = {}
    for k, value in enumerate(given.tolist()):
        try:
            validation.miner_id(value, "miner_id")
        except InvalidArgument as exc:
            problems[k] = exc.violations[0].description
    if problems:
        bad_ids = np.zeros(given.shape[0], dtype=bool)
        bad_ids[list(problems)] = True
        for i in np.flatnonzero(bad_ids[row_miner]).tolist():
            found.append((i, 0, FieldViolation(f"columns.miner_id[{i}]", problems[int(row_miner[i])])))

    ts_ms = columns.timestamp_ms.astype(np.int64, copy=False)
    future_ms = int((now + MAX_FUTURE).timestamp() * 1000)
    for i in np.flatnonzero(ts_ms > future_ms).tolist():
        description = f"{_iso_ms(int(ts_ms[i]))} is in the future; check the collector's clock"
        found.append((i, 1, FieldViolation(f"columns.timestamp_ms[{i}]", description)))
    for i in np.flatnonzero(ts_ms < int(OLDEST.timestamp() * 1000)).tolist():
        found.append((i, 1, FieldViolation(f"columns.timestamp_ms[{i}]", "is before 2009-01-03")))

    values: dict[str, np.ndarray] = {}
    for rank, name in enumerate(COLUMN_METRICS, start=2):
        column = columns.metrics.get(name)
        if column is None:
            values[name] = np.full(n, np.nan)
            continue
        column = column.astype(np.float64, copy=False)
        low, high = BOUNDS[name]
        infinite = np.isinf(column)
        with np.errstate(invalid="ignore"):
            outside = ~infinite & ((column < low) | (column > high))  # NaN (missing) compares False
        for i in np.flatnonzero(infinite).tolist():
            description = f"must be a finite number, got {float(column[i])}"
            found.append((i, rank, FieldViolation(f"columns.{name}[{i}]", description)))
        for i in np.flatnonzero(outside).tolist():
            description = f"{float(column[i])} is outside the possible range [{low:g}, {high:g}]"
            found.append((i, rank, FieldViolation(f"columns.{name}[{i}]", description)))
        values[name] = column
    for rank, name in enumerate(COLUMN_COUNTERS, start=6):
        counter = columns.counters.get(name)
        if counter is None:
            values[name] = np.full(n, np.nan)
            continue
        counter = counter.astype(np.int64, copy=False)
        for i in np.flatnonzero(counter < -1).tolist():  # -1 marks a missing reading
            description = f"must be >= 0 (a cumulative counter), got {int(counter[i])}"
            found.append((i, rank, FieldViolation(f"columns.{name}[{i}]", description)))
        # float64 holds counters exactly up to 2**53; NaN = missing, as the store stages them.
        values[name] = np.where(counter == -1, np.nan, counter.astype(np.float64))
    if found:
        found.sort(key=lambda item: (item[0], item[1]))
        raise InvalidArgument.for_fields([v for _, _, v in found], reason="INVALID_SAMPLES")

    low, high = PLAUSIBLE_TEMPERATURE_C
    temperature, fan = values["temperature_c"], values["fan_speed_rpm"]
    with np.errstate(invalid="ignore"):
        implausible = (temperature < low) | (temperature > high) | (fan > PLAUSIBLE_FAN_RPM)
    return ValidColumns(
        miner_id=ids,
        ts=ts_ms.astype("datetime64[ms]"),
        values=values,
        quality=np.where(implausible, QUALITY_SENSOR_GLITCH, 0).astype(np.uint8),
    )


def _iso_ms(ms: int) -> str:
    """An epoch-ms time as ISO 8601 (UTC), as the row path prints it; beyond datetime's range, the ms."""
    try:
        return _utc_ms(ms).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms since the epoch"


def _identities(inputs: Sequence[SampleInput]) -> dict[str, Miner]:
    """miner_id -> what its samples in the batch say about the miner: the first serial, MAC and
    hardware model given, with the catalogue's make and nameplate figures when it knows the model."""
    seen: dict[str, dict[str, str]] = {}
    for item in inputs:
        if item.serial or item.mac or item.hardware_model:
            fields = seen.setdefault(item.miner_id, {"serial": "", "mac": "", "hardware_model": ""})
            for name in fields:
                fields[name] = fields[name] or getattr(item, name).strip()
    identities: dict[str, Miner] = {}
    for miner_id, fields in seen.items():
        catalogued = known_model(fields["hardware_model"])
        identities[miner_id] = Miner(
            miner_id=miner_id,
            hardware_model=catalogued.name if catalogued else fields["hardware_model"],
            make=catalogued.make if catalogued else "",
            nominal_hashrate_ths=catalogued.hashrate_ths if catalogued else 0.0,
            nominal_power_w=catalogued.power_w if catalogued else 0.0,
            serial=fields["serial"],
            mac=fields["mac"],
        )
    return identities


def _identity_violations(
    item: SampleInput, index: int, first_seen: dict[str, tuple[int, SampleInput]]
) -> list[FieldViolation]:
    """Malformed serial or MAC, or one that contradicts an earlier sample of the same miner_id."""
    where = f"samples[{index}]"
    violations: list[FieldViolation] = [
        v
        for name in ("hardware_model", "serial", "mac")
        if (v := validation.text(getattr(item, name), f"{where}.{name}"))
    ]
    if violations:
        return violations
    if item.serial:
        try:
            validation.miner_id(item.serial.strip(), f"{where}.serial")
        except InvalidArgument as exc:
            violations.extend(exc.violations)
    if item.mac and not _MAC.match(item.mac.strip()):
        violations.append(
            FieldViolation(f"{where}.mac", f"{item.mac[:64]!r} is not a MAC address like aa:bb:cc:dd:ee:ff")
        )
    if not (item.serial or item.mac):
        return violations
    first_index, first = first_seen.setdefault(item.miner_id, (index, item))
    for name in ("serial", "mac"):
        mine, theirs = getattr(item, name).strip().lower(), getattr(first, name).strip().lower()
        if mine and theirs and mine.replace("-", ":") != theirs.replace("-", ":"):
            violations.append(
                FieldViolation(
                    f"{where}.{name}",
                    f"differs from samples[{first_index}].{name} for the same miner_id {item.miner_id!r}; "
                    "one id cannot name two miners in one batch",
                )
            )
    return violations


def _implausible(item: SampleInput) -> bool:
    """A possible reading that a working sensor does not give (hashrate is checked with the miner)."""
    low, high = PLAUSIBLE_TEMPERATURE_C
    if item.temperature_c is not None and not low <= item.temperature_c <= high:
        return True
    if item.fan_speed_rpm is not None and item.fan_speed_rpm > PLAUSIBLE_FAN_RPM:
        return True
    return any(rpm > PLAUSIBLE_FAN_RPM for rpm in item.fan_speeds_rpm)
