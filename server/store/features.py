"""THE one place where model features are computed: SQL window functions over a regular time grid.

Grid. Samples are placed on a regular grid of `interval_s` seconds, buckets aligned to the Unix epoch
(bucket = floor(ts / interval) * interval). When several samples fall into one bucket the latest one is
used. Each miner's grid runs from its first to its last bucket with a sample inside the requested
range [start, end); a bucket with no sample is kept as a row with every feature NaN and observed=False.
Gaps are explicit, never interpolated. The trailing windows below look back through the grid, so
rows just after a gap see fewer values.

Features, in FEATURE_COLUMNS order (N = the trailing-hour window = max(2, 3600 // interval_s) rows,
the current row included; 12 rows at 5-minute samples):
- hashrate: reported hashrate, TH/s.
- temperature: reported temperature, °C.
- fan_speed: reported fan speed, RPM.
- power: reported power draw, W.
- accepted_shares: accepted shares in this interval: the cumulative counter minus the previous grid
  row's counter; when the counter went down (the miner rebooted and counted again from 0) the delta
  is the new value itself. NULL when this or the previous row's counter is missing.
- rejected_shares: the same for the rejected-shares counter.
- rejection_rate: Δrejected / (Δaccepted + Δrejected) in this interval; NULL when either delta is
  NULL or no shares were submitted.
- efficiency: hashrate / power, TH/s per W; NULL when power is NULL or 0.
- temperature_trend: least-squares slope (regr_slope) of temperature against time over the trailing
  N rows, °C per hour; NULL with fewer than two temperatures.
- hashrate_stability: coefficient of variation of hashrate over the trailing N rows, population
  standard deviation / mean; 0 is perfectly stable. NULL with fewer than two hashrates or a mean <= 0.
- power_efficiency_trend: least-squares slope of efficiency against time over the trailing N rows,
  TH/s per W per hour; NULL with fewer than two efficiencies.

Sensor glitches. A sample flagged QUALITY_SENSOR_GLITCH at ingestion is stored as reported, but the
implausible field itself (temperature outside PLAUSIBLE_TEMPERATURE_C, fan speed above
PLAUSIBLE_FAN_RPM, hashrate above PLAUSIBLE_HASHRATE_FACTOR x the miner's nominal) reads as missing
here, so a broken sensor is never taken for an overheating or failing miner; the sample's other
fields are used as usual.

When `start` is given, the query reads N + 1 extra intervals before it so the first returned rows
have their deltas and trends; those look-back rows are not returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import duckdb
import numpy as np

from server.records import (
    FEATURE_COLUMNS,
    PLAUSIBLE_FAN_RPM,
    PLAUSIBLE_HASHRATE_FACTOR,
    PLAUSIBLE_TEMPERATURE_C,
    MinerSeries,
)
from server.store.samples import QUALITY_SENSOR_GLITCH, to_utc_naive

_FAR_PAST = datetime(1970, 1, 1)
_FAR_FUTURE = datetime(9999, 1, 1)


def trailing_rows(interval_s: int) -> int:
    """N, the rows in the trailing-hour window (current row included)."""
    return max(2, 3600 // interval_s)


def _series_sql(interval_s: int) -> str:
    n_preceding = trailing_rows(interval_s) - 1
    hours_per_row = interval_s / 3600.0
    width = f"INTERVAL {int(interval_s)} SECOND"
    low, high = PLAUSIBLE_TEMPERATURE_C
    trusted = f"(s.quality & {QUALITY_SENSOR_GLITCH}) = 0 OR"  # else: keep the field only if plausible
    return f"""
    WITH bucketed AS (
        SELECT s.miner_id, time_bucket({width}, s.ts, TIMESTAMP '1970-01-01') AS bucket,
            CASE WHEN {trusted} m.nominal_hashrate_ths IS NULL OR m.nominal_hashrate_ths <= 0
                      OR s.hashrate_ths <= {PLAUSIBLE_HASHRATE_FACTOR} * m.nominal_hashrate_ths
                 THEN s.hashrate_ths END AS hashrate_ths,
            CASE WHEN {trusted} s.temperature_c BETWEEN {low} AND {high} THEN s.temperature_c END
                AS temperature_c,
            CASE WHEN {trusted} s.fan_speed_rpm <= {PLAUSIBLE_FAN_RPM} THEN s.fan_speed_rpm END
                AS fan_speed_rpm,
            s.power_w, s.accepted_shares, s.rejected_shares
        FROM samples s LEFT JOIN miners m USING (miner_id)
        WHERE s.miner_id IN (SELECT miner_id FROM wanted) AND s.ts >= $lo AND s.ts < $hi
        QUALIFY row_number() OVER (PARTITION BY s.miner_id, bucket ORDER BY s.ts DESC) = 1
    ),
    grid AS (
        SELECT miner_id, unnest(generate_series(min(bucket), max(bucket), {width})) AS bucket
        FROM bucketed GROUP BY miner_id
    ),
    joined AS (
        SELECT g.miner_id, g.bucket, b.miner_id IS NOT NULL AS observed,
            b.hashrate_ths, b.temperature_c, b.fan_speed_rpm, b.power_w,
            b.accepted_shares AS acc, b.rejected_shares AS rej,
            lag(b.accepted_shares) OVER w AS prev_acc, lag(b.rejected_shares) OVER w AS prev_rej,
            row_number() OVER w * {hours_per_row} AS t_h
        FROM grid g LEFT JOIN bucketed b USING (miner_id, bucket)
        WINDOW w AS (PARTITION BY g.miner_id ORDER BY g.bucket)
    ),
    deltas AS (
        SELECT *,
            CASE WHEN acc IS NULL OR prev_acc IS NULL THEN NULL
                 WHEN acc >= prev_acc THEN acc - prev_acc ELSE acc END::DOUBLE AS d_acc,
            CASE WHEN rej IS NULL OR prev_rej IS NULL THEN NULL
                 WHEN rej >= prev_rej THEN rej - prev_rej ELSE rej END::DOUBLE AS d_rej,
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
    SELECT wanted.ix, epoch(f.bucket)::BIGINT AS t, f.observed,
        hashrate_ths, temperature_c, fan_speed_rpm, power_w, d_acc, d_rej, rejection_rate, efficiency,
        temperature_trend, hashrate_stability, power_efficiency_trend
    FROM features f JOIN wanted USING (miner_id)
    WHERE f.bucket >= $first
    ORDER BY wanted.ix, f.bucket
    """


def feature_rows_sql(interval_s: int) -> str:
    """The feature query above, for callers that aggregate its grid rows further in SQL (a miner's
    telemetry history): it needs a registered `wanted` relation (miner_id, ix) and the parameters
    $lo, $hi and $first as load_series passes them; it yields ix, t (epoch seconds), observed and
    the columns of VALUE_COLUMNS."""
    return _series_sql(interval_s)


VALUE_COLUMNS = (
    "hashrate_ths",
    "temperature_c",
    "fan_speed_rpm",
    "power_w",
    "d_acc",
    "d_rej",
    "rejection_rate",
    "efficiency",
    "temperature_trend",
    "hashrate_stability",
    "power_efficiency_trend",
)
assert len(VALUE_COLUMNS) == len(FEATURE_COLUMNS)


def _bucket_floor(ts: datetime, interval_s: int) -> datetime:
    epoch_s = int((ts - _FAR_PAST).total_seconds() // interval_s) * interval_s
    return _FAR_PAST + timedelta(seconds=epoch_s)


def _empty(miner_id: str) -> MinerSeries:
    return MinerSeries(
        miner_id=miner_id,
        timestamps=np.empty(0, dtype="datetime64[s]"),
        values=np.empty((0, len(FEATURE_COLUMNS)), dtype=np.float32),
        observed=np.empty(0, dtype=bool),
    )


def load_series(
    cur: duckdb.DuckDBPyConnection,
    miner_ids: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    interval_s: int,
) -> dict[str, MinerSeries]:
    """Features of the given (resolved) miners in [start, end) in one query; one entry per miner,
    empty when it has no sample in the range."""
    series = {miner_id: _empty(miner_id) for miner_id in miner_ids}
    if not miner_ids:
        return series
    first = _bucket_floor(to_utc_naive(start), interval_s) if start is not None else _FAR_PAST
    lookback = timedelta(seconds=interval_s * (trailing_rows(interval_s) + 1))
    lo = first - lookback if start is not None else _FAR_PAST
    hi = to_utc_naive(end) if end is not None else _FAR_FUTURE
    wanted = {
        "miner_id": np.array(list(miner_ids), dtype=object),
        "ix": np.arange(len(miner_ids), dtype=np.int32),
    }
    cur.register("wanted", wanted)  # lives until the caller closes the cursor
    result = cur.execute(_series_sql(interval_s), {"lo": lo, "hi": hi, "first": first}).fetchnumpy()
    ix = np.asarray(result["ix"])
    if ix.shape[0] == 0:
        return series
    # (T_all, F) float32 with NaN for NULL; masked arrays come back for nullable columns.
    values = np.empty((ix.shape[0], len(VALUE_COLUMNS)), dtype=np.float32)
    for j, name in enumerate(VALUE_COLUMNS):
        column = result[name]
        values[:, j] = np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan)
    observed = np.ma.filled(np.ma.asarray(result["observed"]), False).astype(bool)
    values[~observed] = np.nan
    timestamps = np.asarray(result["t"], dtype=np.int64).astype("datetime64[s]")
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
