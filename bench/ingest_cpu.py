"""Columnar ingestion in-process: the CPU time (all threads) of one 10,000-sample columnar
WriteMetrics request through the transport's conversion and the domain's Ingest, without gRPC.

    .venv/bin/python -m bench.ingest_cpu [--rounds 4] [--pipeline-only]

Seeds a 40-miner store, then per round registers 500 new miners with a first batch and times four
more (bench.run.columns_request: the same bytes on any tree). --pipeline-only times conversion,
validation and the store step alone: the post-write tail (outage derivation, the retention report)
is replaced by no-ops. Per-sample CPU is printed, median and minimum: the minimum moves least with
the other work on a shared machine.

It also runs on trees from before the one columnar pipeline (issue #12), which had
`Ingest.write_columns(column_input(columns))`, so the two can be timed side by side:
`cd OLD_TREE && PYTHONPATH=$PWD:$PWD/server/gen python /path/to/bench/ingest_cpu.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mining.analytics.v1alpha1 import telemetry_pb2

import server.domain.ingest as ingest_module
import server.transport.telemetry as telemetry
from bench.run import columns_request, seed
from server.config import Settings
from server.domain.ingest import Ingest
from server.store import Store

SAMPLES = 10_000  # 500 miners x 20 steps per request


def _no_tail() -> None:
    ingest_module.outages.derive_after_ingest = lambda *args, **kwargs: None  # type: ignore[assignment]
    housekeeping = getattr(ingest_module, "housekeeping", None)
    if housekeeping is not None:
        housekeeping.retention_report = lambda *args, **kwargs: 0


async def _write(ingest: Any, raw: bytes) -> None:
    request = telemetry_pb2.WriteMetricsRequest.FromString(raw)
    if hasattr(telemetry, "sample_columns"):
        await ingest.write(telemetry.sample_columns(request))
    else:  # before the one columnar pipeline
        await ingest.write_columns(telemetry.column_input(request.columns))  # type: ignore[attr-defined]


async def _rounds(ingest: Any, rounds: int) -> list[float]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    per_sample_us = []
    for r in range(rounds):
        miners = [f"10.{200 + r}.{i // 250}.{i % 250}" for i in range(500)]
        requests = [
            columns_request(miners, now - timedelta(minutes=5 * 20 * (5 - b)), 20, b) for b in range(5)
        ]
        await _write(ingest, requests[0])  # registers the miners
        for raw in requests[1:]:
            started = time.process_time()
            await _write(ingest, raw)
            per_sample_us.append((time.process_time() - started) / SAMPLES * 1e6)
    return per_sample_us


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pipeline-only", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mfh-ingest-cpu-"))
    seed(work, 40, 2.0, seed_value=11)
    settings = Settings(data_dir=work, grpc_port=0, metrics_port=0)
    store = Store.open(work / "fleet.duckdb", sample_interval_s=settings.sample_interval_s)
    if args.pipeline_only:
        _no_tail()
    try:
        from server import auth

        acting: contextlib.AbstractContextManager[None] = auth.acting_as(auth.SYSTEM)
    except (ImportError, AttributeError):  # before the system principal
        acting = contextlib.nullcontext()
    try:
        with acting:
            cpu = asyncio.run(_rounds(Ingest(store, settings), args.rounds))
    finally:
        store.close()
    print(
        f"columnar ingest CPU us/sample: median {statistics.median(cpu):.2f} min {min(cpu):.2f} "
        f"runs {[round(c, 1) for c in cpu]}"
    )


if __name__ == "__main__":
    main()
