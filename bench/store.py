"""Store benchmark, PostgreSQL vs DuckDB side by side in one run (numbers for issue 18's "Scaling").

    .venv/bin/python -m bench.store --out bench/results/store.md

Both stores are opened through the store protocol (`open_store`), each in a temp folder: a DuckDB
file, and a local PostgreSQL 15 cluster (server/ops/pg_local.py, fsync on, as DuckDB syncs its log on
commit). One simulated fleet is written into both, a day of the whole fleet per columnar batch
(`bulk_append_columns`, as WriteMetrics and the demo seed do), alternating the engines batch by batch
so that load from other jobs on the machine hits both alike. Then, per engine:
1. rows and bytes per miner-day: the store's growth on disk over its empty, migrated self (DuckDB: the
   file after CHECKPOINT; PostgreSQL: the database after VACUUM ANALYZE, and the samples' heap, index
   and TOAST bytes alone);
2. columnar ingestion rate: samples per second of each batch (median, and the whole load);
3. read times for one miner (medians of --repeats, engines interleaved): the telemetry history
   (`read_telemetry`, 1 day at 5 min and 7 days at 1 h steps), the model window (`recent_series`,
   24 samples) and the raw samples of its last day (`read_samples`);
4. the rest of what a fleet stores per miner-day: a dense risk history (a point every 5 minutes) and
   the hourly roll-up that retention leaves of older days (`roll_up_samples` with 1 day kept raw,
   timed), each table's bytes alone (DuckDB: the table copied into a file of its own).
Sized small by default (40 miners x 10 days = 115,200 samples): the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from server.ops.pg_local import local_postgres
from server.records import RiskLevel
from server.sim import simulate_fleet
from server.store import FleetStore, open_store
from server.store.history import RiskPoint

END = datetime(2026, 11, 1, tzinfo=UTC)
INTERVAL_S = 300


def _day_batches(fleet: Any, days: int) -> list[np.ndarray]:
    """Row indices of each day of the whole fleet (every miner's samples of that day)."""
    day = (fleet.samples.ts - fleet.samples.ts.min()).astype("timedelta64[s]").astype(np.int64) // 86_400
    return [np.flatnonzero(day == d) for d in range(int(day.max()) + 1)]


def _append(store: FleetStore, fleet: Any, rows: np.ndarray) -> float:
    s = fleet.samples
    started = time.perf_counter()
    store.bulk_append_columns(
        s.miner_id[rows],
        s.ts[rows],
        hashrate_ths=s.hashrate_ths[rows],
        temperature_c=s.temperature_c[rows],
        fan_speed_rpm=s.fan_speed_rpm[rows],
        power_w=s.power_w[rows],
        accepted_shares=s.accepted_shares[rows],
        rejected_shares=s.rejected_shares[rows],
        board_hashrate_ths=s.board_hashrate_ths[rows],
        board_temperature_c=s.board_temperature_c[rows],
        fan_speeds_rpm=s.fan_speeds_rpm[rows],
        quality=1,
    )
    return time.perf_counter() - started


def _pg_bytes(url: str) -> dict[str, int]:
    """The database's size, and the samples table's heap, indexes and TOAST (all partitions)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        row = conn.execute(
            """
            SELECT pg_database_size(current_database()),
                coalesce(sum(pg_relation_size(c.oid)), 0),
                coalesce(sum(pg_indexes_size(c.oid)), 0),
                coalesce(sum(pg_total_relation_size(c.oid) - pg_relation_size(c.oid)
                    - pg_indexes_size(c.oid)), 0)
            FROM pg_class c
            WHERE c.relkind = 'r' AND (c.relname = 'samples' OR c.oid IN (
                SELECT relid FROM pg_partition_tree('samples') WHERE isleaf))
            """
        ).fetchone()
    assert row is not None
    return {"database": int(row[0]), "heap": int(row[1]), "indexes": int(row[2]), "toast": int(row[3])}


def _pg_table_bytes(url: str, table: str) -> tuple[int, int]:
    """(rows, bytes with indexes and TOAST) of one table, after VACUUM ANALYZE."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {table}")
        row = conn.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _duckdb_table_bytes(path: Path, table: str) -> tuple[int, int]:
    """(rows, bytes) of one table: copied alone into a new DuckDB file, whose growth over an empty
    file is the table's compressed size."""
    import duckdb

    alone = path.with_name(f"{table}.duckdb")
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH '{path}' AS main_store (READ_ONLY)")
        conn.execute(f"ATTACH '{alone}' AS alone")
        conn.execute("CREATE TABLE alone.probe (x INTEGER)")
        conn.execute("CHECKPOINT alone")
        empty = alone.stat().st_size
        conn.execute(f"CREATE TABLE alone.{table} AS SELECT * FROM main_store.{table}")
        conn.execute("CHECKPOINT alone")
        rows = conn.execute(f"SELECT count(*) FROM alone.{table}").fetchall()[0][0]
        conn.execute("DETACH alone")
    return int(rows), alone.stat().st_size - empty


def _risk_points(fleet: Any, rows: np.ndarray) -> list[RiskPoint]:
    s = fleet.samples
    scored = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        RiskPoint(
            str(m),
            t.astype(datetime).replace(tzinfo=UTC),
            "lstm-20261101-000000",
            0.001 * (i % 997),
            RiskLevel.LOW,
            i % 50 == 0,
            0.01 * (i % 89),
            "autoencoder-20261101-000000",
            scored,
        )
        for i, (m, t) in enumerate(zip(s.miner_id[rows], s.ts[rows], strict=True))
    ]


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run(miners: int, days: int, repeats: int, seed: int) -> str:
    fleet = simulate_fleet(miners, days, seed, end=END)
    batches = _day_batches(fleet, days)
    n_samples = len(fleet.samples)
    work = Path(tempfile.mkdtemp(prefix="mfh-bench-store-"))
    duck_path = work / "fleet.duckdb"
    lines: list[str] = []
    with local_postgres(fsync=True) as pg:
        stores: dict[str, FleetStore] = {
            "DuckDB": open_store("", default_path=duck_path, sample_interval_s=INTERVAL_S),
            "PostgreSQL": open_store(pg.url, default_path=duck_path, sample_interval_s=INTERVAL_S),
        }
        try:
            stores["DuckDB"].checkpoint()
            empty = {"DuckDB": duck_path.stat().st_size, "PostgreSQL": _pg_bytes(pg.url)["database"]}
            for store in stores.values():
                store.upsert_miners(fleet.miners)
            batch_s: dict[str, list[float]] = {name: [] for name in stores}
            for rows in batches:
                for name, store in stores.items():
                    batch_s[name].append(_append(store, fleet, rows))
            for store in stores.values():
                store.add_failures(fleet.failures)
                store.add_planned_states(fleet.planned_states)
            stores["DuckDB"].checkpoint()
            wal = duck_path.with_name(duck_path.name + ".wal")
            grown = {
                "DuckDB": duck_path.stat().st_size
                + (wal.stat().st_size if wal.exists() else 0)
                - empty["DuckDB"],
            }
            pg_sizes = _pg_bytes(pg.url)
            grown["PostgreSQL"] = pg_sizes["database"] - empty["PostgreSQL"]
            counts = {name: store.counts().samples for name, store in stores.items()}
            assert counts["DuckDB"] == counts["PostgreSQL"] == n_samples, counts

            miner = fleet.miners[0].miner_id
            newest = stores["DuckDB"].miner_newest_sample(miner)
            assert newest is not None
            end = newest + timedelta(seconds=INTERVAL_S)
            reads: dict[str, Callable[[FleetStore], object]] = {
                "telemetry, 1 day at 5 min (289 steps)": lambda s: s.read_telemetry(
                    miner, end - timedelta(days=1), end, INTERVAL_S
                ),
                "telemetry, 7 days at 1 h (169 steps)": lambda s: s.read_telemetry(
                    miner, end - timedelta(days=7), end, 3600
                ),
                "model window, 24 samples (recent_series)": lambda s: s.recent_series(miner, 24),
                "raw samples, last day (read_samples)": lambda s: s.read_samples(
                    miner, end - timedelta(days=1), end
                ),
            }
            read_ms: dict[str, dict[str, float]] = {}
            for label, read in reads.items():
                times: dict[str, list[float]] = {name: [] for name in stores}
                for store in stores.values():
                    read(store)  # warm: caches, prepared plans
                for _ in range(repeats):
                    for name, store in stores.items():
                        started = time.perf_counter()
                        read(store)
                        times[name].append(time.perf_counter() - started)
                read_ms[label] = {name: _median_ms(t) for name, t in times.items()}

            for rows in batches:  # a dense risk history: one point per sample, as if every window scored
                points = _risk_points(fleet, rows)
                for store in stores.values():
                    store.write_risk_points(points)
            rolled_s: dict[str, float] = {}
            for name, store in stores.items():
                started = time.perf_counter()
                store.roll_up_samples(timedelta(days=1))
                rolled_s[name] = time.perf_counter() - started
        finally:
            for store in stores.values():
                store.close()
        # Each table's bytes alone; DuckDB's file is read once its store has closed it.
        tables = {
            table: {
                "DuckDB": _duckdb_table_bytes(duck_path, table),
                "PostgreSQL": _pg_table_bytes(pg.url, table),
            }
            for table in ("risk_history", "samples_hourly")
        }

    miner_days = miners * days
    per_batch = n_samples // len(batches)
    load = (os.getloadavg()[0], os.getloadavg()[2])
    lines += [
        "# Store benchmark: PostgreSQL vs DuckDB",
        "",
        f"`.venv/bin/python -m bench.store --miners {miners} --days {days} --repeats {repeats}` on "
        f"{platform.node()} ({os.cpu_count()} CPUs, load average {load[0]:.1f} now / {load[1]:.1f} over "
        f"15 min), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. DuckDB {_duckdb_version()}, PostgreSQL "
        f"{_pg_version()} (local cluster, fsync on, default settings).",
        "",
        f"Fleet: {miners} simulated miners x {days} days at 5 min = {n_samples:,} samples "
        f"({n_samples / miner_days:.0f} rows per miner-day), written as {len(batches)} daily batches of "
        f"about {per_batch:,} samples (3 boards and 4 fans each).",
        "",
        "| measure | DuckDB | PostgreSQL |",
        "|---|---:|---:|",
        f"| samples stored | {counts['DuckDB']:,} | {counts['PostgreSQL']:,} |",
        f"| store growth on disk | {_mib(grown['DuckDB'])} | {_mib(grown['PostgreSQL'])} |",
        f"| **bytes per miner-day** | **{grown['DuckDB'] / miner_days:,.0f}** | "
        f"**{grown['PostgreSQL'] / miner_days:,.0f}** |",
        f"| bytes per sample | {grown['DuckDB'] / n_samples:,.1f} | {grown['PostgreSQL'] / n_samples:,.1f} |",
        f"| PostgreSQL samples: heap / indexes / TOAST per miner-day | | "
        f"{pg_sizes['heap'] / miner_days:,.0f} / {pg_sizes['indexes'] / miner_days:,.0f} / "
        f"{pg_sizes['toast'] / miner_days:,.0f} |",
        f"| **columnar ingestion, median batch (samples/s)** | **{_rate(per_batch, batch_s['DuckDB'])}** | "
        f"**{_rate(per_batch, batch_s['PostgreSQL'])}** |",
        f"| columnar ingestion, whole load (samples/s) | {n_samples / sum(batch_s['DuckDB']):,.0f} | "
        f"{n_samples / sum(batch_s['PostgreSQL']):,.0f} |",
    ]
    for label, by_engine in read_ms.items():
        lines.append(f"| {label}, median ms | {by_engine['DuckDB']:.2f} | {by_engine['PostgreSQL']:.2f} |")
    for table, label, days_covered in (
        ("risk_history", "risk history, a point every 5 min", days),
        ("samples_hourly", f"hourly roll-up of {days - 1} days", days - 1),
    ):
        by_engine = tables[table]
        cells = [f"{b / (miners * days_covered):,.0f} ({r:,} rows)" for r, b in by_engine.values()]
        lines.append(f"| {label}: bytes per miner-day | {cells[0]} | {cells[1]} |")
    rolled = f"{rolled_s['DuckDB']:.2f} | {rolled_s['PostgreSQL']:.2f}"
    lines.append(f"| retention roll-up of {days - 1} days (s) | {rolled} |")
    lines += ["", f"Read times are medians of {repeats} runs per engine, interleaved, after one warm-up run."]
    return "\n".join(lines) + "\n"


def _rate(per_batch: int, seconds: list[float]) -> str:
    return f"{per_batch / statistics.median(seconds):,.0f}"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _duckdb_version() -> str:
    import duckdb

    return str(duckdb.__version__)


def _pg_version() -> str:
    from server.ops.pg_local import pg_bin_dir

    return pg_bin_dir().parent.name


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--miners", type=int, default=40)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = run(args.miners, args.days, args.repeats, args.seed)
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
