"""Raw telemetry in PostgreSQL: daily partitions, binary-COPY writes, reads, retention.

Semantics are those of server/store/samples.py (last write wins on (miner_id, ts), identical rows
count as duplicates, `written + duplicates == len(batch)`, one transaction per batch). How:
- Partitions. `samples` is partitioned by range of ts, one partition per UTC day
  (`samples_YYYYMMDD`), created before a write that needs it, in a transaction of its own (so a
  failed write never leaves the partition cache wrong); the primary key (miner_id, ts) indexes each.
- The common append (no key of the batch stored yet, none repeated) is one binary COPY straight into
  `samples` (PostgreSQL routes rows to their partitions). A batch that may touch stored keys (its
  miners have rows in its time span) or repeats a key is copied into a temporary table and merged
  with INSERT ... ON CONFLICT DO UPDATE ... WHERE the row differs; the rows it changed are `written`.
- Retention folds rows past each miner's horizon into samples_hourly (the shared roll-up SQL), then
  drops every partition in which no row is still inside its miner's horizon (DROP TABLE: no delete,
  no vacuum) and deletes the old rows from the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from psycopg import sql
from psycopg.types.json import Jsonb

from server.errors import InvalidArgument
from server.records import Sample
from server.store.postgres.cursor import PgCursor
from server.store.samples import (
    METRIC_COLUMNS,
    StagedBatch,
    hourly_merge_sql,
    hourly_rows_sql,
    sample_from_row,
    to_utc_naive,
)

COLUMNS = (*METRIC_COLUMNS, "boards", "fan_speeds_rpm", "quality")
_NAMES = ("miner_id", "ts", *COLUMNS)
_COPY_TYPES = ["text", "timestamp", "float8", "float8", "float8", "float8", "int8", "int8", "jsonb"]
_COPY_TYPES += ["float8[]", "int2"]
_DAY = np.timedelta64(1, "D")


def partition_name(day: np.datetime64) -> str:
    return "samples_" + str(day.astype("datetime64[D]")).replace("-", "")


def partition_ddl(day: np.datetime64) -> sql.Composed:
    start = day.astype("datetime64[D]")
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF samples FOR VALUES FROM ({}) TO ({})").format(
        sql.Identifier(partition_name(start)),
        sql.Literal(str(start)),
        sql.Literal(str(start + _DAY)),
    )


def partition_days(ts: np.ndarray) -> set[np.datetime64]:
    """The UTC days (datetime64[D]) the naive-UTC times (N,) fall on."""
    return set(np.unique(np.asarray(ts).astype("datetime64[D]")))


def list_partitions(cur: PgCursor) -> dict[str, tuple[datetime, datetime]]:
    """Partition name -> its [start, end) bounds, from the catalog."""
    rows = cur.raw.execute(
        """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'samples'::regclass
        """
    ).fetchall()
    bounds: dict[str, tuple[datetime, datetime]] = {}
    for name, bound in rows:
        # FOR VALUES FROM ('2025-01-01 00:00:00') TO ('2025-01-02 00:00:00')
        parts = str(bound).split("'")
        bounds[str(name)] = (datetime.fromisoformat(parts[1]), datetime.fromisoformat(parts[3]))
    return bounds


# ---- writing -------------------------------------------------------------------------------------


def _floats(column: np.ndarray) -> list[float | None]:
    return [None if v != v else v for v in np.asarray(column, dtype=np.float64).tolist()]


_INT64_LIMIT = 2.0**63


def _counters(name: str, column: np.ndarray) -> list[int | None]:
    values = np.rint(np.asarray(column, dtype=np.float64))
    if np.any(np.abs(values[~np.isnan(values)]) >= _INT64_LIMIT):
        raise InvalidArgument(f"the store rejected the data: a {name} value is out of range for BIGINT")
    return [None if v != v else int(v) for v in values.tolist()]


def _number(value: float | None) -> str:
    """A JSON number, or null for a missing (None or NaN) reading."""
    return "null" if value is None or value != value else repr(float(value))


def _numbers(column: np.ndarray) -> list[str]:
    """JSON numbers of a float column (null for NaN)."""
    return ["null" if v != v else repr(v) for v in np.asarray(column, dtype=np.float64).tolist()]


def _board(idx: object, hashrate: str, temperature: str, chip: str) -> str:
    return (
        f'{{"idx":{int(idx)},"hashrate_ths":{hashrate},"temperature_c":{temperature},'  # type: ignore[call-overload]
        f'"chip_temperature_c":{chip}}}'
    )


def _as_json(text: str) -> str:
    return text


def _boards(batch: StagedBatch) -> list[Jsonb | None]:
    """Per-row board lists as the DuckDB store keeps them (boards_sql): a ragged column, or one pair of
    columns per board, or none. The JSON text is written here (no encoder per row: 3x faster)."""
    cols = batch.columns
    n = len(batch)
    if "boards" in cols:
        return [
            Jsonb(
                "["
                + ",".join(
                    _board(
                        b["idx"],
                        _number(b["hashrate_ths"]),
                        _number(b["temperature_c"]),
                        _number(b["chip_temperature_c"]),
                    )
                    for b in readings
                )
                + "]",
                dumps=_as_json,
            )
            if readings
            else None
            for readings in cols["boards"].tolist()
        ]
    n_boards = sum(1 for name in cols if name.startswith("board") and name.endswith("_h"))
    if n_boards == 0:
        return [None] * n
    per_board = [
        [
            _board(b, h, t, "null")
            for h, t in zip(
                map(_number, cols[f"board{b}_h"].tolist()),
                map(_number, cols[f"board{b}_t"].tolist()),
                strict=True,
            )
        ]
        for b in range(n_boards)
    ]
    return [Jsonb("[" + ",".join(row) + "]", dumps=_as_json) for row in zip(*per_board, strict=True)]


def _fans(batch: StagedBatch) -> list[list[float | None] | None]:
    cols = batch.columns
    n = len(batch)
    if "fans" in cols:
        return [list(f) if f else None for f in cols["fans"].tolist()]
    n_fans = sum(1 for name in cols if name.startswith("fan") and name[3:].isdigit())
    if n_fans == 0:
        return [None] * n
    per_fan = [_floats(cols[f"fan{k}"]) for k in range(n_fans)]
    return [[per_fan[k][i] for k in range(n_fans)] for i in range(n)]


def _copy_rows(
    cur: PgCursor, table: str, names: tuple[str, ...], types: list[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with cur.raw.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def write_staged(
    cur: PgCursor,
    batch: StagedBatch,
    resolve: Callable[[list[str]], dict[str, str]],
) -> tuple[int, int]:
    """Upsert a staged batch inside the caller's transaction (partitions must exist); returns
    (written, duplicates). See the module docstring."""
    n = len(batch)
    if n == 0:
        return 0, 0
    cols = batch.columns
    given = [str(m) for m in cols["miner_id"].tolist()]
    renamed = resolve(sorted(set(given)))
    miner_ids = [renamed.get(m, m) for m in given]
    ts_us = np.asarray(cols["ts"]).astype("datetime64[us]")
    ts = ts_us.tolist()
    rows = list(
        zip(
            miner_ids,
            ts,
            *(_floats(cols[c]) for c in METRIC_COLUMNS[:4]),
            _counters("accepted_shares", cols["accepted_shares"]),
            _counters("rejected_shares", cols["rejected_shares"]),
            _boards(batch),
            _fans(batch),
            np.asarray(cols["quality"]).astype(int).tolist(),
            strict=True,
        )
    )
    keys = set(zip(miner_ids, ts_us.astype(np.int64).tolist(), strict=True))
    if len(keys) == n and not _may_clash(cur, miner_ids, ts_us):
        _copy_rows(cur, "samples", _NAMES, _COPY_TYPES, rows)
        return n, 0
    cur.raw.execute(
        "CREATE TEMP TABLE staged_samples (LIKE samples INCLUDING DEFAULTS, seq BIGINT) ON COMMIT DROP"
    )
    _copy_rows(
        cur,
        "staged_samples",
        (*_NAMES, "seq"),
        [*_COPY_TYPES, "int8"],
        (row + (i,) for i, row in enumerate(rows)),
    )
    names = ", ".join(_NAMES)
    changed = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS)
    stored = ", ".join(f"samples.{c}" for c in COLUMNS)
    incoming = ", ".join(f"excluded.{c}" for c in COLUMNS)
    cur.raw.execute(
        f"""
        INSERT INTO samples ({names})
        SELECT DISTINCT ON (miner_id, ts) {names} FROM staged_samples ORDER BY miner_id, ts, seq DESC
        ON CONFLICT (miner_id, ts) DO UPDATE SET {changed}
        WHERE ({stored}) IS DISTINCT FROM ({incoming})
        """  # type: ignore[arg-type]  # built from constant column names
    )
    written = max(cur.raw.rowcount, 0)
    cur.raw.execute("DROP TABLE staged_samples")
    return written, n - written


def _may_clash(cur: PgCursor, miner_ids: list[str], ts_us: np.ndarray) -> bool:
    """Whether any miner of the batch has a stored sample inside the batch's time span for it (then
    the batch may overwrite stored keys and takes the merging path)."""
    names, which = np.unique(np.asarray(miner_ids, dtype=object), return_inverse=True)
    ticks = ts_us.astype(np.int64)
    lo = np.full(names.shape[0], np.iinfo(np.int64).max)
    hi = np.full(names.shape[0], np.iinfo(np.int64).min)
    np.minimum.at(lo, which, ticks)
    np.maximum.at(hi, which, ticks)
    row = cur.raw.execute(
        """
        SELECT EXISTS (
            SELECT 1 FROM unnest(%s::text[], %s::timestamp[], %s::timestamp[]) AS b(miner_id, lo, hi)
            WHERE EXISTS (
                SELECT 1 FROM samples s WHERE s.miner_id = b.miner_id AND s.ts BETWEEN b.lo AND b.hi
            )
        )
        """,
        [
            [str(m) for m in names.tolist()],
            lo.astype("datetime64[us]").tolist(),
            hi.astype("datetime64[us]").tolist(),
        ],
    ).fetchone()
    return bool(row and row[0])


# ---- reading -------------------------------------------------------------------------------------


def read_samples(
    cur: PgCursor,
    miner_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> list[Sample]:
    """Stored samples of one (resolved) miner in [start, end), oldest first; the newest `limit`."""
    rows = cur.raw.execute(
        f"""
        SELECT * FROM (
            SELECT miner_id, ts, {", ".join(METRIC_COLUMNS)}, boards, fan_speeds_rpm, quality FROM samples
            WHERE miner_id = %(miner)s AND ts >= %(start)s AND ts < %(end)s
            ORDER BY ts DESC LIMIT %(limit)s
        ) newest ORDER BY ts
        """,  # type: ignore[arg-type]  # built from constant column names
        {
            "miner": miner_id,
            "start": to_utc_naive(start) if start else datetime(1, 1, 1),
            "end": to_utc_naive(end) if end else datetime(9999, 12, 31),
            "limit": limit if limit is not None else 2**62,
        },
    ).fetchall()
    return [sample_from_row(row) for row in rows]


def read_hourly(cur: PgCursor, miner_id: str) -> list[dict[str, object]]:
    """One (resolved) miner's hourly roll-up rows as dicts, oldest first."""
    cur.raw.execute("SELECT * FROM samples_hourly WHERE miner_id = %s ORDER BY hour", [miner_id])
    names = [d.name for d in cur.raw.description or ()]
    return [
        {**dict(zip(names, row, strict=True)), "hour": row[names.index("hour")].replace(tzinfo=UTC)}
        for row in cur.raw.fetchall()
    ]


# ---- retention -----------------------------------------------------------------------------------

_HORIZONS = """
    SELECT m.miner_id, date_trunc('hour', n.newest - make_interval(secs => %(retention_s)s)) AS horizon
    FROM miners m, LATERAL (SELECT max(ts) AS newest FROM samples s WHERE s.miner_id = m.miner_id) n
    WHERE n.newest IS NOT NULL
"""


def roll_up(cur: PgCursor, retention: timedelta) -> tuple[int, int, list[str]]:
    """Fold each miner's raw samples older than its horizon (server/store/samples.roll_up) into
    samples_hourly, then drop the partitions left with only such rows and delete them from the
    others; returns (hourly rows written, raw samples removed, partitions dropped)."""
    cur.raw.execute(
        f"CREATE TEMP TABLE horizons ON COMMIT DROP AS {_HORIZONS}",  # type: ignore[arg-type]
        {"retention_s": retention.total_seconds()},
    )
    row = cur.raw.execute(
        "SELECT count(*) FROM samples s JOIN horizons h USING (miner_id) WHERE s.ts < h.horizon"
    ).fetchone()
    n_old = int(row[0]) if row else 0
    if n_old == 0:
        cur.raw.execute("DROP TABLE horizons")
        return 0, 0, []
    cur.raw.execute(
        "CREATE TEMP TABLE rolled ON COMMIT DROP AS "  # type: ignore[arg-type]
        + hourly_rows_sql(
            "samples s JOIN horizons h ON s.miner_id = h.miner_id AND s.ts < h.horizon", "SMALLINT"
        )
    )
    cur.raw.execute(hourly_merge_sql("rolled"))  # type: ignore[arg-type]
    row = cur.raw.execute("SELECT count(*) FROM rolled").fetchone()
    n_hours = int(row[0]) if row else 0
    row = cur.raw.execute("SELECT max(horizon) FROM horizons").fetchone()
    latest_horizon = row[0] if row else None
    dropped: list[str] = []
    for name, (start, _end) in sorted(list_partitions(cur).items()):
        if latest_horizon is None or start >= latest_horizon:
            continue  # no row in it can be old
        part = sql.Identifier(name)
        keeps = cur.raw.execute(
            sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {} s JOIN horizons h USING (miner_id) WHERE s.ts >= h.horizon)"
            ).format(part)
        ).fetchone()
        if keeps and keeps[0]:
            cur.raw.execute(
                sql.SQL(
                    "DELETE FROM {} s USING horizons h WHERE s.miner_id = h.miner_id AND s.ts < h.horizon"
                ).format(part)
            )
        else:
            cur.raw.execute(sql.SQL("DROP TABLE {}").format(part))
            dropped.append(name)
    cur.raw.execute("DROP TABLE rolled")
    cur.raw.execute("DROP TABLE horizons")
    return n_hours, n_old, dropped


def count_past_horizon(cur: PgCursor, aliases: np.ndarray, ts: np.ndarray, retention: timedelta) -> int:
    """As server/store/samples.count_past_horizon."""
    row = cur.raw.execute(
        """
        WITH reported AS (
            SELECT * FROM unnest(%(aliases)s::text[], %(ts)s::timestamp[]) AS r(alias, ts)
        ),
        resolved AS (SELECT a.miner_id, r.ts FROM reported r JOIN miner_aliases a ON a.alias = r.alias),
        horizons AS (
            SELECT m.miner_id,
                date_trunc('hour', (SELECT max(ts) FROM samples s WHERE s.miner_id = m.miner_id)
                    - make_interval(secs => %(retention_s)s)) AS horizon
            FROM (SELECT DISTINCT miner_id FROM resolved) m
        )
        SELECT count(*) FROM resolved r JOIN horizons h USING (miner_id) WHERE r.ts < h.horizon
        """,
        {
            "aliases": [str(a) for a in np.asarray(aliases).tolist()],
            "ts": np.asarray(ts).astype("datetime64[us]").tolist(),
            "retention_s": retention.total_seconds(),
        },
    ).fetchone()
    return int(row[0]) if row else 0
