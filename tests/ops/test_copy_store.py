"""Copying a store between engines loses nothing: DuckDB -> PostgreSQL -> DuckDB compares equal."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from server.errors import FailedPrecondition
from server.ops.copy_store import _open_tables, copy_store
from server.records import BoardReading, EventSource, FailureEvent, FailureMode, Miner, RiskLevel, Sample
from server.sim import seed_store, simulate_fleet
from server.store import open_store
from server.store.history import RiskPoint

END = datetime(2026, 11, 1, tzinfo=UTC)
TABLES = {
    "miners",
    "miner_aliases",
    "samples",
    "samples_hourly",
    "failure_events",
    "planned_states",
    "feedback",
    "training_jobs",
    "risk_history",
}


def full_store(path: Path) -> str:
    """A DuckDB store with rows in every table: a small simulated fleet, part of it rolled up to hourly
    rows, a miner known by an IP alias with per-board readings and a missing reading, a recorded repair,
    feedback, two training jobs and risk history."""
    store = open_store("", default_path=path)
    try:
        seed_store(store, simulate_fleet(5, 3, 5, end=END))
        store.upsert_miners([Miner("rig-9", "S19 Pro", serial="SN-9", mac="aa:bb:cc:00:00:09", site="north")])
        boards = (BoardReading(0, 31.5, 68.0, 80.25), BoardReading(1, None, 70.0, None))
        store.write_samples(
            [
                Sample(
                    "rig-9", END - timedelta(minutes=10), 63.0, 70.5, 4100.0, 3200.0, 10, 1, boards, (4000.0,)
                ),
                Sample("SN-9", END - timedelta(minutes=5), None, 71.0, None, 3190.0, 20, 1, boards[:1], ()),
            ]
        )
        failure = FailureEvent(
            "f-rig-9", "rig-9", END - timedelta(hours=5), FailureMode.FAN, EventSource.MANUAL
        )
        store.add_failure(failure)
        store.record_repair("f-rig-9", END - timedelta(hours=4), "fan replaced")
        store.add_feedback("rig-9", 1, "lstm-v1", "right call", END - timedelta(hours=3))
        for i, state in enumerate(("SUCCEEDED", "FAILED")):
            created = (END - timedelta(hours=2 - i)).isoformat()
            store.save_job(
                f"job-{i}", {"kind": 1, "state": state, "created_at": created, "request_id": f"r{i}"}
            )
        store.write_risk_points(
            [
                RiskPoint(
                    "rig-9",
                    END - timedelta(minutes=5 * k),
                    "lstm-v1",
                    0.1 * k,
                    RiskLevel.LOW,
                    k == 2,
                    0.5,
                    "ae-v1",
                    END,
                )
                for k in range(3)
            ]
        )
        store.roll_up_samples(timedelta(days=2))
    finally:
        store.close()
    return str(path)


def _row_key(row: tuple[Any, ...]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the copy's neutral form (aware UTC times, boards as dicts), sorted."""
    tables = _open_tables(url, read_only=True)
    try:
        return {
            table: sorted(
                (row for batch in tables.read(table, sorted(columns)) for row in batch), key=_row_key
            )
            for table, columns in tables.columns().items()
        }
    finally:
        tables.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    return full_store(tmp_path_factory.mktemp("copy") / "source.duckdb")


def test_the_source_has_rows_in_every_table(source: str) -> None:
    rows = table_rows(source)
    assert set(rows) == TABLES
    assert all(rows[table] for table in TABLES), {t: len(r) for t, r in rows.items()}


def test_duckdb_to_postgres_and_back_loses_nothing(
    source: str, fresh_postgres_url: str, tmp_path: Path
) -> None:
    original = table_rows(source)

    there = copy_store(source, fresh_postgres_url)
    assert there.rows == {table: len(original[table]) for table in TABLES}
    assert table_rows(fresh_postgres_url) == original

    back = tmp_path / "back.duckdb"
    copy_store(fresh_postgres_url, str(back))
    assert table_rows(str(back)) == original
    # The same rows byte for byte in DuckDB's own types (naive UTC, STRUCT lists), not just the neutral form.
    for table in TABLES:
        query = f"SELECT * FROM {table} ORDER BY ALL"
        with duckdb.connect(source, read_only=True) as a, duckdb.connect(str(back), read_only=True) as b:
            assert a.execute(query).fetchall() == b.execute(query).fetchall(), table


def test_the_copy_serves_the_same_answers_through_the_store(source: str, fresh_postgres_url: str) -> None:
    copy_store(source, fresh_postgres_url)
    original = open_store("", default_path=Path(source))
    copied = open_store(fresh_postgres_url, default_path=Path(source))
    try:
        assert copied.counts() == original.counts()
        assert copied.read_samples("SN-9") == original.read_samples("rig-9")  # the alias still resolves
        assert copied.get_failure("f-rig-9") == original.get_failure("f-rig-9")
        assert copied.list_jobs() == original.list_jobs()
        assert copied.find_job_by_request_id("r1") == original.find_job_by_request_id("r1")
        assert copied.read_hourly("rig-9") == original.read_hourly("rig-9")
        window = END - timedelta(hours=1), END
        assert copied.read_risk_points("rig-9", *window) == original.read_risk_points("rig-9", *window)
    finally:
        original.close()
        copied.close()


def test_copy_refuses_a_target_that_holds_data(source: str, tmp_path: Path) -> None:
    target = tmp_path / "target.duckdb"
    copy_store(source, str(target))
    with pytest.raises(FailedPrecondition, match=r"not empty: .*samples \(\d+ rows\)"):
        copy_store(source, str(target))


def test_copy_command_copies_into_postgres_and_reports_counts(source: str, fresh_postgres_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server.ops.copy_store", "--from", source, "--to", fresh_postgres_url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(fresh_postgres_url) as conn:
        samples = conn.execute("SELECT count(*) FROM samples").fetchone()
    assert samples is not None and samples[0] > 0
    assert f"{samples[0]:,} rows" in done.stdout
    assert "row counts match" in done.stdout


def test_copy_command_names_a_missing_source(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.ops.copy_store",
            "--from",
            str(tmp_path / "nope.duckdb"),
            "--to",
            str(tmp_path / "to.duckdb"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no DuckDB store at" in done.stderr
