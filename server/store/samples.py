"""Raw telemetry samples: staging column batches and writing them, reading samples back.

Write semantics, for both the row form (write_samples: tests, tools) and the column form
(bulk_append_columns: ingestion, the simulator), which share staging and write_staged:
- One transaction per batch: all of it is written or none of it.
- The key is (miner_id, ts). LAST WRITE WINS: a row whose key is already stored replaces the stored
  row; inside one batch the later row with the same key wins.
- A row identical to the stored one (every column equal, NULLs equal) is not rewritten and counts as a
  duplicate. `written` counts keys whose stored row was created or changed;
  `written + duplicates == len(batch)`.

Missing readings are NULL (NaN in staged float columns), never 0. `quality` is a bit set: QUALITY_PARTIAL
(set by the store when any of the six metrics is missing), QUALITY_SIMULATED and QUALITY_SENSOR_GLITCH
(set by the writer: `Sample.quality`, or the `quality` argument of the column path).

Retention: `roll_up` folds each miner's raw samples older than its newest sample minus the retention
into `samples_hourly` (one row per miner and UTC hour) and deletes them, in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np

from server.records import BoardReading, Sample
from server.store.sql import SqlCursor, fetch_one

QUALITY_PARTIAL = 1
"""At least one of the six metrics is missing."""
QUALITY_SIMULATED = 2
"""Written by the demo simulator."""
QUALITY_SENSOR_GLITCH = 4
"""A reading is possible but implausible for a working sensor (set by ingestion; the value is kept)."""

METRIC_COLUMNS: tuple[str, ...] = (
    "hashrate_ths",
    "temperature_c",
    "fan_speed_rpm",
    "power_w",
    "accepted_shares",
    "rejected_shares",
)
_BOARD_TYPE = "STRUCT(idx INTEGER, hashrate_ths DOUBLE, temperature_c DOUBLE, chip_temperature_c DOUBLE)[]"
_STORED_COLUMNS = (*METRIC_COLUMNS, "boards", "fan_speeds_rpm", "quality")


@dataclass(slots=True)
class StagedBatch:
    """A batch as numpy columns, ready to register with DuckDB.

    columns holds (N,) arrays: seq (int64), miner_id (object str, resolved miner_ids), ts
    (datetime64[us], naive UTC), the six metrics as float64 with NaN for missing, quality (uint8),
    and whatever boards_sql / fans_sql read (an object column of lists, or one column per board/fan).
    """

    columns: dict[str, np.ndarray]
    boards_sql: str = "NULL"
    fans_sql: str = "NULL"

    def __len__(self) -> int:
        return int(self.columns["seq"].shape[0])


def to_utc_naive(ts: datetime) -> datetime:
    """Naive UTC datetime for a TIMESTAMP column; a naive input is taken to be UTC already."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts


def _float_column(values: Sequence[float | int | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _board_lists(boards: Sequence[Sequence[BoardReading]]) -> np.ndarray:
    """(N,) object column of board-struct lists (None for a sample without boards) for _BOARD_TYPE."""
    column = np.empty(len(boards), dtype=object)
    for i, readings in enumerate(boards):
        column[i] = [
            {
                "idx": b.index,
                "hashrate_ths": b.hashrate_ths,
                "temperature_c": b.temperature_c,
                "chip_temperature_c": b.chip_temperature_c,
            }
            for b in readings
        ] or None
    return column


def _fan_lists(fans: Sequence[Sequence[float]]) -> np.ndarray:
    """(N,) object column of per-fan RPM lists (None for a sample without them)."""
    column = np.empty(len(fans), dtype=object)
    for i, rpms in enumerate(fans):
        column[i] = [float(rpm) for rpm in rpms] or None
    return column


def stage_samples(samples: Sequence[Sample]) -> StagedBatch:
    """Column batch from row samples (miner_id as given; the caller resolves aliases)."""
    n = len(samples)
    boards = _board_lists([s.boards for s in samples])
    fans = _fan_lists([s.fan_speeds_rpm for s in samples])
    columns = {
        "seq": np.arange(n, dtype=np.int64),
        "miner_id": np.array([s.miner_id for s in samples], dtype=object),
        "ts": np.array([to_utc_naive(s.timestamp) for s in samples], dtype="datetime64[us]"),
        "hashrate_ths": _float_column([s.hashrate_ths for s in samples]),
        "temperature_c": _float_column([s.temperature_c for s in samples]),
        "fan_speed_rpm": _float_column([s.fan_speed_rpm for s in samples]),
        "power_w": _float_column([s.power_w for s in samples]),
        "accepted_shares": _float_column([s.accepted_shares for s in samples]),
        "rejected_shares": _float_column([s.rejected_shares for s in samples]),
        "quality": np.array([s.quality for s in samples], dtype=np.uint8),
        "boards": boards,
        "fans": fans,
    }
    return StagedBatch(columns, boards_sql=f"boards::{_BOARD_TYPE}", fans_sql="fans::DOUBLE[]")


def stage_columns(
    miner_id: np.ndarray,
    ts: np.ndarray,
    metrics: dict[str, np.ndarray],
    *,
    quality: int | np.ndarray,
    board_hashrate_ths: np.ndarray | None = None,
    board_temperature_c: np.ndarray | None = None,
    fan_speeds_rpm: np.ndarray | None = None,
    board_readings: Sequence[Sequence[BoardReading]] | None = None,
    fan_readings: Sequence[Sequence[float]] | None = None,
) -> StagedBatch:
    """Column batch from numpy arrays; per-board (N, B) and per-fan (N, K) arrays become LIST columns,
    and so do ragged per-sample lists (board_readings, fan_readings: one sequence per sample, as
    ingestion receives them; they take the place of the (N, B) and (N, K) arrays)."""
    n = int(miner_id.shape[0])
    columns: dict[str, np.ndarray] = {
        "seq": np.arange(n, dtype=np.int64),
        "miner_id": np.asarray(miner_id, dtype=object),
        "ts": np.asarray(ts).astype("datetime64[us]"),
        "quality": np.broadcast_to(
            np.asarray(quality, dtype=np.uint8), (n,)
        ).copy(),  # one flag or one per row
    }
    for name in METRIC_COLUMNS:
        columns[name] = np.ascontiguousarray(metrics[name], dtype=np.float64)
    boards_sql = fans_sql = "NULL"
    if board_readings is not None:
        columns["boards"] = _board_lists(board_readings)
        boards_sql = f"boards::{_BOARD_TYPE}"
    elif board_hashrate_ths is not None:
        n_boards = board_hashrate_ths.shape[1]
        temps = (
            board_temperature_c
            if board_temperature_c is not None
            else np.full_like(board_hashrate_ths, np.nan)
        )
        parts = []
        for b in range(n_boards):
            columns[f"board{b}_h"] = np.ascontiguousarray(board_hashrate_ths[:, b], dtype=np.float64)
            columns[f"board{b}_t"] = np.ascontiguousarray(temps[:, b], dtype=np.float64)
            parts.append(
                f"struct_pack(idx := {b}, hashrate_ths := board{b}_h, temperature_c := board{b}_t, "
                "chip_temperature_c := NULL::DOUBLE)"
            )
        boards_sql = f"list_value({', '.join(parts)})"
    if fan_readings is not None:
        columns["fans"] = _fan_lists(fan_readings)
        fans_sql = "fans::DOUBLE[]"
    elif fan_speeds_rpm is not None:
        for k in range(fan_speeds_rpm.shape[1]):
            columns[f"fan{k}"] = np.ascontiguousarray(fan_speeds_rpm[:, k], dtype=np.float64)
        fans_sql = f"list_value({', '.join(f'fan{k}' for k in range(fan_speeds_rpm.shape[1]))})"
    for name in columns:
        if columns[name].shape[0] != n:
            raise ValueError(f"column {name!r} has {columns[name].shape[0]} rows, miner_id has {n}")
    return StagedBatch(columns, boards_sql=boards_sql, fans_sql=fans_sql)


def mark_partial(batch: StagedBatch) -> None:
    """Set QUALITY_PARTIAL on rows with a missing metric."""
    missing = np.zeros(len(batch), dtype=bool)
    for name in METRIC_COLUMNS:
        missing |= np.isnan(batch.columns[name])
    batch.columns["quality"] = batch.columns["quality"] | np.where(missing, QUALITY_PARTIAL, 0).astype(
        np.uint8
    )


def write_staged(
    cur: duckdb.DuckDBPyConnection,
    batch: StagedBatch,
    resolve: Callable[[list[str]], dict[str, str]],
) -> tuple[int, int]:
    """Upsert a staged batch inside the caller's transaction; returns (written, duplicates).

    resolve maps the batch's distinct miner ids to stored miner_ids (registering or refusing unknown
    ones). A batch with no key already stored and none repeated (the common append) goes straight into
    the table; otherwise it is staged in a temp table, deduplicated (last row wins), rows identical to
    stored ones are dropped, and the stored rows it replaces are deleted before the insert.
    """
    if len(batch) == 0:
        return 0, 0
    # Views registered on the cursor live until the caller closes it.
    cur.register("incoming", batch.columns)
    given = [str(row[0]) for row in cur.execute("SELECT DISTINCT miner_id FROM incoming").fetchall()]
    renamed = {alias: miner_id for alias, miner_id in resolve(given).items() if alias != miner_id}
    miner_expr = "i.miner_id"
    join = ""
    if renamed:
        cur.register(
            "renamed",
            {
                "alias": np.array(list(renamed), dtype=object),
                "miner_id": np.array(list(renamed.values()), dtype=object),
            },
        )
        miner_expr = "coalesce(r.miner_id, i.miner_id)"
        join = "LEFT JOIN renamed r ON r.alias = i.miner_id"
    source = f"""
        SELECT {miner_expr} AS miner_id, i.ts,
            i.hashrate_ths, i.temperature_c, i.fan_speed_rpm, i.power_w,
            i.accepted_shares::BIGINT AS accepted_shares, i.rejected_shares::BIGINT AS rejected_shares,
            {batch.boards_sql} AS boards, {batch.fans_sql} AS fan_speeds_rpm, i.quality, i.seq
        FROM incoming i {join}
    """
    clash = fetch_one(
        cur,
        f"""
        SELECT (SELECT count(*) FROM ({source}) d SEMI JOIN samples s USING (miner_id, ts)),
            (SELECT count(*) FROM (SELECT miner_id, ts FROM ({source}) GROUP BY ALL HAVING count(*) > 1))
        """,
    )
    names = ", ".join(("miner_id", "ts", *_STORED_COLUMNS))
    if clash == (0, 0):
        cur.execute(f"INSERT INTO samples ({names}) SELECT {names} FROM ({source})")
        return len(batch), 0
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE staged AS
        SELECT * EXCLUDE (seq) FROM ({source})
        QUALIFY row_number() OVER (PARTITION BY miner_id, ts ORDER BY seq DESC) = 1
        """
    )
    same = " AND ".join(f"d.{c} IS NOT DISTINCT FROM s.{c}" for c in _STORED_COLUMNS)
    cur.execute(
        f"DELETE FROM staged d USING samples s WHERE d.miner_id = s.miner_id AND d.ts = s.ts AND {same}"
    )
    row = fetch_one(cur, "SELECT count(*) FROM staged")
    written = int(row[0]) if row else 0
    cur.execute("DELETE FROM samples s USING staged d WHERE s.miner_id = d.miner_id AND s.ts = d.ts")
    cur.execute(f"INSERT INTO samples ({names}) SELECT {names} FROM staged")
    cur.execute("DROP TABLE staged")
    return written, len(batch) - written


def read_samples(
    cur: duckdb.DuckDBPyConnection,
    miner_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> list[Sample]:
    """Stored samples of one miner (already resolved) in [start, end), oldest first; the newest
    `limit` when limit is given."""
    rows = cur.execute(
        f"""
        SELECT * FROM (
            SELECT miner_id, ts, {", ".join(METRIC_COLUMNS)}, boards, fan_speeds_rpm, quality FROM samples
            WHERE miner_id = $1 AND ($2::TIMESTAMP IS NULL OR ts >= $2) AND ($3::TIMESTAMP IS NULL OR ts < $3)
            ORDER BY ts DESC LIMIT $4
        ) ORDER BY ts
        """,
        [
            miner_id,
            to_utc_naive(start) if start else None,
            to_utc_naive(end) if end else None,
            limit if limit is not None else 2**62,
        ],
    ).fetchall()
    return [sample_from_row(row) for row in rows]


_HOURLY_MEANS = ("hashrate_ths_mean", "temperature_c_mean", "fan_speed_rpm_mean", "power_w_mean")
_HOURLY_EXTREMES = {
    "hashrate_ths_min": "least",
    "hashrate_ths_max": "greatest",
    "temperature_c_max": "greatest",
    "fan_speed_rpm_min": "least",
    "power_w_max": "greatest",
}


def _delta_sql(column: str) -> str:
    # Per-interval delta of a cumulative counter; a decrease is a reboot, counted from 0 (as features.py).
    return (
        f"CASE WHEN {column} IS NULL OR prev_{column} IS NULL THEN NULL "
        f"WHEN {column} >= prev_{column} THEN {column} - prev_{column} ELSE {column} END"
    )


def _horizons_sql(retention_s: float) -> str:
    # Each miner's raw-retention horizon: its newest sample minus the retention, floored to the hour.
    return (
        "SELECT miner_id, date_trunc('hour', max(ts) - to_microseconds("
        f"{int(retention_s * 1_000_000)}::BIGINT)) AS horizon FROM samples"
    )


def hourly_rows_sql(old_samples: str, quality_type: str) -> str:
    """SELECT of samples_hourly rows (its columns, in order) folding the samples that the FROM item
    `old_samples` yields (alias s); both engines run it (quality_type: their small unsigned int)."""
    return f"""
        WITH d AS (
            SELECT s.miner_id, date_trunc('hour', s.ts) AS hour, s.hashrate_ths, s.temperature_c,
                s.fan_speed_rpm, s.power_w, s.quality, s.accepted_shares, s.rejected_shares,
                lag(s.accepted_shares) OVER w AS prev_accepted_shares,
                lag(s.rejected_shares) OVER w AS prev_rejected_shares
            FROM {old_samples}
            WINDOW w AS (PARTITION BY s.miner_id ORDER BY s.ts)
        )
        SELECT miner_id, hour, count(*)::INTEGER AS n_samples,
            avg(hashrate_ths) AS hashrate_ths_mean, min(hashrate_ths) AS hashrate_ths_min,
            max(hashrate_ths) AS hashrate_ths_max,
            avg(temperature_c) AS temperature_c_mean, max(temperature_c) AS temperature_c_max,
            avg(fan_speed_rpm) AS fan_speed_rpm_mean, min(fan_speed_rpm) AS fan_speed_rpm_min,
            avg(power_w) AS power_w_mean, max(power_w) AS power_w_max,
            sum({_delta_sql("accepted_shares")})::BIGINT AS accepted_shares_delta,
            sum({_delta_sql("rejected_shares")})::BIGINT AS rejected_shares_delta,
            bit_or(quality)::{quality_type} AS quality
        FROM d GROUP BY miner_id, hour
    """


def hourly_merge_sql(rolled: str) -> str:
    """INSERT of the hourly rows in table `rolled` into samples_hourly, merging an hour already
    there (late samples after an earlier roll-up); both engines run it."""
    h, x = "samples_hourly", "excluded"
    merged = [f"n_samples = {h}.n_samples + {x}.n_samples"]
    for name in _HOURLY_MEANS:
        merged.append(
            f"{name} = CASE WHEN {h}.{name} IS NULL THEN {x}.{name} WHEN {x}.{name} IS NULL THEN {h}.{name} "
            f"ELSE ({h}.{name} * {h}.n_samples + {x}.{name} * {x}.n_samples) "
            f"/ ({h}.n_samples + {x}.n_samples) END"
        )
    for name, pick in _HOURLY_EXTREMES.items():
        merged.append(f"{name} = {pick}({h}.{name}, {x}.{name})")  # NULLs are ignored
    for name in ("accepted_shares_delta", "rejected_shares_delta"):
        merged.append(
            f"{name} = CASE WHEN {h}.{name} IS NULL THEN {x}.{name} WHEN {x}.{name} IS NULL THEN {h}.{name} "
            f"ELSE {h}.{name} + {x}.{name} END"
        )
    merged.append(f"quality = {h}.quality | {x}.quality")
    return (
        f"INSERT INTO samples_hourly SELECT * FROM {rolled} ON CONFLICT (miner_id, hour) DO UPDATE SET "
        + ", ".join(merged)
    )


def roll_up(cur: duckdb.DuckDBPyConnection, retention: timedelta) -> tuple[int, int]:
    """Fold each miner's raw samples older than its horizon (its newest sample minus `retention`,
    floored to a whole UTC hour) into samples_hourly and delete them, inside the caller's
    transaction; returns (hourly rows written, raw samples deleted).

    The age counts from the miner's own data, never from the wall clock, so imported history stays
    raw however old it is; only a miner's data more than `retention` older than its newest sample
    is rolled up. Hours already in samples_hourly (late samples arriving after an earlier roll-up)
    are merged: counts add, extremes combine, means are weighted by sample count. A rolled hour's
    first share delta uses the previous raw sample only while it still exists (else NULL).
    """
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE horizons AS "
        f"{_horizons_sql(retention.total_seconds())} GROUP BY miner_id"
    )
    row = fetch_one(
        cur, "SELECT count(*) FROM samples s JOIN horizons h USING (miner_id) WHERE s.ts < h.horizon"
    )
    n_old = int(row[0]) if row else 0
    if n_old == 0:
        cur.execute("DROP TABLE horizons")
        return 0, 0
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE rolled AS "
        + hourly_rows_sql(
            "samples s SEMI JOIN horizons h ON s.miner_id = h.miner_id AND s.ts < h.horizon", "UTINYINT"
        )
    )
    cur.execute(hourly_merge_sql("rolled"))
    row = fetch_one(cur, "SELECT count(*) FROM rolled")
    n_hours = int(row[0]) if row else 0
    cur.execute("DROP TABLE rolled")
    cur.execute("DELETE FROM samples s USING horizons h WHERE s.miner_id = h.miner_id AND s.ts < h.horizon")
    cur.execute("DROP TABLE horizons")
    return n_hours, n_old


def count_past_horizon(
    cur: duckdb.DuckDBPyConnection, aliases: np.ndarray, ts: np.ndarray, retention: timedelta
) -> int:
    """How many of these (already stored) samples, named by any alias of their miner (N,) with their
    times (N,) as naive UTC datetime64, lie before their miner's raw-retention horizon (see roll_up),
    so that the next retention pass keeps them only as hourly rows."""
    cur.register("reported", {"alias": np.asarray(aliases, dtype=object), "ts": ts.astype("datetime64[us]")})
    row = fetch_one(
        cur,
        f"""
        WITH resolved AS (
            SELECT a.miner_id, r.ts FROM reported r JOIN miner_aliases a ON a.alias = r.alias
        ),
        horizons AS (
            {_horizons_sql(retention.total_seconds())}
            WHERE miner_id IN (SELECT DISTINCT miner_id FROM resolved) GROUP BY miner_id
        )
        SELECT count(*) FROM resolved r JOIN horizons h USING (miner_id) WHERE r.ts < h.horizon
        """,
    )
    cur.unregister("reported")
    return int(row[0]) if row else 0


def recent_times(
    cur: SqlCursor, aliases: np.ndarray, until: np.ndarray, lookback: timedelta, limit: int
) -> dict[str, list[datetime]]:
    """alias -> the times of its miner's newest `limit` stored samples in [until - lookback, until),
    oldest first, for miners named by any alias (M,) with a naive-UTC datetime64 `until` each (M,);
    miners with none are left out. Ingestion reads a miner's recent sample spacing from it."""
    cur.register(
        "asked", {"alias": np.asarray(aliases, dtype=object), "until": until.astype("datetime64[us]")}
    )
    rows = cur.execute(
        """
        SELECT alias, ts FROM (
            SELECT q.alias, s.ts, row_number() OVER (PARTITION BY q.alias ORDER BY s.ts DESC) AS newest
            FROM asked q JOIN miner_aliases a ON a.alias = q.alias
            JOIN samples s ON s.miner_id = a.miner_id AND s.ts < q.until AND s.ts >= q.until - $1
        ) recent WHERE newest <= $2 ORDER BY alias, ts
        """,
        [lookback, limit],
    ).fetchall()
    cur.unregister("asked")
    times: dict[str, list[datetime]] = {}
    for alias, ts in rows:
        times.setdefault(str(alias), []).append(ts.replace(tzinfo=UTC))
    return times


def read_hourly(cur: duckdb.DuckDBPyConnection, miner_id: str) -> list[dict[str, object]]:
    """One miner's (resolved) hourly roll-up rows as dicts, oldest first."""
    result = cur.execute("SELECT * FROM samples_hourly WHERE miner_id = ? ORDER BY hour", [miner_id])
    names = [d[0] for d in result.description]
    rows = result.fetchall()
    return [
        {**dict(zip(names, row, strict=True)), "hour": row[names.index("hour")].replace(tzinfo=UTC)}
        for row in rows
    ]


def sample_from_row(row: Sequence[Any]) -> Sample:
    """A Sample from a row (miner_id, ts naive UTC, hashrate, temperature, fan, power, accepted,
    rejected, boards as dicts, fans, quality), as both engines' sample reads return it."""
    mid, ts, hashrate, temp, fan, power, accepted, rejected, boards, fans, quality = row
    return Sample(
        miner_id=str(mid),
        timestamp=ts.replace(tzinfo=UTC),
        hashrate_ths=hashrate,
        temperature_c=temp,
        fan_speed_rpm=fan,
        power_w=power,
        accepted_shares=accepted,
        rejected_shares=rejected,
        boards=tuple(
            BoardReading(b["idx"], b["hashrate_ths"], b["temperature_c"], b["chip_temperature_c"])
            for b in boards or ()
        ),
        fan_speeds_rpm=tuple(fans or ()),
        quality=int(quality),
    )
