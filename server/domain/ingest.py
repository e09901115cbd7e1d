"""Telemetry ingestion: validates batches of samples and writes them atomically.

One pipeline for every batch: the transport turns a request (rows, columns or both) into one
ColumnInput; `validate` checks it with numpy, `Ingest._store_valid` resolves and refuses miners and
appends it in one transaction, `Ingest._after_write` derives outages and tells the listeners.

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
write wins) or, when identical, counts as a duplicate. Samples of one batch that repeat a key with
different values are conflicts (find_conflicts): the last is stored, the acknowledgement names them.
Late samples are stored in their place.

The grid: a miner whose samples (with its newest stored ones) lie further apart than a scoring
window tolerates is refused (sparse_violations): stored, it could never be scored.

Backfill: a batch whose newest sample is older than `backfill_after_minutes` is a backfill:
listeners are told, so they do not re-score on it. After every batch, outages are derived for the
miners it touched, and the acknowledgement says how many samples stay raw and how many retention
keeps only as hourly rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from server.config import Settings
from server.domain import housekeeping, outages, validation
from server.domain.access import MinerAccess
from server.errors import EventNotFound, FieldViolation, InvalidArgument, MinerNotFound, next_step
from server.hardware import known_model
from server.models.windows import WindowConfig
from server.records import (
    PLAUSIBLE_FAN_RPM,
    PLAUSIBLE_HASHRATE_FACTOR,
    PLAUSIBLE_TEMPERATURE_C,
    BoardReading,
    EventSource,
    FailureEvent,
    FailureMode,
    Miner,
    PlannedState,
    PlannedStateKind,
    SampleConflict,
    WriteResult,
)
from server.store import QUALITY_SENSOR_GLITCH, FleetStore

log = logging.getLogger(__name__)

# Physical bounds beyond any sensor's range: values outside are errors, not data.
BOUNDS = validation.READING_BOUNDS
MAX_FUTURE = timedelta(minutes=10)
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
OLDEST = datetime(2009, 1, 3, tzinfo=UTC)  # nothing mined before the genesis block
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

COLUMN_METRICS = ("hashrate_ths", "temperature_c", "fan_speed_rpm", "power_w")
COLUMN_COUNTERS = ("accepted_shares", "rejected_shares")
IDENTITY_FIELDS = ("serial", "mac", "hardware_model")
TS_MISSING = np.iinfo(np.int64).min
"""The ts_us of a sample sent without a time (a row whose timestamp is unset)."""
MAX_CONFLICT_DETAILS = 100
"""Conflicting keys listed in an acknowledgement (all are counted)."""
SPACING_GAPS = 3
"""Gaps between a miner's samples needed to judge their spacing (one long gap may be an outage)."""
SPACING_LOOKBACK = timedelta(hours=6)
"""How far before a batch its miners' stored samples count towards their spacing."""

# Called after a batch is stored with the miners it touched and whether it was a backfill.
Listener = Callable[[set[str], bool], None]
# Told True when an import stream (IngestMetrics) starts and False when it ends.
ImportListener = Callable[[bool], None]


@dataclass(frozen=True, slots=True)
class ColumnInput:
    """One WriteMetrics batch as columns, before validation: every array has one value per sample (N,).

    The transport builds it once from whatever the request holds. The first `rows` samples came as
    rows (named `samples[i].<field>` in errors), the others as columns (`columns.<field>[j]`). Metrics
    and share counters are float64 with NaN for a missing reading (counters exactly up to 2**53).
    `nan_sent` marks the rows that sent NaN as a value (only the column form reads NaN as missing).
    Boards, per-fan speeds and identity fields come only with rows: None when no sample has them.
    """

    miner_id: np.ndarray  # (N,) object (str)
    ts_us: np.ndarray  # (N,) int64, microseconds since the Unix epoch, UTC; TS_MISSING when unset
    metrics: dict[str, np.ndarray]  # COLUMN_METRICS + COLUMN_COUNTERS -> (N,) float64, NaN = missing
    rows: int = 0
    batch_field: str = "columns"  # the request field named by batch-level errors (empty, too large)
    nan_sent: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> (N,) bool
    boards: list[tuple[BoardReading, ...]] | None = None  # one tuple per sample
    fan_speeds_rpm: list[tuple[float, ...]] | None = None  # one tuple per sample
    identity: dict[str, np.ndarray] | None = None  # IDENTITY_FIELDS -> (N,) object (str, "" = absent)

    def __len__(self) -> int:
        return int(self.miner_id.shape[0])

    def where(self, index: int, name: str) -> str:
        """The request path of sample `index`'s field `name` ("timestamp" names the time either way)."""
        if index < self.rows:
            return f"samples[{index}].{name}"
        return f"columns.{'timestamp_ms' if name == 'timestamp' else name}[{index - self.rows}]"


@dataclass(frozen=True, slots=True)
class ValidColumns:
    """A validated batch, ready for Store.bulk_append_columns."""

    batch: ColumnInput
    ts: np.ndarray  # (N,) datetime64[us], UTC
    quality: np.ndarray  # (N,) uint8: QUALITY_SENSOR_GLITCH where a reading is implausible
    identities: dict[str, Miner]  # miner_id -> what its samples say about the miner


class Ingest:
    """Validates and stores telemetry, failure events and planned states."""

    def __init__(self, store: FleetStore, settings: Settings, access: MinerAccess | None = None) -> None:
        self._store = store
        self._settings = settings
        self._access = access or MinerAccess(store)
        self._listeners: list[Listener] = []
        self._import_listeners: list[ImportListener] = []
        self._recent: dict[str, list[int]] = {}  # miner_id as sent -> newest sample times (us), ascending

    def add_listener(self, listener: Listener, on_import: ImportListener | None = None) -> None:
        self._listeners.append(listener)
        if on_import is not None:
            self._import_listeners.append(on_import)

    @contextlib.contextmanager
    def import_stream(self) -> Iterator[None]:
        """The batches written inside are one import (an IngestMetrics stream): import listeners hear
        its start and its end, so that its re-scoring happens once, when it is over."""
        for listener in self._import_listeners:
            listener(True)
        try:
            yield
        finally:
            for listener in self._import_listeners:
                listener(False)

    async def write(self, batch: ColumnInput) -> WriteResult:
        """Validate and store one batch atomically, derive outages, tell the listeners.

        Bad values are named by their request path; nothing of a bad batch is written.
        """
        valid = validate(batch, now=datetime.now(UTC), max_samples=self._settings.max_batch_samples)
        newest_times = await asyncio.to_thread(self._refuse_sparse, batch)
        conflicts, details = find_conflicts(batch)
        result = await asyncio.to_thread(self._store_valid, valid)
        self._remember(newest_times)
        # The store counts every sample it did not write as a duplicate; conflicts are not.
        result.duplicates -= conflicts
        result.conflicts, result.conflict_details = conflicts, details
        await self._report_retention(result, batch.miner_id, valid.ts)
        touched = result.miner_ids or set(batch.miner_id.tolist())
        await self._after_write(
            touched, oldest=_utc_us(int(batch.ts_us.min())), newest=_utc_us(int(batch.ts_us.max()))
        )
        return result

    async def _after_write(self, touched: set[str], *, oldest: datetime, newest: datetime) -> None:
        """The tail of every stored batch: outages for the touched miners, then the listeners."""
        try:
            await asyncio.to_thread(outages.derive_after_ingest, self._store, self._settings, touched, oldest)
        except Exception:  # noqa: BLE001 - the batch is stored; the periodic scan derives them later
            log.exception("deriving outages after a batch failed; the periodic scan will retry")
        backfill = datetime.now(UTC) - newest > timedelta(minutes=self._settings.backfill_after_minutes)
        for listener in self._listeners:
            listener(touched, backfill)

    async def _report_retention(self, result: WriteResult, miner_ids: np.ndarray, ts: np.ndarray) -> None:
        """Fill in which samples of a stored batch stay raw and which only as hourly roll-ups."""
        newest_possible = datetime.now(UTC) + MAX_FUTURE
        if housekeeping.surely_raw(ts, newest_possible, self._settings):
            hourly = 0  # a live batch: no store query, no thread hop
        else:
            hourly = await asyncio.to_thread(
                housekeeping.retention_report, self._store, self._settings, miner_ids, ts, newest_possible
            )
        result.kept_hourly = hourly
        result.kept_raw = len(miner_ids) - hourly

    def _refuse_sparse(self, batch: ColumnInput) -> dict[str, list[int]]:
        """INVALID_ARGUMENT naming each miner whose samples, with its newest stored ones before the
        batch, are spaced coarser than scoring can use (see sparse_violations); else each miner's newest
        SPACING_GAPS + 1 sample times (us) once the batch is stored, for `_remember` (worker thread).

        The stored times come from `_recent` (what this server wrote), so a live batch costs no query;
        the store is asked only for miners it has not seen since it started, or for a late batch."""
        given, row_miner = np.unique(batch.miner_id, return_inverse=True)
        oldest = np.full(given.shape[0], np.iinfo(np.int64).max, dtype=np.int64)  # (M,) us
        np.minimum.at(oldest, row_miner, batch.ts_us)
        lookback_us = SPACING_LOOKBACK // timedelta(microseconds=1)
        stored: dict[str, list[int]] = {}
        ask: list[int] = []  # miners to read from the store
        for k, miner_id in enumerate(given.tolist()):
            known = self._recent.get(miner_id)
            if known and known[-1] < oldest[k]:
                stored[miner_id] = [t for t in known if t >= oldest[k] - lookback_us]
            else:
                ask.append(k)
        if ask:
            read = self._store.recent_times(
                given[ask], oldest[ask].astype("datetime64[us]"), SPACING_LOOKBACK, limit=SPACING_GAPS + 1
            )
            for miner_id, times in read.items():
                stored[miner_id] = [(t - _EPOCH) // timedelta(microseconds=1) for t in times]
        found = sparse_violations(batch, stored, self._settings.sample_interval_s)
        if found:
            raise InvalidArgument.for_fields(found, reason="SAMPLES_TOO_SPARSE")
        order = np.lexsort((batch.ts_us, row_miner))
        bounds = np.searchsorted(row_miner[order], np.arange(given.shape[0] + 1))
        keep = SPACING_GAPS + 1  # an import's newest few are all `_remember` keeps
        return {
            miner_id: [
                *stored.get(miner_id, ()),
                *batch.ts_us[order[max(bounds[k], bounds[k + 1] - keep) : bounds[k + 1]]].tolist(),
            ]
            for k, miner_id in enumerate(given.tolist())
        }

    def _remember(self, newest_times: dict[str, list[int]]) -> None:
        """Merge a stored batch's sample times into `_recent` (keeping each miner's newest few); merged
        into the entry as it is now, so concurrent batches never drop each other's times."""
        keep = SPACING_GAPS + 1
        for miner_id, times in newest_times.items():
            merged = sorted({*self._recent.get(miner_id, ()), *times})
            self._recent[miner_id] = merged[-keep:]

    def _store_valid(self, valid: ValidColumns) -> WriteResult:
        """Resolve the batch's miners (an identity's serial or MAC before the id), refuse unknown ones
        (auto-registration off) and those outside a scoped token, flag hashrate glitches against each
        miner's nominal hashrate, one bulk append (runs in a worker thread)."""
        batch, identities = valid.batch, valid.identities
        auto_register = self._settings.auto_register_miners
        given, row_miner = np.unique(batch.miner_id, return_inverse=True)  # (M,), (N,) -> index in given
        given_ids = [str(m) for m in given.tolist()]
        keys = set(given_ids)
        for said in identities.values():
            keys.update(k for k in (said.serial, said.mac) if k)
        known = self._store.lookup_miners(sorted(keys))
        scoped = self._access.scoped()
        refused: dict[int, str] = {}  # index in given -> why its samples are refused
        nominal = np.zeros(given.shape[0], dtype=np.float64)  # (M,)
        for k, miner_id in enumerate(given_ids):
            identity = identities.get(miner_id)
            aliases = (identity.serial, identity.mac) if identity else ()
            miner = next((known[a] for a in (*aliases, miner_id) if a in known), None)
            if scoped and not (
                self._access.allows(miner) and self._access.may_claim((*aliases, miner_id), known)
            ):
                # A token scoped to some miners writes only those, and never claims another miner's id,
                # serial or MAC as an alias; others read as unknown.
                refused[k] = f"unknown miner {miner_id!r} for this token"
            elif miner is None and not auto_register:
                register = next_step("FleetService.UpsertMiner", **{"miner.miner_id": miner_id})
                refused[k] = (
                    f"unknown miner {miner_id!r} and auto-registration is off; register it first "
                    f"({register}) or send its known serial or MAC"
                )
            else:
                nominal[k] = (miner.nominal_hashrate_ths if miner else 0.0) or (
                    identity.nominal_hashrate_ths if identity else 0.0
                )
        if refused:
            bad = np.zeros(given.shape[0], dtype=bool)
            bad[list(refused)] = True
            raise InvalidArgument.for_fields(
                [
                    FieldViolation(batch.where(i, "miner_id"), refused[int(row_miner[i])])
                    for i in np.flatnonzero(bad[row_miner]).tolist()
                ],
                reason="INVALID_SAMPLES",
            )
        hashrate = batch.metrics["hashrate_ths"]
        row_nominal = nominal[row_miner]  # (N,)
        with np.errstate(invalid="ignore"):
            glitch = (row_nominal > 0) & (hashrate > PLAUSIBLE_HASHRATE_FACTOR * row_nominal)  # NaN: False
        quality = valid.quality | np.where(glitch, QUALITY_SENSOR_GLITCH, 0).astype(np.uint8)
        return self._store.bulk_append_columns(
            batch.miner_id,
            valid.ts,
            hashrate_ths=batch.metrics["hashrate_ths"],
            temperature_c=batch.metrics["temperature_c"],
            fan_speed_rpm=batch.metrics["fan_speed_rpm"],
            power_w=batch.metrics["power_w"],
            accepted_shares=batch.metrics["accepted_shares"],
            rejected_shares=batch.metrics["rejected_shares"],
            board_readings=batch.boards,
            fan_readings=batch.fan_speeds_rpm,
            quality=quality,  # one flag per row
            auto_register=auto_register,
            identities=identities,
        )

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
            note=validation.note(note),
        )
        # An unrepaired failure gets the repair its telemetry already shows (marked derived).
        silent = timedelta(minutes=self._settings.outage_after_minutes)
        return await asyncio.to_thread(self._store.add_failure, event, silent=silent)

    async def record_repair(self, event_id: str, repaired_at: datetime | None, note: str) -> FailureEvent:
        """Add (or correct) the repair time of a failure recorded earlier; it replaces a derived one."""
        event = await asyncio.to_thread(self._store.get_failure, event_id) if event_id else None
        if event is None:
            raise EventNotFound(event_id)
        try:
            await self._known_miner(event.miner_id)
        except MinerNotFound as exc:  # out of the caller's scope: the event reads as absent
            raise EventNotFound(event_id) from exc
        if event.source == EventSource.DERIVED:
            raise InvalidArgument.for_field(
                "event_id", "is a derived outage; it is closed by the miner's telemetry, not by a repair"
            )
        repaired_at = repaired_at or datetime.now(UTC)
        if repaired_at < event.occurred_at:
            raise InvalidArgument.for_field(
                "repaired_at", f"must not be before the failure's occurred_at {event.occurred_at.isoformat()}"
            )
        if repaired_at > datetime.now(UTC) + MAX_FUTURE:
            raise InvalidArgument.for_field("repaired_at", f"{repaired_at.isoformat()} is in the future")
        stored = await asyncio.to_thread(
            self._store.record_repair, event_id, repaired_at, validation.note(note) or None
        )
        if stored is None:  # deleted meanwhile
            raise EventNotFound(event_id)
        return stored

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
        state = PlannedState(
            uuid.uuid4().hex, miner, PlannedStateKind(kind), start, end, validation.note(note)
        )
        await asyncio.to_thread(self._store.add_planned_state, state)
        return state

    async def _known_miner(self, miner_id: str) -> str:
        return (await self._access.resolve(miner_id)).miner_id  # out of scope reads as absent


def validate(batch: ColumnInput, *, now: datetime, max_samples: int) -> ValidColumns:
    """The batch, checked: valid columns, or INVALID_ARGUMENT listing every bad value by its request
    path (in sample order, then field order). Impossible values refuse the batch; implausible ones
    are kept and flagged QUALITY_SENSOR_GLITCH."""
    n = len(batch)
    where = batch.batch_field
    if n == 0:
        raise InvalidArgument.for_field(where, "the batch is empty; send at least one sample")
    if n > max_samples:
        raise InvalidArgument.for_field(
            where, f"{n} samples exceed the batch limit of {max_samples}; split the batch"
        )
    found: list[tuple[int, int, FieldViolation]] = []  # (sample, field rank, violation), sorted at the end

    def refuse(i: int, rank: int, name: str, description: str) -> None:
        found.append((i, rank, FieldViolation(batch.where(i, name), description)))

    given, row_miner = np.unique(batch.miner_id, return_inverse=True)  # (M,) distinct ids, (N,) -> index
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
            refuse(i, 0, "miner_id", problems[int(row_miner[i])])

    ts_us = batch.ts_us
    future_us = int((now + MAX_FUTURE - _EPOCH) / timedelta(microseconds=1))
    oldest_us = int((OLDEST - _EPOCH) / timedelta(microseconds=1))
    for i in np.flatnonzero(ts_us == TS_MISSING).tolist():
        refuse(i, 1, "timestamp", "is required (UTC)")
    for i in np.flatnonzero(ts_us > future_us).tolist():
        refuse(i, 1, "timestamp", f"{_iso_us(int(ts_us[i]))} is in the future; check the collector's clock")
    for i in np.flatnonzero((ts_us < oldest_us) & (ts_us != TS_MISSING)).tolist():
        refuse(i, 1, "timestamp", "is before 2009-01-03")

    for rank, name in enumerate(COLUMN_METRICS, start=2):
        column = batch.metrics[name]
        low, high = BOUNDS[name]
        infinite = np.isinf(column)
        if name in batch.nan_sent:
            infinite |= batch.nan_sent[name]
        with np.errstate(invalid="ignore"):
            outside = ~infinite & ((column < low) | (column > high))  # NaN (missing) compares False
        for i in np.flatnonzero(infinite).tolist():
            refuse(i, rank, name, f"must be a finite number, got {float(column[i])}")
        for i in np.flatnonzero(outside).tolist():
            refuse(i, rank, name, f"{float(column[i])} is outside the possible range [{low:g}, {high:g}]")
    for rank, name in enumerate(COLUMN_COUNTERS, start=6):
        counter = batch.metrics[name]
        with np.errstate(invalid="ignore"):
            negative = counter < 0  # NaN (missing) compares False
        for i in np.flatnonzero(negative).tolist():
            refuse(i, rank, name, f"must be >= 0 (a cumulative counter), got {int(counter[i])}")
    fan_glitch = np.zeros(n, dtype=bool)
    if batch.fan_speeds_rpm is not None:
        for i, rpms in enumerate(batch.fan_speeds_rpm):
            for fan, rpm in enumerate(rpms):
                if not (math.isfinite(rpm) and 0 <= rpm <= BOUNDS["fan_speed_rpm"][1]):
                    refuse(i, 8, f"fan_speeds_rpm[{fan}]", f"{rpm} is not a possible RPM")
                elif rpm > PLAUSIBLE_FAN_RPM:
                    fan_glitch[i] = True
    if batch.boards is not None:
        for i, readings in enumerate(batch.boards):
            found.extend((i, 8, v) for v in validation.boards(readings, f"samples[{i}]"))
    if batch.identity is not None:
        found.extend((i, 9, v) for i, v in _identity_violations(batch))
    if found:
        found.sort(key=lambda item: (item[0], item[1]))
        raise InvalidArgument.for_fields([v for _, _, v in found], reason="INVALID_SAMPLES")

    low, high = PLAUSIBLE_TEMPERATURE_C
    temperature, fan_rpm = batch.metrics["temperature_c"], batch.metrics["fan_speed_rpm"]
    with np.errstate(invalid="ignore"):
        implausible = (temperature < low) | (temperature > high) | (fan_rpm > PLAUSIBLE_FAN_RPM) | fan_glitch
    return ValidColumns(
        batch=batch,
        ts=ts_us.astype("datetime64[us]"),
        quality=np.where(implausible, QUALITY_SENSOR_GLITCH, 0).astype(np.uint8),
        identities=_identities(batch) if batch.identity is not None else {},
    )


def find_conflicts(batch: ColumnInput) -> tuple[int, list[SampleConflict]]:
    """(how many samples a later sample of the same miner and time in the batch supersedes with
    different values, the first MAX_CONFLICT_DETAILS such keys in request order). The store keeps the
    last sample of a key; identical repeats are duplicates, not conflicts."""
    n = len(batch)
    _, row_miner = np.unique(batch.miner_id, return_inverse=True)
    order = np.lexsort((batch.ts_us, row_miner))  # (N,) stable: a key's samples stay in request order
    miner, ts = row_miner[order], batch.ts_us[order]
    repeat = (miner[1:] == miner[:-1]) & (ts[1:] == ts[:-1])  # (N-1,) sorted k+1 repeats sorted k
    if not repeat.any():
        return 0, []
    starts = np.flatnonzero(np.concatenate(([True], ~repeat)))  # (G,) first sorted position of each key
    sizes = np.diff(np.append(starts, n))
    last = np.repeat(order[starts + sizes - 1], sizes)  # (N,) the stored (last) sample of each key
    superseded = order != last
    differs: dict[str, np.ndarray] = {}  # field -> (N,) bool per sorted position
    for name in (*COLUMN_METRICS, *COLUMN_COUNTERS):
        mine, kept = batch.metrics[name][order], batch.metrics[name][last]
        differs[name] = superseded & ~((mine == kept) | (np.isnan(mine) & np.isnan(kept)))
    for name, readings in (("boards", batch.boards), ("fan_speeds_rpm", batch.fan_speeds_rpm)):
        if readings is not None:
            column = np.zeros(n, dtype=bool)
            for k in np.flatnonzero(superseded).tolist():
                column[k] = readings[int(order[k])] != readings[int(last[k])]
            differs[name] = column
    conflicting = np.logical_or.reduce(list(differs.values()))  # (N,)
    if not conflicting.any():
        return 0, []
    key_of = np.repeat(np.arange(starts.shape[0]), sizes)  # (N,) sorted position -> key
    details: list[tuple[int, SampleConflict]] = []  # (first sample, conflict)
    for key in np.unique(key_of[conflicting]).tolist():
        span = slice(int(starts[key]), int(starts[key] + sizes[key]))
        rows = [int(r) for r, c in zip(order[span], conflicting[span], strict=True) if c]
        rows.append(int(order[span][-1]))
        fields = tuple(name for name, column in differs.items() if column[span].any())
        details.append(
            (
                rows[0],
                SampleConflict(
                    miner_id=str(batch.miner_id[rows[0]]),
                    timestamp=_utc_us(int(batch.ts_us[rows[0]])),
                    samples=tuple(_sample_path(batch, r) for r in rows),
                    fields=fields,
                ),
            )
        )
    details.sort(key=lambda item: item[0])
    return int(conflicting.sum()), [conflict for _, conflict in details[:MAX_CONFLICT_DETAILS]]


def sparse_violations(
    batch: ColumnInput, stored: dict[str, list[int]], interval_s: int
) -> list[FieldViolation]:
    """A violation at the first sample of each miner whose samples (the batch's and its newest stored
    ones before them, `stored`, in microseconds) lie further apart, by their median gap over at least
    SPACING_GAPS gaps, than a scoring window tolerates: with more than `max_missing_fraction` of its
    rows empty no window is ever scored. Fewer gaps say nothing (one long gap may be an outage)."""
    max_gap_s = interval_s / (1.0 - WindowConfig().max_missing_fraction)
    given, first, row_miner = np.unique(batch.miner_id, return_index=True, return_inverse=True)
    stored_miner = [k for k, m in enumerate(given.tolist()) for _ in stored.get(m, ())]
    stored_us = [t for m in given.tolist() for t in stored.get(m, ())]
    miner = np.concatenate((row_miner, np.array(stored_miner, dtype=np.int64)))
    t_us = np.concatenate((batch.ts_us, np.array(stored_us, dtype=np.int64)))
    gaps, medians = _median_gaps(miner, t_us, given.shape[0])
    found: list[tuple[int, FieldViolation]] = []  # (first sample of the miner, violation)
    for k in np.flatnonzero((gaps >= SPACING_GAPS) & (medians > max_gap_s)).tolist():
        found.append(
            (
                int(first[k]),
                FieldViolation(
                    batch.where(int(first[k]), "timestamp"),
                    f"miner {given[k]!r} sends samples {_minutes(medians[k])} apart; scoring needs one every "
                    f"{_minutes(interval_s)} (--sample-interval-s {interval_s}), at most "
                    f"{_minutes(max_gap_s)} apart, or no window holds enough readings: send the raw "
                    "readings, not hourly aggregates",
                ),
            )
        )
    found.sort(key=lambda item: item[0])
    return [violation for _, violation in found]


def _median_gaps(miner: np.ndarray, t_us: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(gaps (m,), median gap in seconds (m,)) between each miner's distinct times; miner (K,) holds
    indices below m, t_us (K,) microseconds."""
    order = np.lexsort((t_us, miner))
    miner, t_us = miner[order], t_us[order]
    step = t_us[1:] - t_us[:-1]
    own = (miner[1:] == miner[:-1]) & (step > 0)  # repeats of a time are not gaps
    step, owner = step[own], miner[1:][own]
    count = np.bincount(owner, minlength=m)
    step = step[np.lexsort((step, owner))]  # each miner's gaps, ascending, miners in order
    start = np.concatenate(([0], np.cumsum(count)[:-1]))
    median = np.zeros(m, dtype=np.float64)
    has = count > 0
    low, high = start[has] + (count[has] - 1) // 2, start[has] + count[has] // 2
    median[has] = (step[low] + step[high]) / 2e6
    return count, median


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _sample_path(batch: ColumnInput, index: int) -> str:
    """Where sample `index` was sent: "samples[i]" or "columns.timestamp_ms[j]"."""
    return f"samples[{index}]" if index < batch.rows else batch.where(index, "timestamp")


def _utc_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _iso_us(us: int) -> str:
    """A time in epoch microseconds as ISO 8601 (UTC); beyond datetime's range, the milliseconds."""
    try:
        return _utc_us(us).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"{us // 1000} ms since the epoch"


def _identities(batch: ColumnInput) -> dict[str, Miner]:
    """miner_id -> what its samples in the batch say about the miner: the first serial, MAC and
    hardware model given, with the catalogue's make and nameplate figures when it knows the model."""
    assert batch.identity is not None
    columns = [batch.identity[name].tolist() for name in IDENTITY_FIELDS]
    seen: dict[str, dict[str, str]] = {}
    for miner_id, *values in zip(batch.miner_id.tolist(), *columns, strict=True):
        if any(values):
            fields = seen.setdefault(miner_id, dict.fromkeys(IDENTITY_FIELDS, ""))
            for name, value in zip(IDENTITY_FIELDS, values, strict=True):
                fields[name] = fields[name] or value.strip()
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


def _identity_violations(batch: ColumnInput) -> list[tuple[int, FieldViolation]]:
    """(sample, violation) for a malformed serial or MAC, or one that contradicts an earlier sample
    of the same miner_id."""
    assert batch.identity is not None
    serials, macs = batch.identity["serial"].tolist(), batch.identity["mac"].tolist()
    first_seen: dict[str, int] = {}  # miner_id -> its first sample with a serial or MAC
    found: list[tuple[int, FieldViolation]] = []
    models = batch.identity["hardware_model"].tolist()
    for index, miner_id in enumerate(batch.miner_id.tolist()):
        serial, mac = serials[index], macs[index]
        overlong = [
            (index, v)
            for name, value in (("hardware_model", models[index]), ("serial", serial), ("mac", mac))
            if (v := validation.text(value, batch.where(index, name))) is not None
        ]
        if overlong:
            found.extend(overlong)
            continue
        if serial:
            try:
                validation.miner_id(serial.strip(), batch.where(index, "serial"))
            except InvalidArgument as exc:
                found.extend((index, v) for v in exc.violations)
        if mac and not _MAC.match(mac.strip()):
            found.append(
                (
                    index,
                    FieldViolation(
                        batch.where(index, "mac"), f"{mac[:64]!r} is not a MAC address like aa:bb:cc:dd:ee:ff"
                    ),
                )
            )
        if not (serial or mac):
            continue
        first = first_seen.setdefault(miner_id, index)
        for name, values in (("serial", serials), ("mac", macs)):
            mine, theirs = values[index].strip().lower(), values[first].strip().lower()
            if mine and theirs and mine.replace("-", ":") != theirs.replace("-", ":"):
                found.append(
                    (
                        index,
                        FieldViolation(
                            batch.where(index, name),
                            f"differs from {batch.where(first, name)} for the same miner_id {miner_id!r}; "
                            "one id cannot name two miners in one batch",
                        ),
                    )
                )
    return found
