"""PostgreSQL's own versioned migrations, and the runner that applies them.

The list is PostgreSQL's own (its version 1 is the DuckDB schema as of DuckDB's version 8, in
PostgreSQL's types); append new versions at the end, never edit one that shipped. Each migration runs
in one transaction with the row that records it, under an advisory lock, so two servers starting on
one database apply it once.

Times are `timestamp` (without time zone) holding UTC, as in DuckDB: the shared SQL compares them
with the naive UTC datetimes the store passes. Telemetry (`samples`) is partitioned by range of `ts`,
one partition per UTC day, created on demand by the writer (samples.py); its primary key
(miner_id, ts) is the index for "one miner, a time range" in each partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg

from server.store.migrations import Migration, SchemaTooNew

MIGRATION_LOCK = 7_318_001
"""Advisory-lock key held while migrating."""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "miners, aliases, time-partitioned samples, events, jobs, roll-ups, risk history",
        (
            """
            CREATE TABLE miners (
                miner_id TEXT PRIMARY KEY,
                hardware_model TEXT NOT NULL,
                make TEXT NOT NULL DEFAULT '',
                nominal_hashrate_ths DOUBLE PRECISION NOT NULL DEFAULT 0,
                nominal_power_w DOUBLE PRECISION NOT NULL DEFAULT 0,
                serial TEXT NOT NULL DEFAULT '',
                mac TEXT NOT NULL DEFAULT '',
                site TEXT NOT NULL DEFAULT '',
                registered_at TIMESTAMP NOT NULL,
                updated_at TIMESTAMP NOT NULL
            )
            """,
            """
            CREATE TABLE miner_aliases (
                alias TEXT PRIMARY KEY,
                miner_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                seen_at TIMESTAMP NOT NULL
            )
            """,
            # boards: JSON array of {idx, hashrate_ths, temperature_c, chip_temperature_c}.
            """
            CREATE TABLE samples (
                miner_id TEXT NOT NULL,
                ts TIMESTAMP NOT NULL,
                hashrate_ths DOUBLE PRECISION,
                temperature_c DOUBLE PRECISION,
                fan_speed_rpm DOUBLE PRECISION,
                power_w DOUBLE PRECISION,
                accepted_shares BIGINT,
                rejected_shares BIGINT,
                boards JSONB,
                fan_speeds_rpm DOUBLE PRECISION[],
                quality SMALLINT NOT NULL DEFAULT 0,
                PRIMARY KEY (miner_id, ts)
            ) PARTITION BY RANGE (ts)
            """,
            """
            CREATE TABLE failure_events (
                event_id TEXT PRIMARY KEY,
                miner_id TEXT NOT NULL,
                occurred_at TIMESTAMP NOT NULL,
                mode INTEGER NOT NULL,
                source INTEGER NOT NULL,
                repaired_at TIMESTAMP,
                note TEXT NOT NULL DEFAULT '',
                repair_source INTEGER
            )
            """,
            "CREATE INDEX failure_events_miner ON failure_events (miner_id, occurred_at)",
            """
            CREATE TABLE planned_states (
                state_id TEXT PRIMARY KEY,
                miner_id TEXT NOT NULL,
                kind INTEGER NOT NULL,
                start_at TIMESTAMP NOT NULL,
                end_at TIMESTAMP NOT NULL,
                note TEXT NOT NULL DEFAULT '',
                CHECK (end_at >= start_at)
            )
            """,
            "CREATE INDEX planned_states_miner ON planned_states (miner_id, start_at)",
            """
            CREATE TABLE feedback (
                feedback_id TEXT PRIMARY KEY,
                miner_id TEXT NOT NULL,
                verdict INTEGER NOT NULL,
                model_version TEXT NOT NULL DEFAULT '',
                note TEXT NOT NULL DEFAULT '',
                recorded_at TIMESTAMP NOT NULL
            )
            """,
            """
            CREATE TABLE training_jobs (
                job_id TEXT PRIMARY KEY,
                kind INTEGER NOT NULL,
                state TEXT NOT NULL,
                created_at TIMESTAMP NOT NULL,
                updated_at TIMESTAMP NOT NULL,
                request_id TEXT,
                record TEXT NOT NULL
            )
            """,
            "CREATE INDEX training_jobs_request ON training_jobs (request_id)",
            """
            CREATE TABLE samples_hourly (
                miner_id TEXT NOT NULL,
                hour TIMESTAMP NOT NULL,
                n_samples INTEGER NOT NULL,
                hashrate_ths_mean DOUBLE PRECISION,
                hashrate_ths_min DOUBLE PRECISION,
                hashrate_ths_max DOUBLE PRECISION,
                temperature_c_mean DOUBLE PRECISION,
                temperature_c_max DOUBLE PRECISION,
                fan_speed_rpm_mean DOUBLE PRECISION,
                fan_speed_rpm_min DOUBLE PRECISION,
                power_w_mean DOUBLE PRECISION,
                power_w_max DOUBLE PRECISION,
                accepted_shares_delta BIGINT,
                rejected_shares_delta BIGINT,
                quality SMALLINT NOT NULL DEFAULT 0,
                PRIMARY KEY (miner_id, hour)
            )
            """,
            # Append-only as on DuckDB (reads keep the newest row of a key); indexed for one miner's
            # range, which PostgreSQL needs (no zone maps) to read one miner's history quickly.
            """
            CREATE TABLE risk_history (
                miner_id TEXT NOT NULL,
                window_end TIMESTAMP NOT NULL,
                model_version TEXT NOT NULL,
                risk_score DOUBLE PRECISION NOT NULL,
                risk_level SMALLINT NOT NULL,
                is_anomaly BOOLEAN NOT NULL,
                anomaly_score DOUBLE PRECISION NOT NULL,
                anomaly_model_version TEXT NOT NULL,
                scored_at TIMESTAMP NOT NULL
            )
            """,
            "CREATE INDEX risk_history_miner ON risk_history (miner_id, window_end)",
        ),
    ),
)

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TIMESTAMP NOT NULL
)
"""


def current_version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def apply_migrations(
    conn: psycopg.Connection[tuple[object, ...]], migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Apply the migrations newer than the database's version, each in one transaction, under an
    advisory lock; returns the versions applied. Raises SchemaTooNew for a version this code does
    not know. The connection must be in autocommit mode."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise ValueError(f"migration versions must be unique, increasing and >= 1: {versions}")
    conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
    try:
        conn.execute(_BOOTSTRAP)
        have = current_version(conn)
        known = versions[-1] if versions else 0
        if have > known:
            raise SchemaTooNew(f"database schema version {have} is newer than this server's {known}")
        applied: list[int] = []
        for migration in migrations:
            if migration.version <= have:
                continue
            with conn.transaction():
                for statement in migration.statements:
                    conn.execute(statement)  # type: ignore[call-overload]  # static SQL text
                conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (%s, %s, %s)",
                    [migration.version, migration.description, datetime.now(UTC).replace(tzinfo=None)],
                )
            applied.append(migration.version)
        return applied
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])
