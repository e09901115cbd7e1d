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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np

from server.errors import InvalidArgument
from server.records import (
    FailureEvent,
    MinerSeries,
    PlannedState,
    Sample,
)
from server.store import features, history, samples
from server.store.base import SqlStore
from server.store.errors import StoreClosed, StoreLocked, StoreSchemaTooNew
from server.store.migrations import SchemaTooNew, apply_migrations, current_version

_Record = TypeVar("_Record", FailureEvent, PlannedState)

__all__ = ["DuckDBStore", "Store", "StoreClosed", "StoreLocked", "StoreSchemaTooNew"]


_CLOSE_WAIT_S = 30.0
"""Longest close() waits for in-flight reads to finish."""


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _utc(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None else None


class DuckDBStore(SqlStore[duckdb.DuckDBPyConnection]):
    """Embedded DuckDB store (implements FleetStore); create it with DuckDBStore.open(path)."""

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
    def open(cls, path: Path, *, sample_interval_s: int = 300) -> DuckDBStore:
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
    def description(self) -> str:
        return str(self._path)

    def size_bytes(self) -> int:
        """The database file plus its write-ahead log."""
        files = (self._path, self._path.with_name(self._path.name + ".wal"))
        return sum(p.stat().st_size for p in files if p.exists())

    def __enter__(self) -> DuckDBStore:
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

    # ---- samples ---------------------------------------------------------------------------------

    # ---- features --------------------------------------------------------------------------------

    # ---- failure events, planned states, feedback -------------------------------------------------

    # ---- retention -------------------------------------------------------------------------------

    # ---- history ---------------------------------------------------------------------------------

    # ---- training jobs ---------------------------------------------------------------------------

    # ---- engine hooks ----------------------------------------------------------------------------

    def _write_staged(
        self,
        cur: duckdb.DuckDBPyConnection,
        batch: samples.StagedBatch,
        resolve: Callable[[list[str]], dict[str, str]],
    ) -> tuple[int, int]:
        return samples.write_staged(cur, batch, resolve)

    def _read_samples(
        self,
        cur: duckdb.DuckDBPyConnection,
        miner_id: str,
        start: datetime | None,
        end: datetime | None,
        limit: int | None,
    ) -> list[Sample]:
        return samples.read_samples(cur, miner_id, start, end, limit)

    def _load_series(
        self,
        cur: duckdb.DuckDBPyConnection,
        miner_ids: Sequence[str],
        start: datetime | None,
        end: datetime | None,
    ) -> dict[str, MinerSeries]:
        return features.load_series(cur, miner_ids, start, end, self._sample_interval_s)

    def _read_telemetry(
        self, cur: duckdb.DuckDBPyConnection, miner_id: str, start: datetime, end: datetime, step_s: int
    ) -> history.TelemetryRows:
        return history.read_telemetry(cur, miner_id, start, end, step_s, self._sample_interval_s)

    def _roll_up(self, cur: duckdb.DuckDBPyConnection, retention: timedelta) -> tuple[int, int]:
        return samples.roll_up(cur, retention)

    def _count_past_horizon(
        self, cur: duckdb.DuckDBPyConnection, aliases: np.ndarray, ts: np.ndarray, retention: timedelta
    ) -> int:
        return samples.count_past_horizon(cur, aliases, ts, retention)

    def _read_hourly(self, cur: duckdb.DuckDBPyConnection, miner_id: str) -> list[dict[str, object]]:
        return samples.read_hourly(cur, miner_id)


Store = DuckDBStore
"""The embedded default store, by its old name (tools and tests open files with Store.open)."""
