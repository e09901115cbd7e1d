"""What only the PostgreSQL store has: its migrations, daily partitions, retention by dropping them,
the index plan for one miner's range, the store URL, and the same answers as DuckDB on the same data."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from server.errors import InvalidArgument, Unavailable
from server.records import FEATURE_COLUMNS, Miner
from server.store import DuckDBStore, FleetStore, StoreSchemaTooNew, open_store
from server.store.postgres import PostgresStore
from server.store.postgres.migrations import MIGRATIONS
from server.store.postgres.store import redact
from tests.store.store_builders import T0, at, sample


@pytest.fixture
def pg(fresh_postgres_url: str) -> PostgresStore:
    store = PostgresStore.open(fresh_postgres_url)
    yield store  # type: ignore[misc]
    store.close()


def _partitions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'samples'::regclass ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_migrations_apply_once_and_a_newer_schema_is_refused(fresh_postgres_url: str) -> None:
    PostgresStore.open(fresh_postgres_url).close()
    store = PostgresStore.open(fresh_postgres_url)
    assert store.schema_version() == MIGRATIONS[-1].version
    store.close()
    with psycopg.connect(fresh_postgres_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()]
        assert versions == [m.version for m in MIGRATIONS]
        conn.execute("INSERT INTO schema_version VALUES (999, 'from the future', now())")
    with pytest.raises(StoreSchemaTooNew, match="999"):
        PostgresStore.open(fresh_postgres_url)


def test_samples_land_in_one_partition_per_utc_day(pg: PostgresStore, fresh_postgres_url: str) -> None:
    # 300 five-minute steps from 2025-01-01 00:00 cross into 2025-01-02 (288 steps a day).
    result = pg.write_samples([sample("10.0.0.1", step) for step in range(300)])
    assert result.written == 300
    assert _partitions(fresh_postgres_url) == ["samples_20250101", "samples_20250102"]
    with psycopg.connect(fresh_postgres_url) as conn:
        per_day = conn.execute("SELECT count(*) FROM samples_20250102").fetchone()
    assert per_day == (12,)


def test_one_miners_range_is_read_through_the_index_of_the_pruned_partitions(
    pg: PostgresStore, fresh_postgres_url: str
) -> None:
    pg.write_samples([sample(f"10.0.0.{m}", step) for m in range(1, 4) for step in range(0, 600, 3)])
    with psycopg.connect(fresh_postgres_url) as conn:
        conn.execute("ANALYZE samples")
        conn.execute("SET enable_seqscan = off")  # tiny tables: ask whether an index path exists
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                "EXPLAIN SELECT * FROM samples WHERE miner_id = '10.0.0.2' "
                "AND ts >= '2025-01-02 01:00' AND ts < '2025-01-02 05:00'"
            ).fetchall()
        )
    assert "samples_20250102" in plan and "samples_20250101" not in plan  # pruned to one day
    assert "Index" in plan and "samples_20250102_pkey" in plan


def test_retention_drops_whole_partitions_and_keeps_the_roll_ups(
    pg: PostgresStore, fresh_postgres_url: str
) -> None:
    # Four days of one miner: its newest sample is day 4 23:55; minus a retention of one day,
    # floored to the hour, its horizon is day 3 23:00: 2 * 24 + 23 hours roll up.
    pg.write_samples([sample("10.0.0.1", step) for step in range(4 * 288)])
    assert len(_partitions(fresh_postgres_url)) == 4
    n_hours, n_deleted = pg.roll_up_samples(timedelta(days=1))
    assert (n_hours, n_deleted) == (2 * 24 + 23, (2 * 24 + 23) * 12)
    # Days 1-2 held only old rows: dropped whole; day 3 keeps its last hour, day 4 all of it.
    assert _partitions(fresh_postgres_url) == ["samples_20250103", "samples_20250104"]
    assert len(pg.read_samples("10.0.0.1")) == 12 + 288
    hourly = pg.read_hourly("10.0.0.1")
    assert len(hourly) == n_hours and hourly[0]["hour"] == T0
    assert {row["n_samples"] for row in hourly} == {12}
    # New samples for a dropped day get their partition back.
    assert pg.write_samples([sample("10.0.0.1", 5)]).written == 1
    assert "samples_20250101" in _partitions(fresh_postgres_url)


def test_store_url_selects_the_engine(fresh_postgres_url: str, tmp_path: Path) -> None:
    store = open_store(fresh_postgres_url, default_path=tmp_path / "unused.duckdb")
    assert isinstance(store, PostgresStore) and not (tmp_path / "unused.duckdb").exists()
    store.close()
    default = open_store("", default_path=tmp_path / "fleet.duckdb")
    assert isinstance(default, DuckDBStore) and (tmp_path / "fleet.duckdb").exists()
    default.close()
    with pytest.raises(InvalidArgument, match="store: unknown store URL scheme 'mysql'"):
        open_store("mysql://localhost/x", default_path=tmp_path / "x.duckdb")


def test_an_unreachable_database_is_unavailable_without_its_password() -> None:
    url = "postgresql://fleet:s3cret@127.0.0.1:1/fleet"
    with pytest.raises(Unavailable, match="cannot reach the PostgreSQL store") as caught:
        PostgresStore.open(url)
    assert "s3cret" not in str(caught.value)
    assert redact(url) == "postgresql://fleet@127.0.0.1:1/fleet"


def test_backup_of_a_postgres_store_names_the_postgres_tools(pg: PostgresStore, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="pg_dump"):
        pg.copy_to(tmp_path / "backup.db")


def _fill(store: FleetStore) -> None:
    rng = np.random.default_rng(7)
    store.upsert_miners([Miner("10.9.0.1", "Antminer S19 Pro", nominal_hashrate_ths=110.0)])
    rows = []
    for step in range(0, 400):
        if 100 <= step < 110:
            continue  # a gap
        seconds = int(rng.integers(0, 200))  # off the grid
        base = sample("10.9.0.1", step, temperature_c=70.0 + float(rng.normal(0, 2)))
        rows.append(
            base.__class__(
                **{
                    **{f: getattr(base, f) for f in base.__dataclass_fields__},
                    "timestamp": at(step, seconds=seconds),
                    "hashrate_ths": float(rng.normal(100, 5)),
                    "accepted_shares": 1000 * (step % 150 + 1),  # counter resets
                    "rejected_shares": int(rng.integers(0, 4)) * (step % 150 + 1),
                    "power_w": None if step % 37 == 0 else 3200.0 + float(rng.normal(0, 30)),
                }
            )
        )
    store.write_samples(rows)


def test_both_engines_compute_the_same_features_and_telemetry(
    store_path: Path, fresh_postgres_url: str
) -> None:
    duck = open_store(str(store_path), default_path=store_path)
    pg = open_store(fresh_postgres_url, default_path=store_path)
    try:
        for store in (duck, pg):
            _fill(store)
        a = duck.load_series(["10.9.0.1"], start=at(50), end=at(390))["10.9.0.1"]
        b = pg.load_series(["10.9.0.1"], start=at(50), end=at(390))["10.9.0.1"]
        assert a.values.shape == b.values.shape and a.values.shape[1] == len(FEATURE_COLUMNS)
        assert np.array_equal(a.timestamps, b.timestamps)
        assert np.array_equal(a.observed, b.observed) and not a.observed.all()
        np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-6, equal_nan=True)
        ra, rb = duck.recent_series("10.9.0.1", 24), pg.recent_series("10.9.0.1", 24)
        np.testing.assert_allclose(ra.values, rb.values, rtol=1e-5, atol=1e-6, equal_nan=True)
        ta = duck.read_telemetry("10.9.0.1", T0, at(400), 3600)
        tb = pg.read_telemetry("10.9.0.1", T0, at(400), 3600)
        assert np.array_equal(ta.step_starts, tb.step_starts) and np.array_equal(ta.samples, tb.samples)
        assert ta.source == tb.source
        for name in (*ta.raw, *ta.features):
            got = (ta.raw | ta.features)[name], (tb.raw | tb.features)[name]
            for x, y in zip(*got, strict=True):
                np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=name)
    finally:
        duck.close()
        pg.close()
