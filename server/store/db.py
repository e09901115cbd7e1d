"""The DuckDB store: one embedded database file holding miners, telemetry, events and training jobs.

`Store` is synchronous and thread-safe. It holds one DuckDB connection; every call works on its own
`cursor()` (DuckDB connections are not safe to share between threads, cursors of one connection are),
and writes are serialised by a lock and run in one transaction each, so a batch is written whole or
not at all. DuckDB's write-ahead log makes a committed transaction survive a crash. DuckDB allows one
process to open a file for writing: a second process gets StoreLocked.

Miner ids given to any method may be aliases (an old IP, the serial, the MAC); results carry the
miner's own miner_id.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np

from server.errors import FailedPrecondition, InvalidArgument, MinerNotFound, Unavailable
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
from server.store import events, features, history, jobs, miners, outages, samples
from server.store.migrations import SchemaTooNew, apply_migrations, current_version
from server.store.sql import fetch_one

_Record = TypeVar("_Record", FailureEvent, PlannedState)


_CLOSE_WAIT_S = 30.0
"""Longest close() waits for in-flight reads to finish."""


class StoreLocked(Unavailable):
    """Another process holds the database file open."""

    reason = "STORE_LOCKED"


class StoreClosed(FailedPrecondition):
    """The store was closed (the server is shutting down)."""

    reason = "STORE_CLOSED"


class StoreSchemaTooNew(FailedPrecondition):
    """The database file was written by a newer server."""

    reason = "STORE_SCHEMA_TOO_NEW"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _utc(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None else None


class Store:
    """Embedded DuckDB store; create it with Store.open(path)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, path: Path, sample_interval_s: int) -> None:
        self._conn: duckdb.DuckDBPyConnection | None = conn
        self._path = path
        self._sample_interval_s = sample_interval_s
        self._write_lock = threading.RLock()
        # In-flight cursors: close() waits for them (closing a connection a cursor still uses fails).
        self._cursors = threading.Condition()
        self._open_cursors = 0
        self._closing = False

    # ---- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, sample_interval_s: int = 300) -> Store:
        """Open (creating it and its parent folder if needed) and migrate the database at path."""
        if sample_interval_s < 1:
            raise ValueError(f"sample_interval_s must be >= 1, got {sample_interval_s}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLocked(
                    f"the store file {str(path)!r} is held open by another process; stop that process "
                    "or point this server at another data_dir (MFH_DATA_DIR)",
                    metadata={"path": str(path)},
                ) from exc
            raise
        try:
            apply_migrations(conn)
        except SchemaTooNew as exc:
            conn.close()
            raise StoreSchemaTooNew(
                f"the store file {str(path)!r}: {exc}; upgrade the server or use another data_dir"
            ) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, sample_interval_s)

    def close(self) -> None:
        """Checkpoint and close; later calls raise StoreClosed. Closing twice is harmless."""
        with self._write_lock:
            with self._cursors:
                if self._conn is None:
                    return
                self._closing = True  # new readers get StoreClosed from here on
                self._cursors.wait_for(lambda: self._open_cursors == 0, timeout=_CLOSE_WAIT_S)
                conn, self._conn = self._conn, None
            conn.close()

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def sample_interval_s(self) -> int:
        return self._sample_interval_s

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- cursors and error translation ------------------------------------------------------------

    @contextmanager
    def _reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._cursors:
            conn = self._conn
            if conn is None or self._closing:
                raise StoreClosed("the store is closed; the server is shutting down")
            self._open_cursors += 1
        try:
            with conn.cursor() as cur:
                yield cur
        except duckdb.ConnectionException as exc:
            raise StoreClosed("the store is closed; the server is shutting down") from exc
        except (duckdb.ConstraintException, duckdb.ConversionException) as exc:
            raise InvalidArgument(f"the store rejected the data: {_first_line(exc)}") from exc
        finally:
            with self._cursors:
                self._open_cursors -= 1
                self._cursors.notify_all()

    @contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside one transaction, holding the write lock; rolled back on any error."""
        with self._write_lock, self._reader() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _resolve(self, cur: duckdb.DuckDBPyConnection, miner_id: str) -> str:
        resolved = miners.resolve_many(cur, [miner_id]).get(miner_id)
        if resolved is None:
            raise MinerNotFound(miner_id)
        return resolved

    def schema_version(self) -> int:
        with self._reader() as cur:
            return current_version(cur)

    def copy_to(self, target: Path) -> None:
        """A consistent copy of the database file (a backup), taken while the store serves: under the
        write lock (no transaction commits meanwhile) the log is checkpointed into the file, which is
        then copied. Readers go on; writers wait for the copy."""
        with self._write_lock, self._reader() as cur:
            cur.execute("CHECKPOINT")
            shutil.copyfile(self._path, target)
        os.chmod(target, 0o600)

    def checkpoint(self) -> None:
        """Merge the write-ahead log into the database file (after a large seed)."""
        with self._write_lock, self._reader() as cur:
            cur.execute("CHECKPOINT")

    # ---- miners ----------------------------------------------------------------------------------

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

    # ---- samples ---------------------------------------------------------------------------------

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
            result.written, result.duplicates = samples.write_staged(cur, batch, resolve)
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
            return samples.read_samples(cur, self._resolve(cur, miner_id), start, end, limit)

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
            data_start=_utc(data_start),
            data_end=_utc(data_end),
        )

    # ---- features --------------------------------------------------------------------------------

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
            return features.load_series(cur, wanted, start, end, self._sample_interval_s)

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
                return features.load_series(cur, [resolved], None, None, self._sample_interval_s)[resolved]
            interval = self._sample_interval_s
            newest_bucket = int(newest.replace(tzinfo=UTC).timestamp()) // interval * interval
            start = datetime.fromtimestamp(newest_bucket - (n_samples - 1) * interval, UTC)
            end = datetime.fromtimestamp(newest_bucket + interval, UTC)
            return features.load_series(cur, [resolved], start, end, interval)[resolved]

    # ---- failure events, planned states, feedback -------------------------------------------------

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

    # ---- retention -------------------------------------------------------------------------------

    def roll_up_samples(self, retention: timedelta) -> tuple[int, int]:
        """Fold each miner's raw samples older than its newest sample minus `retention` (floored to
        the hour) into samples_hourly and delete them, in one transaction; returns (hourly rows
        written, raw samples deleted)."""
        with self._writer() as cur:
            return samples.roll_up(cur, retention)

    def count_past_horizon(self, aliases: np.ndarray, ts: np.ndarray, retention: timedelta) -> int:
        """How many of these stored samples (miner alias and naive-UTC time per sample) the next
        retention pass keeps only as hourly rows (see samples.count_past_horizon)."""
        with self._reader() as cur:
            return samples.count_past_horizon(cur, aliases, ts, retention)

    def recent_times(
        self, aliases: np.ndarray, until: np.ndarray, lookback: timedelta, limit: int
    ) -> dict[str, list[datetime]]:
        """alias -> the times of its newest `limit` stored samples in the lookback before `until`,
        oldest first (see samples.recent_times)."""
        with self._reader() as cur:
            return samples.recent_times(cur, aliases, until, lookback, limit)

    def read_hourly(self, miner_id: str) -> list[dict[str, object]]:
        """A miner's hourly roll-up rows (see samples.roll_up) as dicts, oldest hour first."""
        with self._reader() as cur:
            return samples.read_hourly(cur, self._resolve(cur, miner_id))

    # ---- history ---------------------------------------------------------------------------------

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
        return _utc(row[0]) if row else None

    def read_telemetry(
        self, miner_id: str, start: datetime, end: datetime, step_s: int
    ) -> history.TelemetryRows:
        """A miner's raw readings and features per step in [start, end), one query (see history.py)."""
        with self._reader() as cur:
            resolved = self._resolve(cur, miner_id)
            return history.read_telemetry(cur, resolved, start, end, step_s, self._sample_interval_s)

    # ---- training jobs ---------------------------------------------------------------------------

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


def _with_miner(record: _Record, miner_id: str) -> _Record:
    """A copy of a frozen record with its miner_id resolved."""
    return replace(record, miner_id=miner_id) if record.miner_id != miner_id else record
