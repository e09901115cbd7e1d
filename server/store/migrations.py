"""Versioned, ordered SQL migrations of the store schema, and the runner that applies them.

Each migration runs in its own transaction together with the row that records it in
`schema_version`, so a migration is applied completely or not at all, and running the runner
again applies nothing. Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from server.store.sql import fetch_one


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: its version (1, 2, ...), a one-line description and its statements."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "miners, aliases, samples",
        (
            """
            CREATE TABLE miners (
                miner_id VARCHAR PRIMARY KEY,
                hardware_model VARCHAR NOT NULL,
                make VARCHAR NOT NULL DEFAULT '',
                nominal_hashrate_ths DOUBLE NOT NULL DEFAULT 0,
                nominal_power_w DOUBLE NOT NULL DEFAULT 0,
                serial VARCHAR NOT NULL DEFAULT '',
                mac VARCHAR NOT NULL DEFAULT '',
                site VARCHAR NOT NULL DEFAULT '',
                registered_at TIMESTAMP NOT NULL,
                updated_at TIMESTAMP NOT NULL
            )
            """,
            # Every identifier a miner has been seen under (its id, IPs, serial, MAC) -> its miner_id,
            # so a miner keeps its history when its IP changes.
            """
            CREATE TABLE miner_aliases (
                alias VARCHAR PRIMARY KEY,
                miner_id VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                seen_at TIMESTAMP NOT NULL
            )
            """,
            # One row per (miner, UTC time). NULL is a missing reading, never 0. Share counters are
            # cumulative since the miner's last reboot. quality is a bit set (see samples.py).
            """
            CREATE TABLE samples (
                miner_id VARCHAR NOT NULL,
                ts TIMESTAMP NOT NULL,
                hashrate_ths DOUBLE,
                temperature_c DOUBLE,
                fan_speed_rpm DOUBLE,
                power_w DOUBLE,
                accepted_shares BIGINT,
                rejected_shares BIGINT,
                boards STRUCT(
                    idx INTEGER, hashrate_ths DOUBLE, temperature_c DOUBLE, chip_temperature_c DOUBLE
                )[],
                fan_speeds_rpm DOUBLE[],
                quality UTINYINT NOT NULL DEFAULT 0,
                PRIMARY KEY (miner_id, ts)
            )
            """,
        ),
    ),
    Migration(
        2,
        "failure events, planned states, feedback",
        (
            """
            CREATE TABLE failure_events (
                event_id VARCHAR PRIMARY KEY,
                miner_id VARCHAR NOT NULL,
                occurred_at TIMESTAMP NOT NULL,
                mode INTEGER NOT NULL,
                source INTEGER NOT NULL,
                repaired_at TIMESTAMP,
                note VARCHAR NOT NULL DEFAULT ''
            )
            """,
            """
            CREATE TABLE planned_states (
                state_id VARCHAR PRIMARY KEY,
                miner_id VARCHAR NOT NULL,
                kind INTEGER NOT NULL,
                start_at TIMESTAMP NOT NULL,
                end_at TIMESTAMP NOT NULL,
                note VARCHAR NOT NULL DEFAULT '',
                CHECK (end_at >= start_at)
            )
            """,
            """
            CREATE TABLE feedback (
                feedback_id VARCHAR PRIMARY KEY,
                miner_id VARCHAR NOT NULL,
                verdict INTEGER NOT NULL,
                model_version VARCHAR NOT NULL DEFAULT '',
                note VARCHAR NOT NULL DEFAULT '',
                recorded_at TIMESTAMP NOT NULL
            )
            """,
        ),
    ),
    Migration(
        3,
        "training jobs",
        (
            # record is the job as JSON text; the other columns are copies of its fields for lookups.
            """
            CREATE TABLE training_jobs (
                job_id VARCHAR PRIMARY KEY,
                kind INTEGER NOT NULL,
                state VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                updated_at TIMESTAMP NOT NULL,
                request_id VARCHAR,
                record VARCHAR NOT NULL
            )
            """,
        ),
    ),
    Migration(
        4,
        "hourly roll-up of raw samples past retention",
        (
            # One row per (miner, UTC hour) of raw samples rolled up by retention (see samples.py):
            # means and extremes of the readings, share-counter deltas summed over the hour (reset
            # rule as in features.py), and the OR of the samples' quality bits.
            """
            CREATE TABLE samples_hourly (
                miner_id VARCHAR NOT NULL,
                hour TIMESTAMP NOT NULL,
                n_samples INTEGER NOT NULL,
                hashrate_ths_mean DOUBLE,
                hashrate_ths_min DOUBLE,
                hashrate_ths_max DOUBLE,
                temperature_c_mean DOUBLE,
                temperature_c_max DOUBLE,
                fan_speed_rpm_mean DOUBLE,
                fan_speed_rpm_min DOUBLE,
                power_w_mean DOUBLE,
                power_w_max DOUBLE,
                accepted_shares_delta BIGINT,
                rejected_shares_delta BIGINT,
                quality UTINYINT NOT NULL DEFAULT 0,
                PRIMARY KEY (miner_id, hour)
            )
            """,
        ),
    ),
    Migration(
        7,
        "risk history",
        (
            # One row per (miner, window end, LSTM version) the server scored when a new window arrived
            # or a model became active (see history.py); never written on the prediction path. No
            # primary key (an index would cost more than the rows): writes append, reads keep the newest
            # row of a key (see history.py).
            """
            CREATE TABLE risk_history (
                miner_id VARCHAR NOT NULL,
                window_end TIMESTAMP NOT NULL,
                model_version VARCHAR NOT NULL,
                risk_score DOUBLE NOT NULL,
                risk_level UTINYINT NOT NULL,
                is_anomaly BOOLEAN NOT NULL,
                anomaly_score DOUBLE NOT NULL,
                anomaly_model_version VARCHAR NOT NULL,
                scored_at TIMESTAMP NOT NULL
            )
            """,
        ),
    ),
    # Version 8 (numbers 5 and 6 belong to other branches; gaps are allowed).
    Migration(
        8,
        "where a failure's repair time came from",
        (
            # NULL: as the event's own source (a recorded or simulated repair, a derived outage's
            # end); EventSource.DERIVED: taken from telemetry for a recorded failure.
            "ALTER TABLE failure_events ADD COLUMN repair_source INTEGER",
        ),
    ),
)

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description VARCHAR NOT NULL,
    applied_at TIMESTAMP NOT NULL
)
"""


class SchemaTooNew(RuntimeError):
    """The database file was written by a newer version of the server."""


def current_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The highest applied migration, 0 for a new database."""
    row = fetch_one(conn, "SELECT coalesce(max(version), 0) FROM schema_version")
    return int(row[0]) if row else 0


def apply_migrations(
    conn: duckdb.DuckDBPyConnection, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Apply the migrations newer than the database's version, each in one transaction.

    Returns the versions applied (empty when the schema is up to date). Raises SchemaTooNew when
    the database holds a version this code does not know.
    """
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise ValueError(f"migration versions must be unique, increasing and >= 1: {versions}")
    conn.execute(_BOOTSTRAP)
    have = current_version(conn)
    known = versions[-1] if versions else 0
    if have > known:
        raise SchemaTooNew(f"database schema version {have} is newer than this server's {known}")
    applied: list[int] = []
    for migration in migrations:
        if migration.version <= have:
            continue
        conn.execute("BEGIN TRANSACTION")
        try:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                [migration.version, migration.description, datetime.now(UTC).replace(tzinfo=None)],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    return applied
