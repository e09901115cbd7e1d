"""A small slice of bench/run.py for a shared machine: ingestion (columnar and row) and
PredictFailureRisk, end to end, with the server's own CPU time per call.

    .venv/bin/python -m bench.quick [--miners 40] [--days 2] [--repeats 3]

Seeds a small fleet, starts the server (bench.serve, no Envoy) and trains a 1-epoch LSTM, then per
round: columnar WriteMetrics (4 x 10,000 samples, known miners), row WriteMetrics (3 x 5,000) and
sequential PredictFailureRisk calls, each step once the server is idle again (the rescoring after an
ingestion is not charged to the next step). Wall-clock rates move with whatever else runs on the
machine; the server process's CPU seconds (user + system, all its threads, from /proc) per sample or
per call move much less, so both are printed: medians of --repeats rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from mining.analytics.v1alpha1 import (
    common_pb2,
    scoring_pb2,
    scoring_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

from bench.run import columns_request, ingest_rate, rows_request, seed, server, train


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, busy: float = 0.05, window_s: float = 0.5, limit_s: float = 60.0) -> None:
    """Waits until the server is idle (under `busy` of a core over `window_s`), at most `limit_s`:
    work left from the step before (rescoring after ingestion or activation, the start-up warm-up)
    must not be charged to the next measurement."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(window_s)
        if cpu_seconds(pid) - before < busy * window_s:
            return


def measured(pid: int, run: Callable[[], int]) -> tuple[float, float]:
    """(units per wall second, server CPU microseconds per unit) of run(), which returns its units;
    the server is let settle first."""
    settle(pid)
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    units = run()
    wall, cpu = time.perf_counter() - wall, cpu_seconds(pid) - cpu
    return units / wall, cpu / units * 1e6


def predict_calls(channel: grpc.Channel, miner_ids: list[str], calls: int) -> int:
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    for i in range(calls):
        stub.PredictFailureRisk(scoring_pb2.PredictFailureRiskRequest(miner_id=miner_ids[i % len(miner_ids)]))
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--miners", type=int, default=40)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--predict-calls", type=int, default=400)
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting for the run (repeatable); rescore_interval_ms=600000 defers the "
        "rescoring an ingestion starts past the run, to time the ingestion pipeline alone",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mfh-quick-"))
    seed(work, args.miners, args.days, seed_value=11)
    results: dict[str, list[tuple[float, float]]] = {"columnar": [], "row": [], "predict": []}
    with server(work, envoy=False, extra=args.server_setting) as srv:
        pid = srv.popen.pid
        channel = grpc.insecure_channel(
            f"127.0.0.1:{srv.info['grpc_port']}", options=[("grpc.max_send_message_length", 64 << 20)]
        )
        job = train(channel, common_pb2.LSTM, 1)
        # A 1-epoch model on a small fleet may fail the promotion gate: activate it anyway, since
        # this measures serving, not the model.
        training_pb2_grpc.TrainingServiceStub(channel).ActivateModel(
            training_pb2.ActivateModelRequest(model_kind=common_pb2.LSTM, version=job.model_version)
        )
        scores = scoring_pb2_grpc.ScoringServiceStub(channel).ScoreFleet(
            scoring_pb2.ScoreFleetRequest(top_k=1000)
        )
        fleet = [score.miner_id for score in scores.scores]
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        for r in range(args.repeats):
            col_miners = [f"10.{200 + r}.{i // 250}.{i % 250}" for i in range(500)]
            cols = [
                columns_request(col_miners, now - timedelta(minutes=5 * 20 * (5 - b)), 20, b)
                for b in range(5)
            ]
            ingest_rate(channel, cols[:1])  # registers the miners
            results["columnar"].append(measured(pid, lambda cols=cols: ingest_rate(channel, cols[1:])[1]))
            row_miners = [f"10.{220 + r}.{i // 250}.{i % 250}" for i in range(200)]
            rows = [
                rows_request(row_miners, now - timedelta(minutes=5 * 25 * (4 - b)), 25, b) for b in range(4)
            ]
            ingest_rate(channel, rows[:1])
            results["row"].append(measured(pid, lambda rows=rows: ingest_rate(channel, rows[1:])[1]))
            results["predict"].append(
                measured(pid, lambda: predict_calls(channel, fleet, args.predict_calls))
            )
        channel.close()
    units = {"columnar": "samples", "row": "samples", "predict": "calls"}
    for name, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(
            f"{name:<9} {rate:>10,.0f} {units[name]}/s   server CPU {cpu:>8,.1f} us/{units[name][:-1]}   "
            f"runs {[(round(r), round(c, 1)) for r, c in runs]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
