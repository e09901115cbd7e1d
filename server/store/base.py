"""What both engines' stores share: the FleetStore methods written once over a SqlCursor.

`SqlStore` holds the engine-neutral half of a store: alias resolution, staging sample batches
(samples.stage_*), the facade of every shared module (miners, events, outages, risk history, jobs),
and the order of calls inside each transaction. An engine subclass (DuckDBStore, PostgresStore)
supplies cursors (`_reader`, `_writer`: one transaction, rolled back on error) and the statements
that differ between engines (the `_`-prefixed hooks at the end: sample writes and reads, the feature
query, the telemetry history, retention).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import numpy as np

from server.errors import MinerNotFound
from server.records import (
    BoardReading,
    FailureEvent,
    Miner,
    MinerCondition,
    MinerSeries,
    PlannedState,
    Sample,
    StoreCounts,
    WriteResult,
)
from server.store import events, history, jobs, miners, outages, samples
from server.store.sql import SqlCursor, fetch_one

_Record = TypeVar("_Record", FailureEvent, PlannedState)
CursorT = TypeVar("CursorT", bound=SqlCursor)


def utc(ts: datetime | None) -> datetime | None:
    """A naive UTC time from the database as an aware one."""
    return ts.replace(tzinfo=UTC) if ts is not None else None


class SqlStore(ABC, Generic[CursorT]):
    """The shared half of a store (see the module docstring)."""

    _sample_interval_s: int

    @abstractmethod
    def _reader(self) -> AbstractContextManager[CursorT]:
        """A cursor for reads; StoreClosed when the store is closed."""

    @abstractmethod
    def _writer(self) -> AbstractContextManager[CursorT]:
        """A cursor inside one write transaction (serialised with other writers)."""

    @property
    def sample_interval_s(self) -> int:
        return self._sample_interval_s

    def upsert_miners(self, records: Sequence[Miner]) -> list[str]:
        """Register or update miners (resolution rules in server/store/miners.py); returns miner_ids."""
        with self._writer() as cur:
            return miners.upsert_miners(cur, records)

    def get_miner(self, miner_id: str) -> Miner | None:
        """The miner known by this id or alias (an IP, serial or MAC it was seen under), else None."""
        with self._reader() as cur:
            return miners.get_miner(cur, miner_id)

    def list_miners(self) -> list[Miner]:
        with self._reader() as cur:
            return miners.list_miners(cur)

    def miner_stats(self) -> dict[str, tuple[int, datetime | None]]:
        """miner_id -> (sample count, newest sample time) for every miner."""
        with self._reader() as cur:
            return miners.miner_stats(cur)

    def lookup_miners(self, aliases: Sequence[str]) -> dict[str, Miner]:
        """Each known alias (id, IP, serial or MAC) -> its miner's record, in one query; unknown ones
        are left out."""
        with self._reader() as cur:
            return miners.lookup(cur, aliases)

    def write_samples(
        self,
        batch: Sequence[Sample],
        *,
        auto_register: bool = True,
        default_hardware_model: str = "unknown",
        identities: Mapping[str, Miner] | None = None,
    ) -> WriteResult:
        """Write samples in one transaction; last write wins on (miner_id, ts), see samples.py.

        identities optionally maps a sample's miner_id to what the samples said about the miner
        (serial, MAC, hardware model, nominal values): the samples resolve by serial, then MAC, then
        miner_id, and the new ids become aliases (see miners.resolve_batch). Unknown miners are
        registered (from their identity, else with default_hardware_model) when auto_register, else
        the batch raises MinerNotFound and nothing is written.
        """
        if not batch:
            return WriteResult()
        return self._write(
            samples.stage_samples(batch), auto_register, default_hardware_model, identities or {}
        )

    def bulk_append_columns(
        self,
        miner_id: np.ndarray,
        ts: np.ndarray,
        *,
        hashrate_ths: np.ndarray,
        temperature_c: np.ndarray,
        fan_speed_rpm: np.ndarray,
        power_w: np.ndarray,
        accepted_shares: np.ndarray,
        rejected_shares: np.ndarray,
        board_hashrate_ths: np.ndarray | None = None,
        board_temperature_c: np.ndarray | None = None,
        fan_speeds_rpm: np.ndarray | None = None,
        board_readings: Sequence[Sequence[BoardReading]] | None = None,
        fan_readings: Sequence[Sequence[float]] | None = None,
        quality: int | np.ndarray = 0,  # one flag for the batch, or one per row
        auto_register: bool = True,
        default_hardware_model: str = "unknown",
        identities: Mapping[str, Miner] | None = None,
    ) -> WriteResult:
        """Column-oriented write, same semantics as write_samples, much faster.

        All arrays have N rows: miner_id (N,) str, ts (N,) datetime64 UTC, metrics (N,) float with NaN
        for missing (share counters are cumulative, as float or int); optional per-board (N, B) and
        per-fan (N, K) float arrays, or ragged per-sample board_readings and fan_readings (N lists).
        quality is OR-ed into every row (e.g. QUALITY_SIMULATED). identities as in write_samples.
        """
        batch = samples.stage_columns(
            np.asarray(miner_id),
            np.asarray(ts),
            {
                "hashrate_ths": hashrate_ths,
                "temperature_c": temperature_c,
                "fan_speed_rpm": fan_speed_rpm,
                "power_w": power_w,
                "accepted_shares": accepted_shares,
                "rejected_shares": rejected_shares,
            },
            quality=quality,
            board_hashrate_ths=board_hashrate_ths,
            board_temperature_c=board_temperature_c,
            fan_speeds_rpm=fan_speeds_rpm,
            board_readings=board_readings,
            fan_readings=fan_readings,
        )
        if len(batch) == 0:
            return WriteResult()
        return self._write(batch, auto_register, default_hardware_model, identities)

    def _write(
        self,
        batch: samples.StagedBatch,
        auto_register: bool,
        default_model: str,
        identities: Mapping[str, Miner] | None = None,
    ) -> WriteResult:
        samples.mark_partial(batch)
        result = WriteResult()

        def resolve(given: list[str]) -> dict[str, str]:
            resolved, result.miners_registered = miners.resolve_batch(
                cur, given, identities or {}, auto_register=auto_register, default_model=default_model
            )
            result.miner_ids = set(resolved.values())
            return resolved

        with self._writer() as cur:
            result.written, result.duplicates = self._write_staged(cur, batch, resolve)
        return result

    def read_samples(
        self,
        miner_id: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> list[Sample]:
        """Stored samples of a miner in [start, end), oldest first; only the newest `limit` if given."""
        with self._reader() as cur:
            return self._read_samples(cur, self._resolve(cur, miner_id), start, end, limit)

    def counts(self) -> StoreCounts:
        with self._reader() as cur:
            row = fetch_one(
                cur,
                """
                SELECT (SELECT count(*) FROM miners), count(*), (SELECT count(*) FROM failure_events),
                    min(ts), max(ts)
                FROM samples
                """,
            )
        assert row is not None
        n_miners, n_samples, n_failures, data_start, data_end = row
        return StoreCounts(
            miners=int(n_miners),
            samples=int(n_samples),
            failure_events=int(n_failures),
            data_start=utc(data_start),
            data_end=utc(data_end),
        )

    def load_series(
        self,
        miner_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> dict[str, MinerSeries]:
        """Feature series (see features.py) in [start, end) for the given miners, or every miner.

        One entry per miner, keyed by its miner_id (an alias given resolves to it); a miner with no
        sample in the range gets an empty series. Unknown ids raise MinerNotFound.
        """
        with self._reader() as cur:
            if miner_ids is None:
                wanted = [m.miner_id for m in miners.list_miners(cur)]
            else:
                wanted = list(dict.fromkeys(self._resolve(cur, m) for m in miner_ids))
            return self._load_series(cur, wanted, start, end)

    def recent_series(self, miner_id: str, n_samples: int) -> MinerSeries:
        """The last n_samples grid rows ending at the miner's newest sample (fewer when its history is
        shorter; empty when it has none)."""
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        with self._reader() as cur:
            resolved = self._resolve(cur, miner_id)
            row = fetch_one(cur, "SELECT max(ts) FROM samples WHERE miner_id = ?", [resolved])
            newest = row[0] if row else None
            if newest is None:
                return self._load_series(cur, [resolved], None, None)[resolved]
            interval = self._sample_interval_s
            newest_bucket = int(newest.replace(tzinfo=UTC).timestamp()) // interval * interval
            start = datetime.fromtimestamp(newest_bucket - (n_samples - 1) * interval, UTC)
            end = datetime.fromtimestamp(newest_bucket + interval, UTC)
            return self._load_series(cur, [resolved], start, end)[resolved]

    def add_failure(self, event: FailureEvent, *, silent: timedelta | None = None) -> FailureEvent:
        """Write one failure event (see add_failures); returns it as stored."""
        self.add_failures([event], silent=silent)
        stored = self.get_failure(event.event_id)
        assert stored is not None
        return stored

    def add_failures(self, records: Sequence[FailureEvent], *, silent: timedelta | None = None) -> None:
        """Write failure events in one transaction; the same event_id replaces. With `silent`, an
        unrepaired one gets the repair its telemetry shows (outages.derive_repairs). Then the derived
        outages they supersede are deleted, in the same transaction (outages.superseded_sql)."""
        with self._writer() as cur:
            resolved = [_with_miner(e, self._resolve(cur, e.miner_id)) for e in records]
            events.add_failures(cur, resolved)
            miner_ids = sorted({e.miner_id for e in resolved})
            if silent is not None:
                outages.derive_repairs(cur, miner_ids, silent)
            outages.drop_superseded(cur, miner_ids)

    def miner_conditions(self, last_seen: dict[str, datetime] | None = None) -> dict[str, MinerCondition]:
        """miner_id -> its newest sample, open failure, open outage and last repair (events.py)."""
        with self._reader() as cur:
            return events.miner_conditions(cur, last_seen)

    def get_failure(self, event_id: str) -> FailureEvent | None:
        with self._reader() as cur:
            return events.get_failure(cur, event_id)

    def record_repair(self, event_id: str, repaired_at: datetime, note: str | None) -> FailureEvent | None:
        """Set a failure's repair time (a recorded repair, replacing a derived one); None when the
        event does not exist."""
        with self._writer() as cur:
            if events.get_failure(cur, event_id) is None:
                return None
            events.set_repair(cur, event_id, repaired_at, note)
            return events.get_failure(cur, event_id)

    def derive_repairs(self, miner_ids: Sequence[str], silent: timedelta) -> int:
        """Give these (resolved) miners' unrepaired recorded failures the repair their telemetry
        shows (see outages.derive_repairs); returns how many."""
        with self._writer() as cur:
            return outages.derive_repairs(cur, miner_ids, silent)

    def list_failures(self, miner_id: str | None = None, limit: int = 100) -> list[FailureEvent]:
        """Failure events, newest first."""
        with self._reader() as cur:
            resolved = self._resolve(cur, miner_id) if miner_id is not None else None
            return events.list_failures(cur, resolved, limit)

    def add_planned_state(self, state: PlannedState) -> None:
        self.add_planned_states([state])

    def add_planned_states(self, records: Sequence[PlannedState]) -> None:
        """Write planned states in one transaction, deleting the derived outages they supersede."""
        with self._writer() as cur:
            resolved = [_with_miner(s, self._resolve(cur, s.miner_id)) for s in records]
            events.add_planned_states(cur, resolved)
            outages.drop_superseded(cur, sorted({s.miner_id for s in resolved}))

    def list_planned_states(self, miner_id: str | None = None) -> list[PlannedState]:
        """Planned states, oldest start first."""
        with self._reader() as cur:
            resolved = self._resolve(cur, miner_id) if miner_id is not None else None
            return events.list_planned_states(cur, resolved)

    def add_feedback(
        self,
        miner_id: str,
        verdict: int,
        model_version: str = "",
        note: str = "",
        recorded_at: datetime | None = None,
    ) -> str:
        """Record an operator's verdict on a prediction; returns the feedback id."""
        with self._writer() as cur:
            return events.add_feedback(
                cur,
                self._resolve(cur, miner_id),
                verdict,
                model_version,
                note,
                recorded_at or datetime.now(UTC),
            )

    def list_feedback(self, miner_id: str | None = None, limit: int = 100) -> list[dict[str, object]]:
        """Feedback rows as dicts, newest first."""
        with self._reader() as cur:
            resolved = self._resolve(cur, miner_id) if miner_id is not None else None
            return events.list_feedback(cur, resolved, limit)

    def sync_derived_outages(
        self,
        miner_ids: Sequence[str] | None,
        since: datetime,
        min_duration: timedelta,
        *,
        open_silence: bool = True,
    ) -> outages.OutageSync:
        """Derive outage events from the samples of the given miners (every miner for None) from
        `since` on and reconcile them with the stored derived outages, in one transaction; the
        definition is in outages.py. Running it again changes nothing."""
        with self._writer() as cur:
            if miner_ids is None:
                wanted = [m.miner_id for m in miners.list_miners(cur)]
            else:
                wanted = sorted(set(miners.resolve_many(cur, miner_ids).values()))
            return outages.sync_derived_outages(
                cur, wanted, since, min_duration, self._sample_interval_s, open_silence=open_silence
            )

    def newest_sample(self) -> datetime | None:
        """The newest sample time of the whole fleet (UTC), or None when there is none."""
        with self._reader() as cur:
            return outages.newest_sample(cur)

    def roll_up_samples(self, retention: timedelta) -> tuple[int, int]:
        """Fold each miner's raw samples older than its newest sample minus `retention` (floored to
        the hour) into samples_hourly and delete them, in one transaction; returns (hourly rows
        written, raw samples deleted)."""
        with self._writer() as cur:
            return self._roll_up(cur, retention)

    def count_past_horizon(self, aliases: np.ndarray, ts: np.ndarray, retention: timedelta) -> int:
        """How many of these stored samples (miner alias and naive-UTC time per sample) the next
        retention pass keeps only as hourly rows (see samples.count_past_horizon)."""
        with self._reader() as cur:
            return self._count_past_horizon(cur, aliases, ts, retention)

    def recent_times(
        self, aliases: np.ndarray, until: np.ndarray, lookback: timedelta, limit: int
    ) -> dict[str, list[datetime]]:
        """alias -> the times of its newest `limit` stored samples in the lookback before `until`,
        oldest first (see samples.recent_times; the SQL runs on both engines)."""
        with self._reader() as cur:
            return samples.recent_times(cur, aliases, until, lookback, limit)

    def read_hourly(self, miner_id: str) -> list[dict[str, object]]:
        """A miner's hourly roll-up rows (see samples.roll_up) as dicts, oldest hour first."""
        with self._reader() as cur:
            return self._read_hourly(cur, self._resolve(cur, miner_id))

    def write_risk_points(self, points: Sequence[history.RiskPoint]) -> int:
        """Store risk points in one transaction (the same (miner, window end, version) replaces)."""
        if not points:
            return 0
        with self._writer() as cur:
            return history.write_risk_points(cur, points)

    def read_risk_points(self, miner_id: str, start: datetime, end: datetime) -> list[history.RiskPoint]:
        """A miner's risk points with start <= window end < end, oldest first."""
        with self._reader() as cur:
            return history.read_risk_points(cur, self._resolve(cur, miner_id), start, end)

    def prune_risk_points(self, before: datetime) -> int:
        """Delete risk points whose window ended before `before`; returns how many."""
        with self._writer() as cur:
            return history.prune_risk_points(cur, before)

    def miner_newest_sample(self, miner_id: str) -> datetime | None:
        """The time of a miner's newest raw sample (UTC), or None when it has none."""
        with self._reader() as cur:
            row = fetch_one(
                cur, "SELECT max(ts) FROM samples WHERE miner_id = ?", [self._resolve(cur, miner_id)]
            )
        return utc(row[0]) if row else None

    def read_telemetry(
        self, miner_id: str, start: datetime, end: datetime, step_s: int
    ) -> history.TelemetryRows:
        """A miner's raw readings and features per step in [start, end), one query (see history.py)."""
        with self._reader() as cur:
            resolved = self._resolve(cur, miner_id)
            return self._read_telemetry(cur, resolved, start, end, step_s)

    def save_job(self, job_id: str, record: dict[str, Any]) -> None:
        """Insert or replace a job record (a JSON-able dict with kind, state, created_at, request_id)."""
        with self._writer() as cur:
            jobs.save_job(cur, job_id, record)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self._reader() as cur:
            return jobs.get_job(cur, job_id)

    def list_jobs(self, kind: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Job records, newest created first."""
        with self._reader() as cur:
            return jobs.list_jobs(cur, kind, limit)

    def find_job_by_request_id(self, request_id: str) -> dict[str, Any] | None:
        with self._reader() as cur:
            return jobs.find_job_by_request_id(cur, request_id)

    def _resolve(self, cur: SqlCursor, miner_id: str) -> str:
        resolved = miners.resolve_many(cur, [miner_id]).get(miner_id)
        if resolved is None:
            raise MinerNotFound(miner_id)
        return resolved

    # ---- engine hooks ----------------------------------------------------------------------------

    @abstractmethod
    def _write_staged(
        self, cur: CursorT, batch: samples.StagedBatch, resolve: Callable[[list[str]], dict[str, str]]
    ) -> tuple[int, int]:
        """Upsert a staged batch (semantics in samples.py); returns (written, duplicates)."""

    @abstractmethod
    def _read_samples(
        self, cur: CursorT, miner_id: str, start: datetime | None, end: datetime | None, limit: int | None
    ) -> list[Sample]: ...

    @abstractmethod
    def _load_series(
        self, cur: CursorT, miner_ids: Sequence[str], start: datetime | None, end: datetime | None
    ) -> dict[str, MinerSeries]:
        """The feature query (features.py) for resolved miners."""

    @abstractmethod
    def _read_telemetry(
        self, cur: CursorT, miner_id: str, start: datetime, end: datetime, step_s: int
    ) -> history.TelemetryRows: ...

    @abstractmethod
    def _roll_up(self, cur: CursorT, retention: timedelta) -> tuple[int, int]: ...

    @abstractmethod
    def _count_past_horizon(
        self, cur: CursorT, aliases: np.ndarray, ts: np.ndarray, retention: timedelta
    ) -> int: ...

    @abstractmethod
    def _read_hourly(self, cur: CursorT, miner_id: str) -> list[dict[str, object]]: ...


def _with_miner(record: _Record, miner_id: str) -> _Record:
    """A copy of a frozen record with its miner_id resolved."""
    return replace(record, miner_id=miner_id) if record.miner_id != miner_id else record
