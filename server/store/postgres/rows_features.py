"""The model features of a PostgreSQL store, computed in numpy from the rows it fetches.

The definition is server/store/features.py's (the grid, the latest sample of a bucket, deltas with
counter resets, the glitch rule, the trailing-hour trends and stability); this is its second
spelling, measured against the same query ported to PostgreSQL (features.series_sql) by
bench/pg_features.py on a 50-miner week: about 2x faster for the whole fleet and for one miner's
window, and the arithmetic runs on the server replicas rather than on the shared database.
tests/store/test_store_postgres.py holds the two engines to the same answers on the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from server.records import (
    FEATURE_COLUMNS,
    PLAUSIBLE_FAN_RPM,
    PLAUSIBLE_HASHRATE_FACTOR,
    PLAUSIBLE_TEMPERATURE_C,
    MinerSeries,
)
from server.store.features import trailing_rows
from server.store.postgres.cursor import PgCursor
from server.store.samples import QUALITY_SENSOR_GLITCH, to_utc_naive

_ROWS_SQL = """
    SELECT s.miner_id, floor(extract(epoch FROM s.ts))::bigint, s.hashrate_ths, s.temperature_c,
        s.fan_speed_rpm, s.power_w, s.accepted_shares, s.rejected_shares, s.quality, m.nominal_hashrate_ths
    FROM samples s JOIN miners m USING (miner_id)
    WHERE s.miner_id = ANY(%s) AND s.ts >= %s AND s.ts < %s
    ORDER BY s.miner_id, s.ts
"""


def _trailing(values: np.ndarray, n: int) -> np.ndarray:
    """(T, n) windows of the n rows up to each row (NaN before the first)."""
    padded = np.concatenate([np.full(n - 1, np.nan), values])
    return sliding_window_view(padded, n)


def _slope(y: np.ndarray, hours: np.ndarray, n: int) -> np.ndarray:
    """Least-squares slope of y against hours over each trailing window; NaN below two points."""
    wy, wx = _trailing(y, n), _trailing(hours, n)
    ok = ~np.isnan(wy) & ~np.isnan(wx)
    k = ok.sum(axis=1)
    x, yy = np.where(ok, wx, 0.0), np.where(ok, wy, 0.0)
    sx, sy, sxx, sxy = x.sum(1), yy.sum(1), (x * x).sum(1), (x * yy).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (k * sxy - sx * sy) / (k * sxx - sx * sx)
    return np.where(k >= 2, slope, np.nan)


def _one_miner(rows: np.ndarray, interval_s: int, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps, values (T, 11), observed) of one miner from its rows (epoch s, 6 metrics,
    quality, nominal hashrate) in time order; the definition of server/store/features.py."""
    n = trailing_rows(interval_s)
    bucket = (rows[:, 0] // interval_s * interval_s).astype(np.int64)
    last = np.r_[bucket[1:] != bucket[:-1], True]  # the latest sample of each bucket
    rows, bucket = rows[last], bucket[last]
    grid = np.arange(bucket[0], bucket[-1] + interval_s, interval_s)
    at = (bucket - grid[0]) // interval_s
    cols = np.full((grid.shape[0], 6), np.nan)
    cols[at] = rows[:, 1:7]
    observed = np.zeros(grid.shape[0], dtype=bool)
    observed[at] = True
    glitch = np.zeros(grid.shape[0], dtype=bool)
    glitch[at] = (rows[:, 7].astype(np.int64) & QUALITY_SENSOR_GLITCH) != 0
    nominal = rows[0, 8]
    hashrate, temperature, fan, power, acc, rej = cols.T
    low, high = PLAUSIBLE_TEMPERATURE_C
    if nominal > 0:
        hashrate = np.where(glitch & (hashrate > PLAUSIBLE_HASHRATE_FACTOR * nominal), np.nan, hashrate)
    temperature = np.where(glitch & ~((temperature >= low) & (temperature <= high)), np.nan, temperature)
    fan = np.where(glitch & ~(fan <= PLAUSIBLE_FAN_RPM), np.nan, fan)

    def delta(counter: np.ndarray) -> np.ndarray:
        prev = np.r_[np.nan, counter[:-1]]
        return np.where(counter >= prev, counter - prev, np.where(np.isnan(prev), np.nan, counter))

    d_acc, d_rej = delta(acc), delta(rej)
    with np.errstate(invalid="ignore", divide="ignore"):
        submitted = d_acc + d_rej
        rejection = np.where(submitted != 0, d_rej / submitted, np.nan)
        efficiency = np.where(power != 0, hashrate / power, np.nan)
        hours = np.arange(1, grid.shape[0] + 1) * (interval_s / 3600.0)
        window = _trailing(hashrate, n)
        valid = ~np.isnan(window)
        count = valid.sum(1)
        mean = np.where(valid, window, 0.0).sum(1) / count
        std = np.sqrt(np.where(valid, (window - mean[:, None]) ** 2, 0.0).sum(1) / count)
        stability = np.where((count >= 2) & (mean > 0), std / mean, np.nan)
    values = np.column_stack(
        [
            hashrate,
            temperature,
            fan,
            power,
            d_acc,
            d_rej,
            rejection,
            efficiency,
            _slope(temperature, hours, n),
            stability,
            _slope(efficiency, hours, n),
        ]
    ).astype(np.float32)
    values[~observed] = np.nan
    keep = grid >= first
    return grid[keep].astype("datetime64[s]"), values[keep], observed[keep]


def _empty(miner_id: str) -> MinerSeries:
    return MinerSeries(
        miner_id=miner_id,
        timestamps=np.empty(0, dtype="datetime64[s]"),
        values=np.empty((0, len(FEATURE_COLUMNS)), dtype=np.float32),
        observed=np.empty(0, dtype=bool),
    )


def load_series(
    cur: PgCursor,
    miner_ids: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    interval_s: int,
) -> dict[str, MinerSeries]:
    """As server/store/features.load_series: one entry per (resolved) miner, empty without rows."""
    first = (
        int(to_utc_naive(start).replace(tzinfo=UTC).timestamp()) // interval_s * interval_s if start else 0
    )
    lookback = interval_s * (trailing_rows(interval_s) + 1)
    lo = datetime.fromtimestamp(first - lookback, UTC).replace(tzinfo=None) if start else datetime(1970, 1, 1)
    hi = to_utc_naive(end) if end else datetime(9999, 1, 1)
    out = {miner_id: _empty(miner_id) for miner_id in miner_ids}
    if not miner_ids:
        return out
    rows = cur.raw.execute(_ROWS_SQL, [list(miner_ids), lo, hi]).fetchall()
    if not rows:
        return out
    ids = [r[0] for r in rows]
    matrix = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), 9)
    bounds = [0] + [i for i in range(1, len(ids)) if ids[i] != ids[i - 1]] + [len(ids)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        ts, values, observed = _one_miner(matrix[a:b], interval_s, first)
        out[ids[a]] = MinerSeries(ids[a], ts, values, observed)
    return out
