"""Copies a whole store between engines (DuckDB file <-> PostgreSQL), losing nothing.

    python -m server.ops.copy_store --from var/fleet.duckdb --to postgresql://user@host:5432/mfh
    python -m server.ops.copy_store --from postgresql://user@host:5432/mfh --to /srv/restored.duckdb

Every table of the store is copied row for row: miners and their aliases, raw samples (with boards and
per-fan readings and quality flags), hourly roll-ups, failure events and repairs, planned states,
feedback, training jobs and the risk history. The target is opened (created and migrated) by the
server's own store code first, so it has this version's schema; it must be empty. The source is read
in one transaction (a consistent snapshot: a PostgreSQL source may keep serving; a DuckDB file must
not be open in a server, DuckDB allows one writer), the target is written in one transaction (all of
it or, after an error, none), and the row counts of both are compared at the end. Stop the server
writing to the source for the copy, or what it writes after the snapshot stays behind. The model
registry (data_dir/models) is files, not the store: copy the data directory for it.

Values travel in one neutral form (timezone-aware UTC times, board readings as dicts, lists, JSON
text), so the engines may store them differently (TIMESTAMP vs timestamptz, STRUCT lists vs jsonb).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from server.errors import FailedPrecondition, InvalidArgument
from server.store import open_store
from server.store.open import is_postgres_url
from server.store.postgres import samples as pg_samples

SKIPPED_TABLES = frozenset({"schema_version"})
"""Bookkeeping of each engine's own migrations: the target's migrations write its own."""
FIRST_TABLES = ("miners", "miner_aliases")
"""Copied before the others (a target may reference miners from other tables)."""
BATCH_ROWS = 50_000

Row = tuple[Any, ...]


class Tables(Protocol):
    """One engine's tables, read and written in the neutral form; inside one transaction."""

    def columns(self) -> dict[str, list[str]]:
        """table -> its column names, for every table of the store but the skipped ones."""
        ...

    def count(self, table: str) -> int: ...

    def read(self, table: str, columns: Sequence[str]) -> Iterator[list[Row]]: ...

    def write(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _object_column(values: Sequence[Any]) -> np.ndarray:
    column = np.empty(len(values), dtype=object)
    column[:] = values  # lists stay whole objects (np.array would try to make a 2-D array of them)
    return column


class DuckDBTables:
    """A DuckDB file's tables. TIMESTAMP columns hold naive UTC; LIST/STRUCT columns are Python lists
    and dicts; JSON-as-VARCHAR stays text."""

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self._conn = duckdb.connect(str(path), read_only=read_only)
        self._conn.execute("SET TimeZone = 'UTC'")
        self._conn.execute("BEGIN TRANSACTION")
        self._types: dict[str, dict[str, str]] = {}
        for table, column, data_type in self._conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
        ).fetchall():
            if table not in SKIPPED_TABLES:
                self._types.setdefault(str(table), {})[str(column)] = str(data_type)

    def columns(self) -> dict[str, list[str]]:
        return {table: list(types) for table, types in self._types.items()}

    def count(self, table: str) -> int:
        # fetchall, not fetchone: DuckDB refuses other work on a connection with an unfinished result.
        return int(self._conn.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0])

    def read(self, table: str, columns: Sequence[str]) -> Iterator[list[Row]]:
        timestamps = [i for i, c in enumerate(columns) if self._types[table][c].startswith("TIMESTAMP")]
        names = ", ".join(f'"{c}"' for c in columns)
        cursor = self._conn.cursor()
        try:
            cursor.execute(f'SELECT {names} FROM "{table}"')
            while batch := cursor.fetchmany(BATCH_ROWS):
                if timestamps:
                    rows = []
                    for row in batch:
                        values = list(row)
                        for i in timestamps:
                            values[i] = _aware(values[i])
                        rows.append(tuple(values))
                    yield rows
                else:
                    yield [tuple(row) for row in batch]
        finally:
            cursor.close()

    def write(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        if not rows:
            return
        types = self._types[table]
        incoming = {
            f"c{i}": _object_column([_naive_utc(row[i]) for row in rows]) for i in range(len(columns))
        }
        self._conn.register("incoming", incoming)
        try:
            names = ", ".join(f'"{c}"' for c in columns)
            casts = ", ".join(f"c{i}::{types[c]}" for i, c in enumerate(columns))
            self._conn.execute(f'INSERT INTO "{table}" ({names}) SELECT {casts} FROM incoming')
        finally:
            self._conn.unregister("incoming")

    def commit(self) -> None:
        self._conn.execute("COMMIT")
        self._conn.execute("CHECKPOINT")
        self._conn.execute("BEGIN TRANSACTION")

    def close(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        finally:
            self._conn.close()


@dataclass(frozen=True, slots=True)
class _PgColumn:
    name: str
    type_name: str  # format_type(), e.g. "timestamp with time zone", "jsonb", "double precision[]"


class PostgresTables:
    """A PostgreSQL database's tables (schema public). Partitioned tables are read and written through
    their parent (rows are routed to their partitions); the partitions themselves are not listed."""

    def __init__(self, url: str, *, read_only: bool) -> None:
        self._conn = psycopg.connect(url, autocommit=False)
        self._conn.execute("SET TIME ZONE 'UTC'")
        if read_only:
            self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        self._types: dict[str, list[_PgColumn]] = {}
        for table, column, type_name in self._conn.execute(
            """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
            ORDER BY c.relname, a.attnum
            """
        ).fetchall():
            if table not in SKIPPED_TABLES:
                self._types.setdefault(str(table), []).append(_PgColumn(str(column), str(type_name)))

        self._partitioned = {
            str(name)
            for (name,) in self._conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'p'"
            ).fetchall()
        }
        self._made_partitions: set[str] = set()

    def columns(self) -> dict[str, list[str]]:
        return {table: [c.name for c in cols] for table, cols in self._types.items()}

    def _make_partitions(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """Creates the partitions the rows fall in, as the store's writer names and bounds them."""
        if table != "samples":
            raise FailedPrecondition(
                f"the target's table {table} is partitioned in a way this copy does not know"
            )
        at = columns.index("ts")
        days = pg_samples.partition_days(
            np.array([_naive_utc(row[at]) for row in rows], dtype="datetime64[us]")
        )
        for day in sorted(days):
            name = pg_samples.partition_name(day)
            if name not in self._made_partitions:
                self._conn.execute(pg_samples.partition_ddl(day))
                self._made_partitions.add(name)

    def _column(self, table: str, name: str) -> _PgColumn:
        return next(c for c in self._types[table] if c.name == name)

    def count(self, table: str) -> int:
        row = self._conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        return int(row[0]) if row else 0

    def read(self, table: str, columns: Sequence[str]) -> Iterator[list[Row]]:
        types = [self._column(table, c).type_name for c in columns]
        naive = [i for i, t in enumerate(types) if t == _NAIVE_TIMESTAMP]
        json_text = [i for i, c in enumerate(columns) if types[i] in _JSON_TYPES and c in _JSON_TEXT_COLUMNS]
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(table)
        )
        # A named (server-side) cursor streams the table in batches instead of loading it whole.
        with self._conn.cursor(name=f"copy_{table}") as cursor:
            cursor.itersize = BATCH_ROWS
            cursor.execute(query)
            while batch := cursor.fetchmany(BATCH_ROWS):
                if not naive and not json_text:
                    yield [tuple(row) for row in batch]
                    continue
                rows = []
                for row in batch:
                    values = list(row)
                    for i in naive:
                        values[i] = _aware(values[i])
                    for i in json_text:
                        values[i] = None if values[i] is None else json.dumps(values[i])
                    rows.append(tuple(values))
                yield rows

    def write(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        if not rows:
            return
        types = [self._column(table, c).type_name for c in columns]
        naive = [i for i, t in enumerate(types) if t == _NAIVE_TIMESTAMP]
        json_columns = [i for i, t in enumerate(types) if t in _JSON_TYPES]
        if table in self._partitioned:
            self._make_partitions(table, columns, rows)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        )
        with self._conn.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                if not naive and not json_columns:
                    copy.write_row(row)
                    continue
                values = list(row)
                for i in naive:
                    values[i] = _naive_utc(values[i])
                for i in json_columns:
                    value = values[i]
                    if value is not None:
                        values[i] = Jsonb(json.loads(value) if isinstance(value, str) else value)
                copy.write_row(values)

    def commit(self) -> None:
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


_NAIVE_TIMESTAMP = "timestamp without time zone"
"""Holds UTC as a naive time, as DuckDB's TIMESTAMP does; the neutral form is timezone-aware."""
_JSON_TYPES = ("json", "jsonb")
_JSON_TEXT_COLUMNS = frozenset({"record"})
"""Columns that DuckDB keeps as JSON text and PostgreSQL may keep as json/jsonb (training_jobs.record)."""


def _open_tables(url: str, *, read_only: bool) -> Tables:
    if is_postgres_url(url):
        return PostgresTables(url, read_only=read_only)
    path = Path(url.removeprefix("duckdb:").removeprefix("//"))
    if read_only and not path.exists():
        raise InvalidArgument.for_field("from", f"no DuckDB store at {path}: name an existing file or URL")
    return DuckDBTables(path, read_only=read_only)


def _prepare_target(url: str, sample_interval_s: int) -> None:
    """Creates and migrates the target with the server's store code (its schema, its partitions)."""
    default = Path(url.removeprefix("duckdb:").removeprefix("//")) if not is_postgres_url(url) else Path()
    open_store(url, default_path=default, sample_interval_s=sample_interval_s).close()


@dataclass(frozen=True, slots=True)
class CopyReport:
    """Rows copied per table, and the seconds the copy took."""

    rows: dict[str, int]
    seconds: float


def copy_store(
    source_url: str,
    target_url: str,
    *,
    sample_interval_s: int = 300,
    progress: Any = None,
) -> CopyReport:
    """Copies every row of every table from source to target (an empty store, created if missing)."""
    if source_url.strip() == target_url.strip():
        raise InvalidArgument.for_field("to", "the target is the source: name another store")
    started = time.monotonic()
    source = _open_tables(source_url, read_only=True)
    try:
        _prepare_target(target_url, sample_interval_s)
        target = _open_tables(target_url, read_only=False)
        try:
            copied = _copy_tables(source, target, progress)
            target.commit()
        finally:
            target.close()
    finally:
        source.close()
    return CopyReport(copied, time.monotonic() - started)


def _copy_tables(source: Tables, target: Tables, progress: Any) -> dict[str, int]:
    have, want = source.columns(), target.columns()
    missing = sorted(set(have) - set(want))
    if missing:
        raise FailedPrecondition(f"the target store has no table {', '.join(missing)}: upgrade its server")
    for table, columns in have.items():
        lost = sorted(set(columns) - set(want[table]))
        if lost:
            raise FailedPrecondition(f"the target's table {table} has no column {', '.join(lost)}")
    filled = {table: n for table in have if (n := target.count(table))}
    if filled:
        listed = ", ".join(f"{table} ({n} rows)" for table, n in sorted(filled.items()))
        raise FailedPrecondition(f"the target store is not empty: {listed}; copy into an empty store")
    order = [t for t in FIRST_TABLES if t in have] + sorted(t for t in have if t not in FIRST_TABLES)
    copied: dict[str, int] = {}
    for table in order:
        columns = have[table]
        n = 0
        for rows in source.read(table, columns):
            target.write(table, columns, rows)
            n += len(rows)
        copied[table] = n
        if progress is not None:
            progress(table, n)
    for table in order:
        expected, arrived = source.count(table), target.count(table)
        if expected != arrived:
            raise FailedPrecondition(f"table {table}: {expected} rows in the source, {arrived} arrived")
    return copied


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.ops.copy_store",
        description="Copy a whole store (DuckDB file or postgresql:// URL) into an empty one.",
    )
    parser.add_argument("--from", dest="source", required=True, help="DuckDB file or postgresql://... URL")
    parser.add_argument("--to", dest="target", required=True, help="DuckDB file or postgresql://... URL")
    parser.add_argument("--sample-interval-s", type=int, default=300, help="the stores' grid (default 300)")
    args = parser.parse_args(argv)

    def progress(table: str, rows: int) -> None:
        print(f"{table:<16} {rows:>12,} rows", flush=True)

    try:
        report = copy_store(
            args.source, args.target, sample_interval_s=args.sample_interval_s, progress=progress
        )
    except (InvalidArgument, FailedPrecondition) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = sum(report.rows.values())
    print(f"copied {total:,} rows in {report.seconds:.1f} s; row counts match", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
