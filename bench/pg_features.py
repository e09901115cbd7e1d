"""Measures the PostgreSQL store's choices on a small simulated fleet, against a real PostgreSQL.

1. Columnar ingestion (binary COPY) into PostgreSQL and DuckDB: rows per second of bulk_append_columns.
2. The feature query: the ported SQL (what PostgresStore runs) against computing the same features in
   numpy from the fetched rows (server/store/postgres/rows_features.py, what PostgresStore runs;
   checked equal to the SQL first), for the
   whole fleet (training's read) and for one miner's window (a prediction's read).

    .venv/bin/python -m bench.pg_features [--miners 50] [--days 7] [--url postgresql://.../EMPTY_DB]

Without --url it starts a temporary local PostgreSQL (server/ops/pg_local.py). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from server.ops.pg_local import local_postgres
from server.sim import seed_store, simulate_fleet
from server.store import DuckDBStore
from server.store.postgres import PostgresStore, rows_features
from server.store.postgres import features as sql_features
from server.store.samples import to_utc_naive


def _append_rate(store: PostgresStore | DuckDBStore, end: datetime, miner_ids: list[str]) -> dict[str, Any]:
    """Rows per second of bulk_append_columns for one more day of the fleet (3 boards, 4 fans per
    sample), in hourly batches of 12 samples per miner, as a collector flushes them."""
    rng = np.random.default_rng(1)
    start = np.datetime64(to_utc_naive(end), "s")
    total, seconds = 0, 0.0
    for hour in range(24):
        steps = start + np.timedelta64(300, "s") * np.arange(hour * 12 + 1, hour * 12 + 13)
        ts = np.repeat(steps, len(miner_ids))
        ids = np.tile(np.array(miner_ids, dtype=object), 12)
        n = ts.shape[0]
        t0 = time.perf_counter()
        result = store.bulk_append_columns(
            ids,
            ts,
            hashrate_ths=rng.normal(100.0, 100.0 * 0.02, n),
            temperature_c=rng.normal(70.0, 70.0 * 0.02, n),
            fan_speed_rpm=rng.normal(5000.0, 5000.0 * 0.02, n),
            power_w=rng.normal(3200.0, 3200.0 * 0.02, n),
            accepted_shares=np.full(n, 1000.0 * (hour + 1)),
            rejected_shares=np.full(n, 5.0 * (hour + 1)),
            board_hashrate_ths=rng.normal(33.0, 1.0, (n, 3)),
            board_temperature_c=rng.normal(70.0, 2.0, (n, 3)),
            fan_speeds_rpm=rng.normal(5000.0, 50.0, (n, 4)),
        )
        seconds += time.perf_counter() - t0
        total += result.written
    return {"rows": total, "seconds": round(seconds, 2), "rows_per_s": round(total / seconds)}


def _best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@contextmanager
def _postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with local_postgres() as server:
        yield server.create_database("bench_features")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=50)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default="")
    args = parser.parse_args(argv)
    fleet = simulate_fleet(args.miners, args.days, 3, end=datetime(2026, 1, 1, tzinfo=UTC))
    report: dict[str, Any] = {"miners": args.miners, "days": args.days}
    with _postgres(args.url) as url, tempfile.TemporaryDirectory() as tmp:
        pg = PostgresStore.open(url)
        duck = DuckDBStore.open(Path(tmp) / "bench.duckdb")
        for name, store in (("postgresql", pg), ("duckdb", duck)):
            t0 = time.perf_counter()
            written = seed_store(store, fleet).written
            report[f"{name}_seed_s"] = round(time.perf_counter() - t0, 2)
            # Columnar appends alone: one more day after the seed, in batches of 288 rows x miners.
            report[f"{name}_ingest"] = _append_rate(store, fleet.end, [m.miner_id for m in fleet.miners])
            report[f"{name}_rows"] = written
        pg.checkpoint()
        miners = [m.miner_id for m in pg.list_miners()]
        one = miners[0]
        newest = pg.miner_newest_sample(one)
        assert newest is not None
        window_start = newest - timedelta(hours=2)

        # The numpy path is checked equal to the SQL before it is timed.
        def sql(ids: list[str], start: datetime | None = None, end: datetime | None = None) -> Any:
            with pg._reader() as cur:
                return sql_features.load_series(cur, ids, start, end, pg.sample_interval_s)

        def numpy_rows(ids: list[str], start: datetime | None = None, end: datetime | None = None) -> Any:
            with pg._reader() as cur:
                return rows_features.load_series(cur, ids, start, end, pg.sample_interval_s)

        by_sql = sql(miners)
        by_rows = numpy_rows(miners)
        for miner_id in miners:
            a, b = by_sql[miner_id], by_rows[miner_id]
            assert np.array_equal(a.timestamps, b.timestamps), miner_id
            np.testing.assert_allclose(a.values, b.values, rtol=1e-4, atol=1e-5, equal_nan=True)
        report["fleet_features_s"] = {
            "sql": round(_best(lambda: sql(miners), args.repeat), 3),
            "numpy_from_rows": round(_best(lambda: numpy_rows(miners), args.repeat), 3),
            "duckdb_sql": round(_best(lambda: duck.load_series(miners), args.repeat), 3),
        }
        report["window_features_ms"] = {
            "sql": round(1000 * _best(lambda: sql([one], window_start, newest), 20), 2),
            "numpy_from_rows": round(1000 * _best(lambda: numpy_rows([one], window_start, newest), 20), 2),
            "duckdb_sql": round(1000 * _best(lambda: duck.load_series([one], window_start, newest), 20), 2),
        }
        report["fleet_rows"] = int(sum(s.values.shape[0] for s in by_sql.values()))
        pg.close()
        duck.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
