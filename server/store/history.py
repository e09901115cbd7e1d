"""A miner's history: risk points (written when a new window is scored) and telemetry on a coarse grid.

Risk points. One point per (miner, window end, LSTM version) in `risk_history`; writing a key again
(an autoencoder that became active re-decides the same window) replaces it: writes only append (no
index, no lookup, so the rescoring after ingestion stays cheap) and reads keep the latest-scored row
of each key. Re-scored windows are rare (a model change re-scores each miner's latest window once),
so the extra rows cost little; retention deletes them with the rest.

Telemetry. One SQL statement returns a miner's raw readings and its 11 features (the grid rows of
features.py) aggregated to min / mean / max per step of `step_s` seconds (steps aligned to the epoch),
with every step of [start, end) present: a step without data has NULLs, never interpolated values.
Hours past the raw retention come from `samples_hourly`; there the features that need the raw grid
(trends, stability) are NULL and the share features are the hour's summed deltas per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np

from server.records import FEATURE_COLUMNS, RiskLevel
from server.store.features import VALUE_COLUMNS, feature_rows_sql, trailing_rows
from server.store.samples import to_utc_naive
from server.store.sql import SqlCursor


@dataclass(frozen=True, slots=True)
class RiskPoint:
    """One scored window of a miner."""

    miner_id: str
    window_end: datetime
    model_version: str
    risk_score: float
    risk_level: RiskLevel
    is_anomaly: bool
    anomaly_score: float
    anomaly_model_version: str
    scored_at: datetime


_COLUMNS = (
    "miner_id",
    "window_end",
    "model_version",
    "risk_score",
    "risk_level",
    "is_anomaly",
    "anomaly_score",
    "anomaly_model_version",
    "scored_at",
)


def write_risk_points(cur: SqlCursor, points: Sequence[RiskPoint]) -> int:
    """Append points inside the caller's transaction (a key written again supersedes the older row on
    read); returns the count."""
    if not points:
        return 0
    staged = {
        "miner_id": np.array([p.miner_id for p in points], dtype=object),
        "window_end": np.array([to_utc_naive(p.window_end) for p in points], dtype="datetime64[us]"),
        "model_version": np.array([p.model_version for p in points], dtype=object),
        "risk_score": np.array([p.risk_score for p in points], dtype=np.float64),
        "risk_level": np.array([int(p.risk_level) for p in points], dtype=np.uint8),
        "is_anomaly": np.array([p.is_anomaly for p in points], dtype=bool),
        "anomaly_score": np.array([p.anomaly_score for p in points], dtype=np.float64),
        "anomaly_model_version": np.array([p.anomaly_model_version for p in points], dtype=object),
        "scored_at": np.array([to_utc_naive(p.scored_at) for p in points], dtype="datetime64[us]"),
    }
    cur.register("staged_risk", staged)
    try:
        # Append only (the ingestion path stays cheap); a key written again is resolved on read.
        cur.execute(
            f"INSERT INTO risk_history ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} FROM staged_risk"
        )
    finally:
        cur.unregister("staged_risk")
    return len(points)


def read_risk_points(cur: SqlCursor, miner_id: str, start: datetime, end: datetime) -> list[RiskPoint]:
    """A (resolved) miner's points with start <= window end < end, oldest first, then by version."""
    rows = cur.execute(
        f"""
        SELECT {", ".join(_COLUMNS)} FROM (
            SELECT *,
                row_number() OVER (PARTITION BY window_end, model_version ORDER BY scored_at DESC) AS newest
            FROM risk_history
            WHERE miner_id = $miner AND window_end >= $start AND window_end < $end
        ) points
        WHERE newest = 1
        ORDER BY window_end, model_version
        """,
        {"miner": miner_id, "start": to_utc_naive(start), "end": to_utc_naive(end)},
    ).fetchall()
    return [
        RiskPoint(
            miner_id=str(row[0]),
            window_end=row[1].replace(tzinfo=UTC),
            model_version=str(row[2]),
            risk_score=float(row[3]),
            risk_level=RiskLevel(int(row[4])),
            is_anomaly=bool(row[5]),
            anomaly_score=float(row[6]),
            anomaly_model_version=str(row[7]),
            scored_at=row[8].replace(tzinfo=UTC),
        )
        for row in rows
    ]


def prune_risk_points(cur: SqlCursor, before: datetime) -> int:
    """Delete points whose window ended before `before`; returns how many."""
    deleted = cur.execute(
        "DELETE FROM risk_history WHERE window_end < $before RETURNING 1", {"before": to_utc_naive(before)}
    ).fetchall()
    return len(deleted)


# ---- telemetry on a grid ----------------------------------------------------------------------------

RAW_COLUMNS: tuple[str, ...] = (
    "hashrate_ths",
    "temperature_c",
    "fan_speed_rpm",
    "power_w",
    "accepted_shares",
    "rejected_shares",
)
"""Raw readings as stored (share counters cumulative, glitched values as reported)."""

# Feature columns of features.py's query, in FEATURE_COLUMNS order.
_FEATURE_SQL = VALUE_COLUMNS

# What an hourly roll-up row gives for each raw reading: (min, mean, max) expressions, NULL when the
# roll-up does not keep that statistic (cumulative counters are not kept at all).
_HOURLY_RAW = {
    "hashrate_ths": ("hashrate_ths_min", "hashrate_ths_mean", "hashrate_ths_max"),
    "temperature_c": ("NULL", "temperature_c_mean", "temperature_c_max"),
    "fan_speed_rpm": ("fan_speed_rpm_min", "fan_speed_rpm_mean", "NULL"),
    "power_w": ("NULL", "power_w_mean", "power_w_max"),
    "accepted_shares": ("NULL", "NULL", "NULL"),
    "rejected_shares": ("NULL", "NULL", "NULL"),
}
# ... and for each feature: the hour's value (the same for min, mean and max of that hour).
_HOURLY_FEATURE = {
    "hashrate": "hashrate_ths_mean",
    "temperature": "temperature_c_mean",
    "fan_speed": "fan_speed_rpm_mean",
    "power": "power_w_mean",
    "accepted_shares": "accepted_shares_delta::DOUBLE / n_samples",
    "rejected_shares": "rejected_shares_delta::DOUBLE / n_samples",
    "rejection_rate": "rejected_shares_delta::DOUBLE "
    "/ nullif(accepted_shares_delta + rejected_shares_delta, 0)",
    "efficiency": "hashrate_ths_mean / nullif(power_w_mean, 0)",
    "temperature_trend": "NULL",
    "hashrate_stability": "NULL",
    "power_efficiency_trend": "NULL",
}


def _telemetry_sql(interval_s: int) -> str:
    raw_stats = ", ".join(
        f"min({c}) AS r_{c}_min, avg({c}) AS r_{c}_mean, max({c}) AS r_{c}_max" for c in RAW_COLUMNS
    )
    feature_stats = ", ".join(
        f"min({c}) AS f{j}_min, avg({c}) AS f{j}_mean, max({c}) AS f{j}_max"
        for j, c in enumerate(_FEATURE_SQL)
    )
    hourly_raw = ", ".join(
        f"min({lo}) AS r_{c}_min, sum(({mean}) * n_samples) / sum(n_samples) AS r_{c}_mean, "
        f"max({hi}) AS r_{c}_max"
        for c, (lo, mean, hi) in _HOURLY_RAW.items()
    )
    hourly_features = ", ".join(
        f"min({e}) AS f{j}_min, sum(({e}) * n_samples) / sum(n_samples) AS f{j}_mean, max({e}) AS f{j}_max"
        for j, e in enumerate(_HOURLY_FEATURE[name] for name in FEATURE_COLUMNS)
    )
    # Trailing-window features of a row without a sample are missing (as load_series has them).
    observed_only = ", ".join(f"CASE WHEN observed THEN {c} END AS {c}" for c in _FEATURE_SQL)
    picked = ", ".join(
        [
            f"coalesce(r.r_{c}_{s}, h.r_{c}_{s}) AS r_{c}_{s}"
            for c in RAW_COLUMNS
            for s in ("min", "mean", "max")
        ]
        + [
            f"coalesce(f.f{j}_{s}, h.f{j}_{s}) AS f{j}_{s}"
            for j in range(len(_FEATURE_SQL))
            for s in ("min", "mean", "max")
        ]
    )
    return f"""
    WITH grid_rows AS ({feature_rows_sql(interval_s)}),
    steps AS (SELECT unnest(generate_series($first_step, $last_step, $step)) AS s),
    raw AS (
        SELECT epoch(ts)::BIGINT // $step * $step AS s, count(*) AS n, {raw_stats}
        FROM samples WHERE miner_id = $miner AND ts >= $start AND ts < $end
        GROUP BY ALL
    ),
    hourly AS (
        SELECT epoch(hour)::BIGINT // $step * $step AS s, sum(n_samples) AS n, {hourly_raw}, {hourly_features}
        FROM samples_hourly WHERE miner_id = $miner AND hour >= $start_hour AND hour < $end
        GROUP BY ALL
    ),
    features AS (
        SELECT t // $step * $step AS s, {feature_stats}
        FROM (SELECT t, {observed_only} FROM grid_rows WHERE t >= $start_s AND t < $end_s)
        GROUP BY ALL
    )
    SELECT steps.s, coalesce(r.n, 0) + coalesce(h.n, 0) AS n,
        CASE WHEN r.n IS NOT NULL THEN 'raw' WHEN h.n IS NOT NULL THEN 'hourly' ELSE '' END AS source,
        {picked}
    FROM steps LEFT JOIN raw r USING (s) LEFT JOIN hourly h USING (s) LEFT JOIN features f USING (s)
    ORDER BY steps.s
    """


@dataclass(frozen=True, slots=True)
class TelemetryRows:
    """A miner's telemetry per step: each array has one entry per step; NaN where a step has no value."""

    step_starts: np.ndarray  # (S,) int64 epoch seconds
    samples: np.ndarray  # (S,) int64 raw samples (or rolled-up samples) in the step
    source: list[str]  # (S,) "raw", "hourly" or ""
    raw: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # name -> (min, mean, max), (S,) float64
    features: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # FEATURE_COLUMNS name -> (min, mean, max)


def _floats(column: object) -> np.ndarray:
    return np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan)


def read_telemetry(
    cur: duckdb.DuckDBPyConnection,
    miner_id: str,
    start: datetime,
    end: datetime,
    step_s: int,
    interval_s: int,
) -> TelemetryRows:
    """A (resolved) miner's telemetry in [start, end) per step of step_s seconds, in one query.

    `start` must already be aligned to the step; `end` is exclusive."""
    start_s = int(start.timestamp())
    end_s = int(end.timestamp())
    first = datetime.fromtimestamp(start_s // interval_s * interval_s, UTC).replace(tzinfo=None)
    lookback_s = interval_s * (trailing_rows(interval_s) + 1)
    cur.register("wanted", {"miner_id": np.array([miner_id], dtype=object), "ix": np.zeros(1, np.int32)})
    params = {
        "miner": miner_id,
        "start": to_utc_naive(start),
        "start_hour": to_utc_naive(start).replace(minute=0, second=0, microsecond=0),
        "end": to_utc_naive(end),
        "start_s": start_s,
        "end_s": end_s,
        "step": step_s,
        "first_step": start_s,
        "last_step": (end_s - 1) // step_s * step_s,
        # features.py's parameters: grid rows from `first` on, looking back for trailing windows.
        "lo": datetime.fromtimestamp(first.replace(tzinfo=UTC).timestamp() - lookback_s, UTC).replace(
            tzinfo=None
        ),
        "hi": to_utc_naive(end),
        "first": first,
    }
    try:
        result = cur.execute(_telemetry_sql(interval_s), params).fetchnumpy()
    finally:
        cur.unregister("wanted")
    raw = {
        c: (_floats(result[f"r_{c}_min"]), _floats(result[f"r_{c}_mean"]), _floats(result[f"r_{c}_max"]))
        for c in RAW_COLUMNS
    }
    features = {
        name: (_floats(result[f"f{j}_min"]), _floats(result[f"f{j}_mean"]), _floats(result[f"f{j}_max"]))
        for j, name in enumerate(FEATURE_COLUMNS)
    }
    return TelemetryRows(
        step_starts=np.asarray(result["s"], dtype=np.int64),
        samples=np.ma.filled(np.ma.asarray(result["n"]), 0).astype(np.int64),
        source=[str(s) for s in result["source"]],
        raw=raw,
        features=features,
    )
