"""`mining-health import FILE`: streams a CSV or Parquet telemetry file to the server in batches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from mining.analytics.v1alpha1 import telemetry_pb2

from clients.cli.args import Commands, positive_int
from clients.cli.output import Output
from clients.cli.reader import METRIC_COLUMNS, REQUIRED_COLUMNS, SHARE_COLUMNS, TelemetryFile
from clients.client import FleetHealthClient


def register(commands: Commands) -> None:
    command = commands.add(
        "import",
        run,
        f"Import telemetry from a CSV or Parquet file (columns: "
        f"{', '.join(REQUIRED_COLUMNS + METRIC_COLUMNS + SHARE_COLUMNS)})",
        "mining-health import fleet-2026-11.parquet",
    )
    command.add_argument("file", help="a .csv or .parquet file; timestamps without an offset are UTC")
    command.add_argument(
        "--batch-size", type=positive_int, default=5000, help="rows per batch (default 5000)"
    )


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    from tqdm import tqdm

    telemetry = TelemetryFile(Path(args.file))
    sizes: dict[str, int] = {}

    def requests() -> Iterator[telemetry_pb2.WriteMetricsRequest]:
        for number, batch in enumerate(telemetry.batches(args.batch_size), start=1):
            batch_id = f"{telemetry.path.name}#{number}"
            sizes[batch_id] = len(batch)
            yield telemetry_pb2.WriteMetricsRequest(
                batch_id=batch_id,
                columns=telemetry_pb2.MetricColumns(
                    miner_id=batch.miner_id,
                    timestamp_ms=batch.timestamp_ms,
                    hashrate_ths=batch.hashrate_ths,
                    temperature_c=batch.temperature_c,
                    fan_speed_rpm=batch.fan_speed_rpm,
                    power_w=batch.power_w,
                    accepted_shares=batch.accepted_shares,
                    rejected_shares=batch.rejected_shares,
                ),
            )

    totals = {
        "rows": telemetry.rows,
        "batches": 0,
        "written": 0,
        "duplicates": 0,
        "conflicts": 0,  # rows that repeated a miner and time of their batch with other values
        "miners_registered": 0,
    }
    with tqdm(
        total=telemetry.rows,
        unit="row",
        desc=f"import {telemetry.path.name}",
        disable=out.as_json,
        file=sys.stderr,
    ) as bar:
        for ack in client.ingest_metrics(requests()):
            totals["batches"] += 1
            totals["written"] += ack.written
            totals["duplicates"] += ack.duplicates
            totals["conflicts"] += ack.conflicts
            totals["miners_registered"] += ack.miners_registered
            bar.update(sizes.get(ack.batch_id, ack.written + ack.duplicates + ack.conflicts))
    if out.as_json:
        out.json(totals)
    else:
        out.line(
            f"imported {telemetry.rows} row(s) in {totals['batches']} batch(es): "
            f"{totals['written']} written, "
            f"{totals['duplicates']} duplicate(s), {totals['conflicts']} conflict(s) (the later row kept), "
            f"{totals['miners_registered']} new miner(s)"
        )
    return 0
