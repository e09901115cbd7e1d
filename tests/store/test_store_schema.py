"""Opening, migrating, locking and closing the store file."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from server.store import Store, StoreClosed, StoreLocked, StoreSchemaTooNew
from server.store.migrations import MIGRATIONS, Migration, apply_migrations, current_version


def test_open_creates_parent_folder_and_applies_every_migration(store_path: Path) -> None:
    store = Store.open(store_path)
    try:
        assert store_path.exists()
        assert store.is_open
        assert store.schema_version() == MIGRATIONS[-1].version
    finally:
        store.close()
    assert not store.is_open


def test_reopening_applies_no_migration_twice(store_path: Path) -> None:
    Store.open(store_path).close()
    Store.open(store_path).close()
    conn = duckdb.connect(str(store_path))
    try:
        versions = [
            row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        ]
        assert versions == [m.version for m in MIGRATIONS]
        assert apply_migrations(conn) == []
    finally:
        conn.close()


def test_failing_migration_leaves_no_partial_change(tmp_path: Path) -> None:
    migrations = (
        Migration(1, "good", ("CREATE TABLE first_table (x INTEGER)",)),
        Migration(2, "bad", ("CREATE TABLE second_table (x INTEGER)", "SELECT * FROM no_such_table")),
    )
    conn = duckdb.connect(str(tmp_path / "m.duckdb"))
    try:
        with pytest.raises(duckdb.CatalogException):
            apply_migrations(conn, migrations)
        assert current_version(conn) == 1
        tables = {row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert "first_table" in tables
        assert "second_table" not in tables
        assert apply_migrations(conn, migrations[:1]) == []
    finally:
        conn.close()


def test_database_from_a_newer_server_is_refused(store_path: Path) -> None:
    Store.open(store_path).close()
    conn = duckdb.connect(str(store_path))
    conn.execute("INSERT INTO schema_version VALUES (999, 'future', TIMESTAMP '2030-01-01')")
    conn.close()
    with pytest.raises(StoreSchemaTooNew, match="newer than this server"):
        Store.open(store_path)


def test_file_held_by_another_process_raises_store_locked(store_path: Path) -> None:
    Store.open(store_path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(store_path)!r}); print('ready', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked, match="held open by another process") as caught:
            Store.open(store_path)
        assert caught.value.reason == "STORE_LOCKED"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_calls_after_close_raise_store_closed(store: Store) -> None:
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(StoreClosed, match="closed"):
        store.counts()
    with pytest.raises(StoreClosed):
        store.upsert_miners([])


def test_close_waits_for_an_in_flight_read_and_refuses_new_ones(store: Store) -> None:
    reading, release = threading.Event(), threading.Event()

    def slow_reader() -> None:
        with store._reader() as cur:  # a read in flight, e.g. a scorer thread during shutdown
            reading.set()
            release.wait(10)
            cur.execute("SELECT 1").fetchall()

    reader = threading.Thread(target=slow_reader)
    reader.start()
    reading.wait(10)
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # waiting for the read, not failing under it
    with pytest.raises(StoreClosed):
        store.counts()
    release.set()
    reader.join(10)
    closer.join(10)
    assert not closer.is_alive() and not store.is_open
