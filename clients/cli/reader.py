"""Reads a telemetry file (CSV or Parquet) into column batches, with DuckDB in this process.

The documented import columns: `miner_id` and `timestamp` are required; the metrics may be
absent (sent as NaN: missing) and so may the share counters (sent as -1: missing). Timestamps
without an offset are UTC. The file is read through DuckDB's relational API: no SQL text is built
from the path or the column names.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from clients.cli.args import UsageError

REQUIRED_COLUMNS: Final = ("miner_id", "timestamp")
METRIC_COLUMNS: Final = ("hashrate_ths", "temperature_c", "fan_speed_rpm", "power_w")
SHARE_COLUMNS: Final = ("accepted_shares", "rejected_shares")
READERS: Final = {".csv": "read_csv", ".tsv": "read_csv", ".parquet": "read_parquet", ".pq": "read_parquet"}


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch of rows as columns, in the order of the WriteMetrics `MetricColumns` fields."""

    miner_id: tuple[str, ...]
    timestamp_ms: tuple[int, ...]
    hashrate_ths: tuple[float, ...]
    temperature_c: tuple[float, ...]
    fan_speed_rpm: tuple[float, ...]
    power_w: tuple[float, ...]
    accepted_shares: tuple[int, ...]
    rejected_shares: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.miner_id)


class TelemetryFile:
    """A checked telemetry file: `rows` counted, `batches(size)` read on demand."""

    def __init__(self, path: Path) -> None:
        import duckdb

        self.path = path
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            raise UsageError(f"{path}: unknown format {path.suffix.lower()!r}; expected .csv or .parquet")
        self._connection = duckdb.connect()
        self._connection.execute("SET TimeZone = 'UTC'")  # timestamps without an offset are UTC
        try:
            self._relation = getattr(self._connection, reader)(str(path))
            columns = set(self._relation.columns)
        except duckdb.Error as exc:
            raise UsageError(f"{path}: cannot read: {exc}") from exc
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise UsageError(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(sorted(columns))}"
            )
        self._columns = columns
        try:
            counts = self._relation.aggregate(
                'count(*), count(*) FILTER (miner_id IS NULL OR "timestamp" IS NULL)'
            ).fetchall()
        except duckdb.Error as exc:
            raise UsageError(f"{path}: cannot read: {exc}") from exc
        self.rows, incomplete = (int(counts[0][0]), int(counts[0][1])) if counts else (0, 0)
        if incomplete:
            raise UsageError(f"{path}: {incomplete} row(s) without miner_id or timestamp")

    def _projection(self) -> list[Any]:
        import duckdb

        def column(name: str) -> Any:
            return duckdb.ColumnExpression(name)

        def metric(name: str) -> Any:
            if name not in self._columns:
                return duckdb.ConstantExpression(float("nan")).cast("DOUBLE")
            return duckdb.CoalesceOperator(
                column(name).cast("DOUBLE"), duckdb.ConstantExpression(float("nan"))
            )

        def shares(name: str) -> Any:
            if name not in self._columns:
                return duckdb.ConstantExpression(-1).cast("BIGINT")
            return duckdb.CoalesceOperator(column(name).cast("BIGINT"), duckdb.ConstantExpression(-1))

        epoch_ms = duckdb.FunctionExpression("epoch_ms", column("timestamp").cast("TIMESTAMPTZ"))
        return [
            column("miner_id").cast("VARCHAR"),
            epoch_ms,
            *(metric(name) for name in METRIC_COLUMNS),
            *(shares(name) for name in SHARE_COLUMNS),
        ]

    def batches(self, size: int) -> Iterator[Batch]:
        """Rows in file order, `size` at a time."""
        rows = self._relation.select(*self._projection()).iter_rows(batch_size=size)
        while chunk := list(itertools.islice(rows, size)):
            yield Batch(*(tuple(values) for values in zip(*chunk, strict=True)))
