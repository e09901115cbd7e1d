"""The PostgreSQL store: FleetStore on a shared PostgreSQL database (psycopg 3 and its pool).

`PostgresStore` is synchronous and thread-safe: each call borrows a connection from a pool and runs
in one transaction (reads too: the temporary tables of a read live until its end). Writes take a
transaction-level advisory lock first, so writes are serialised as on DuckDB, across every process
that uses the database (the alias and miner registration rules read, then write). Errors: bad data
(constraint, data errors) -> InvalidArgument; the database unreachable -> Unavailable; the store
closed -> StoreClosed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from server.errors import FailedPrecondition, InvalidArgument, Unavailable
from server.records import Miner, MinerSeries, Sample, WriteResult
from server.store import history
from server.store import samples as shared_samples
from server.store.base import SqlStore
from server.store.errors import StoreClosed, StoreSchemaTooNew
from server.store.migrations import SchemaTooNew
from server.store.postgres import features, rows_features, samples
from server.store.postgres.cursor import PgCursor
from server.store.postgres.migrations import apply_migrations, current_version

log = logging.getLogger(__name__)

_CLOSE_WAIT_S = 30.0
"""Longest close() waits for calls in flight."""
WRITE_LOCK = 7_318_002
"""Advisory-lock key every write transaction holds (see the module docstring)."""
PARTITION_LOCK = 7_318_003
"""Advisory-lock key held while creating partitions."""


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    params.pop("password", None)
    host, port, db, user = (params.get(k, "") for k in ("host", "port", "dbname", "user"))
    return f"postgresql://{user}{'@' if user else ''}{host}{':' if port else ''}{port}/{db}"


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()


class PostgresStore(SqlStore[PgCursor]):
    """FleetStore on PostgreSQL; create it with PostgresStore.open(url)."""

    def __init__(self, pool: psycopg_pool.ConnectionPool[Any], url: str, sample_interval_s: int) -> None:
        self._pool: psycopg_pool.ConnectionPool[Any] | None = pool
        self._url = url
        self._sample_interval_s = sample_interval_s
        self._partitions: set[str] = set()
        # In-flight calls: close() waits for them (as DuckDBStore does) before closing the pool.
        self._calls = threading.Condition()
        self._open_calls = 0
        with self._reader() as cur:
            self._partitions = set(samples.list_partitions(cur))

    @classmethod
    def open(cls, url: str, *, sample_interval_s: int = 300, max_connections: int = 8) -> PostgresStore:
        """Connect (a pool of up to max_connections) and migrate the database at the libpq URL."""
        if sample_interval_s < 1:
            raise ValueError(f"sample_interval_s must be >= 1, got {sample_interval_s}")
        conninfo = make_conninfo(url, application_name="mining-fleet-health")
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
                apply_migrations(conn)
        except SchemaTooNew as exc:
            raise StoreSchemaTooNew(f"the PostgreSQL store {redact(url)}: {exc}; upgrade the server") from exc
        except psycopg.OperationalError as exc:
            raise Unavailable(
                f"cannot reach the PostgreSQL store {redact(url)}: {_first_line(exc)}; "
                "check --store / MFH_STORE"
            ) from exc
        pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            conninfo, min_size=1, max_size=max_connections, configure=_configure, open=True, timeout=30
        )
        return cls(pool, url, sample_interval_s)

    def close(self) -> None:
        """Refuse new calls, wait (at most 30 s) for those in flight, close the pool."""
        with self._calls:
            pool, self._pool = self._pool, None
            if pool is None:
                return
            self._calls.wait_for(lambda: self._open_calls == 0, timeout=_CLOSE_WAIT_S)
        pool.close(timeout=_CLOSE_WAIT_S)

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def description(self) -> str:
        return redact(self._url)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- connections and error translation --------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._calls:
            pool = self._pool
            if pool is None:
                raise StoreClosed("the store is closed; the server is shutting down")
            self._open_calls += 1
        try:
            with pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolClosed as exc:
            raise StoreClosed("the store is closed; the server is shutting down") from exc
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            raise InvalidArgument(f"the store rejected the data: {_first_line(exc)}") from exc
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise Unavailable(f"the PostgreSQL store is unavailable: {_first_line(exc)}") from exc
        finally:
            with self._calls:
                self._open_calls -= 1
                self._calls.notify_all()

    @contextmanager
    def _reader(self) -> Iterator[PgCursor]:
        # pool.connection() commits on a clean exit and rolls back on an error.
        with self._connection() as conn, conn.cursor() as cur:
            yield PgCursor(cur)

    @contextmanager
    def _writer(self) -> Iterator[PgCursor]:
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
            yield PgCursor(cur)

    def schema_version(self) -> int:
        with self._connection() as conn:
            return current_version(conn)

    def size_bytes(self) -> int:
        """The database's size (tables, indexes, TOAST) as PostgreSQL reports it."""
        with self._reader() as cur:
            row = cur.raw.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def copy_to(self, target: Path) -> None:
        raise FailedPrecondition(
            "backups of a PostgreSQL store are taken with PostgreSQL's tools (pg_dump, pg_basebackup); "
            "this server backs up only a DuckDB store"
        )

    def checkpoint(self) -> None:
        """Nothing to do: commits are durable, and autovacuum analyses the new partitions (an ANALYZE
        here took as long as the seed's COPY, measured on the 50-miner week)."""

    # ---- engine hooks ------------------------------------------------------------------------------

    def _ensure_partitions(self, ts: np.ndarray) -> None:
        """Create the daily partitions the times (N,) fall in, in a transaction of their own."""
        missing = [d for d in samples.partition_days(ts) if samples.partition_name(d) not in self._partitions]
        if not missing:
            return
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK])
            for day in missing:
                conn.execute(samples.partition_ddl(day))
        self._partitions.update(samples.partition_name(d) for d in missing)

    def _write(
        self,
        batch: shared_samples.StagedBatch,
        auto_register: bool,
        default_model: str,
        identities: Mapping[str, Miner] | None = None,
    ) -> WriteResult:
        if len(batch):
            self._ensure_partitions(batch.columns["ts"])
        return super()._write(batch, auto_register, default_model, identities)

    def _write_staged(
        self,
        cur: PgCursor,
        batch: shared_samples.StagedBatch,
        resolve: Callable[[list[str]], dict[str, str]],
    ) -> tuple[int, int]:
        return samples.write_staged(cur, batch, resolve)

    def _read_samples(
        self, cur: PgCursor, miner_id: str, start: datetime | None, end: datetime | None, limit: int | None
    ) -> list[Sample]:
        return samples.read_samples(cur, miner_id, start, end, limit)

    def _load_series(
        self, cur: PgCursor, miner_ids: Sequence[str], start: datetime | None, end: datetime | None
    ) -> dict[str, MinerSeries]:
        return rows_features.load_series(cur, miner_ids, start, end, self._sample_interval_s)

    def _read_telemetry(
        self, cur: PgCursor, miner_id: str, start: datetime, end: datetime, step_s: int
    ) -> history.TelemetryRows:
        return features.read_telemetry(cur, miner_id, start, end, step_s, self._sample_interval_s)

    def _roll_up(self, cur: PgCursor, retention: timedelta) -> tuple[int, int]:
        n_hours, n_old, dropped = samples.roll_up(cur, retention)
        if dropped:
            log.info("retention dropped %d samples partitions: %s", len(dropped), ", ".join(dropped))
            self._partitions.difference_update(dropped)
        return n_hours, n_old

    def _count_past_horizon(
        self, cur: PgCursor, aliases: np.ndarray, ts: np.ndarray, retention: timedelta
    ) -> int:
        return samples.count_past_horizon(cur, aliases, ts, retention)

    def _read_hourly(self, cur: PgCursor, miner_id: str) -> list[dict[str, object]]:
        return samples.read_hourly(cur, miner_id)
