"""The feature query and the telemetry history, ported to PostgreSQL.

The definitions are those of server/store/features.py (grid, features, glitch rule, look-back) and
server/store/history.py (steps, raw and hourly sources); this module only spells them in
PostgreSQL: grid buckets are epoch seconds (bigint), DISTINCT ON takes the latest sample of a bucket,
`regr_slope`, `stddev_pop` and `avg` run as window aggregates over the same trailing rows. The
telemetry history aggregates these grid rows in SQL; the model's series (load_series, what scoring
and training read) come from rows_features.py instead, measured 2x faster (bench/pg_features.py).
load_series here stays for that measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from server.records import (
    FEATURE_COLUMNS,
    PLAUSIBLE_FAN_RPM,
    PLAUSIBLE_HASHRATE_FACTOR,
    PLAUSIBLE_TEMPERATURE_C,
    MinerSeries,
)
from server.store.features import _FAR_FUTURE, _FAR_PAST, VALUE_COLUMNS, trailing_rows
from server.store.history import _HOURLY_FEATURE, _HOURLY_RAW, RAW_COLUMNS, TelemetryRows
from server.store.postgres.cursor import PgCursor
from server.store.samples import QUALITY_SENSOR_GLITCH, to_utc_naive


def series_sql(interval_s: int) -> str:
    """Grid rows (ix, t epoch seconds, observed, VALUE_COLUMNS) of the miners in %(miners)s (text[])
    from samples in [%(lo)s, %(hi)s), returned from bucket %(first)s (epoch seconds) on."""
    n_preceding = trailing_rows(interval_s) - 1
    hours_per_row = interval_s / 3600.0
    low, high = PLAUSIBLE_TEMPERATURE_C
    trusted = f"(s.quality & {QUALITY_SENSOR_GLITCH}) = 0 OR"  # else: keep the field only if plausible
    return f"""
    WITH wanted AS (
        SELECT miner_id, (ix - 1)::int AS ix
        FROM unnest(%(miners)s::text[]) WITH ORDINALITY AS w(miner_id, ix)
    ),
    bucketed AS (
        SELECT DISTINCT ON (s.miner_id, b.bucket) s.miner_id, b.bucket,
            CASE WHEN {trusted} m.nominal_hashrate_ths IS NULL OR m.nominal_hashrate_ths <= 0
                      OR s.hashrate_ths <= {PLAUSIBLE_HASHRATE_FACTOR} * m.nominal_hashrate_ths
                 THEN s.hashrate_ths END AS hashrate_ths,
            CASE WHEN {trusted} s.temperature_c BETWEEN {low} AND {high} THEN s.temperature_c END
                AS temperature_c,
            CASE WHEN {trusted} s.fan_speed_rpm <= {PLAUSIBLE_FAN_RPM} THEN s.fan_speed_rpm END
                AS fan_speed_rpm,
            s.power_w, s.accepted_shares, s.rejected_shares
        FROM samples s LEFT JOIN miners m USING (miner_id),
            LATERAL (SELECT floor(extract(epoch FROM s.ts) / {interval_s})::bigint * {interval_s} AS bucket) b
        WHERE s.miner_id = ANY(%(miners)s::text[]) AND s.ts >= %(lo)s AND s.ts < %(hi)s
        ORDER BY s.miner_id, b.bucket, s.ts DESC
    ),
    grid AS (
        SELECT miner_id, generate_series(min(bucket), max(bucket), {interval_s}::bigint) AS bucket
        FROM bucketed GROUP BY miner_id
    ),
    joined AS (
        SELECT g.miner_id, g.bucket, b.miner_id IS NOT NULL AS observed,
            b.hashrate_ths, b.temperature_c, b.fan_speed_rpm, b.power_w,
            b.accepted_shares AS acc, b.rejected_shares AS rej,
            lag(b.accepted_shares) OVER w AS prev_acc, lag(b.rejected_shares) OVER w AS prev_rej,
            (row_number() OVER w * {hours_per_row})::float8 AS t_h
        FROM grid g LEFT JOIN bucketed b ON b.miner_id = g.miner_id AND b.bucket = g.bucket
        WINDOW w AS (PARTITION BY g.miner_id ORDER BY g.bucket)
    ),
    deltas AS (
        SELECT *,
            (CASE WHEN acc IS NULL OR prev_acc IS NULL THEN NULL
                  WHEN acc >= prev_acc THEN acc - prev_acc ELSE acc END)::float8 AS d_acc,
            (CASE WHEN rej IS NULL OR prev_rej IS NULL THEN NULL
                  WHEN rej >= prev_rej THEN rej - prev_rej ELSE rej END)::float8 AS d_rej,
            hashrate_ths / nullif(power_w, 0) AS efficiency
        FROM joined
    ),
    features AS (
        SELECT *,
            d_rej / nullif(d_acc + d_rej, 0) AS rejection_rate,
            CASE WHEN count(temperature_c) OVER last_hour >= 2
                 THEN regr_slope(temperature_c, t_h) OVER last_hour END AS temperature_trend,
            CASE WHEN count(hashrate_ths) OVER last_hour >= 2 AND avg(hashrate_ths) OVER last_hour > 0
                 THEN stddev_pop(hashrate_ths) OVER last_hour / avg(hashrate_ths) OVER last_hour END
                AS hashrate_stability,
            CASE WHEN count(efficiency) OVER last_hour >= 2
                 THEN regr_slope(efficiency, t_h) OVER last_hour END AS power_efficiency_trend
        FROM deltas
        WINDOW last_hour AS (PARTITION BY miner_id ORDER BY bucket ROWS BETWEEN {n_preceding} PRECEDING
                            AND CURRENT ROW)
    )
    SELECT wanted.ix, f.bucket AS t, f.observed,
        hashrate_ths, temperature_c, fan_speed_rpm, power_w, d_acc, d_rej, rejection_rate, efficiency,
        temperature_trend, hashrate_stability, power_efficiency_trend
    FROM features f JOIN wanted USING (miner_id)
    WHERE f.bucket >= %(first)s
    ORDER BY wanted.ix, f.bucket
    """


def _bucket_floor_s(ts: datetime, interval_s: int) -> int:
    return int((ts - _FAR_PAST).total_seconds() // interval_s) * interval_s


def _empty(miner_id: str) -> MinerSeries:
    return MinerSeries(
        miner_id=miner_id,
        timestamps=np.empty(0, dtype="datetime64[s]"),
        values=np.empty((0, len(FEATURE_COLUMNS)), dtype=np.float32),
        observed=np.empty(0, dtype=bool),
    )


def _float_matrix(rows: list[tuple[Any, ...]], first_col: int, n_cols: int) -> np.ndarray:
    """(R, n_cols) float64 of rows[:, first_col:first_col + n_cols] with NaN for NULL."""
    return np.array([row[first_col : first_col + n_cols] for row in rows], dtype=np.float64).reshape(
        len(rows), n_cols
    )


def load_series(
    cur: PgCursor,
    miner_ids: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    interval_s: int,
) -> dict[str, MinerSeries]:
    """As server/store/features.load_series."""
    series = {miner_id: _empty(miner_id) for miner_id in miner_ids}
    if not miner_ids:
        return series
    first = _bucket_floor_s(to_utc_naive(start), interval_s) if start is not None else 0
    lookback_s = interval_s * (trailing_rows(interval_s) + 1)
    lo = _FAR_PAST + timedelta(seconds=first - lookback_s) if start is not None else _FAR_PAST
    hi = to_utc_naive(end) if end is not None else _FAR_FUTURE
    rows = cur.raw.execute(
        series_sql(interval_s),  # type: ignore[arg-type]  # built from constants
        {"miners": list(miner_ids), "lo": lo, "hi": hi, "first": first},
    ).fetchall()
    if not rows:
        return series
    ix = np.array([row[0] for row in rows], dtype=np.int64)
    timestamps = np.array([row[1] for row in rows], dtype=np.int64).astype("datetime64[s]")
    observed = np.array([bool(row[2]) for row in rows], dtype=bool)
    values = _float_matrix(rows, 3, len(VALUE_COLUMNS)).astype(np.float32)
    values[~observed] = np.nan
    bounds = np.flatnonzero(np.diff(ix)) + 1
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [ix.shape[0]]))
    for lo_row, hi_row in zip(starts, stops, strict=True):
        miner_id = miner_ids[int(ix[lo_row])]
        series[miner_id] = MinerSeries(
            miner_id=miner_id,
            timestamps=timestamps[lo_row:hi_row],
            values=values[lo_row:hi_row],
            observed=observed[lo_row:hi_row],
        )
    return series


# ---- telemetry on a grid (server/store/history.py) ------------------------------------------------


def _pg(expression: str) -> str:
    return "NULL::float8" if expression == "NULL" else expression.replace("::DOUBLE", "::float8")


def _epoch_step(column: str) -> str:
    return f"floor(extract(epoch FROM {column}))::bigint / %(step)s * %(step)s"


def telemetry_sql(interval_s: int) -> str:
    raw_stats = ", ".join(
        f"min({c})::float8 AS r_{c}_min, avg({c})::float8 AS r_{c}_mean, max({c})::float8 AS r_{c}_max"
        for c in RAW_COLUMNS
    )
    feature_stats = ", ".join(
        f"min({c}) AS f{j}_min, avg({c}) AS f{j}_mean, max({c}) AS f{j}_max"
        for j, c in enumerate(VALUE_COLUMNS)
    )
    hourly_raw = ", ".join(
        f"min({_pg(lo)}) AS r_{c}_min, sum(({_pg(mean)}) * n_samples) / sum(n_samples) AS r_{c}_mean, "
        f"max({_pg(hi)}) AS r_{c}_max"
        for c, (lo, mean, hi) in _HOURLY_RAW.items()
    )
    hourly_features = ", ".join(
        f"min({e}) AS f{j}_min, sum(({e}) * n_samples) / sum(n_samples) AS f{j}_mean, max({e}) AS f{j}_max"
        for j, e in enumerate(_pg(_HOURLY_FEATURE[name]) for name in FEATURE_COLUMNS)
    )
    observed_only = ", ".join(f"CASE WHEN observed THEN {c} END AS {c}" for c in VALUE_COLUMNS)
    picked = ", ".join(
        [
            f"coalesce(r.r_{c}_{s}, h.r_{c}_{s}) AS r_{c}_{s}"
            for c in RAW_COLUMNS
            for s in ("min", "mean", "max")
        ]
        + [
            f"coalesce(f.f{j}_{s}, h.f{j}_{s}) AS f{j}_{s}"
            for j in range(len(VALUE_COLUMNS))
            for s in ("min", "mean", "max")
        ]
    )
    return f"""
    WITH grid_rows AS ({series_sql(interval_s)}),
    steps AS (SELECT generate_series(%(first_step)s::bigint, %(last_step)s::bigint, %(step)s::bigint) AS s),
    raw AS (
        SELECT {_epoch_step("ts")} AS s, count(*) AS n, {raw_stats}
        FROM samples WHERE miner_id = %(miner)s AND ts >= %(start)s AND ts < %(end)s
        GROUP BY 1
    ),
    hourly AS (
        SELECT {_epoch_step("hour")} AS s, sum(n_samples) AS n, {hourly_raw}, {hourly_features}
        FROM samples_hourly WHERE miner_id = %(miner)s AND hour >= %(start_hour)s AND hour < %(end)s
        GROUP BY 1
    ),
    features AS (
        SELECT t / %(step)s * %(step)s AS s, {feature_stats}
        FROM (SELECT t, {observed_only} FROM grid_rows WHERE t >= %(start_s)s AND t < %(end_s)s) observed_rows
        GROUP BY 1
    )
    SELECT steps.s, (coalesce(r.n, 0) + coalesce(h.n, 0))::bigint AS n,
        CASE WHEN r.n IS NOT NULL THEN 'raw' WHEN h.n IS NOT NULL THEN 'hourly' ELSE '' END AS source,
        {picked}
    FROM steps LEFT JOIN raw r USING (s) LEFT JOIN hourly h USING (s) LEFT JOIN features f USING (s)
    ORDER BY steps.s
    """


def read_telemetry(
    cur: PgCursor, miner_id: str, start: datetime, end: datetime, step_s: int, interval_s: int
) -> TelemetryRows:
    """As server/store/history.read_telemetry."""
    start_s = int(start.timestamp())
    end_s = int(end.timestamp())
    first = start_s // interval_s * interval_s
    lookback_s = interval_s * (trailing_rows(interval_s) + 1)
    params = {
        "miner": miner_id,
        "miners": [miner_id],
        "start": to_utc_naive(start),
        "start_hour": to_utc_naive(start).replace(minute=0, second=0, microsecond=0),
        "end": to_utc_naive(end),
        "start_s": start_s,
        "end_s": end_s,
        "step": step_s,
        "first_step": start_s,
        "last_step": (end_s - 1) // step_s * step_s,
        "lo": datetime.fromtimestamp(first - lookback_s, UTC).replace(tzinfo=None),
        "hi": to_utc_naive(end),
        "first": first,
    }
    rows = cur.raw.execute(telemetry_sql(interval_s), params).fetchall()  # type: ignore[arg-type]
    n_raw = len(RAW_COLUMNS) * 3
    matrix = _float_matrix(rows, 3, n_raw + len(VALUE_COLUMNS) * 3)
    raw = {
        c: (matrix[:, 3 * i], matrix[:, 3 * i + 1], matrix[:, 3 * i + 2]) for i, c in enumerate(RAW_COLUMNS)
    }
    features = {
        name: (matrix[:, n_raw + 3 * j], matrix[:, n_raw + 3 * j + 1], matrix[:, n_raw + 3 * j + 2])
        for j, name in enumerate(FEATURE_COLUMNS)
    }
    return TelemetryRows(
        step_starts=np.array([row[0] for row in rows], dtype=np.int64),
        samples=np.array([row[1] for row in rows], dtype=np.int64),
        source=[str(row[2]) for row in rows],
        raw=raw,
        features=features,
    )
