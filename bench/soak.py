"""Soak test (not in CI): sustained ingestion, predictions and many score subscribers against a real
server process, reporting the server's memory over time and every error by status code.

    .venv/bin/python -m bench.soak [--duration 300] [--subscribers 100] [--miners 60] [--days 3]

Starts `python -m server.main` on a free port with a temp data dir (demo fleet), trains a tiny LSTM
and autoencoder so predictions and re-scoring have models, then for --duration seconds runs:
  - one writer streaming a batch per second (one new sample per miner, current time) through
    IngestMetrics, so ingestion drives re-scoring and subscription updates;
  - --predictors clients calling PredictFailureRisk round-robin over the fleet;
  - --subscribers SubscribeScores streams counting the events they receive.
Every --sample-every seconds it records the server's RSS (VmRSS from /proc, training children
excluded: training is over by then) and the counters. Prints a Markdown table and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from mining.analytics.v1alpha1 import (
    common_pb2,
    fleet_pb2,
    fleet_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

LISTENING = re.compile(r"gRPC server listening on \S+:(\d+)")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_server(
    data_dir: Path, miners: int, days: float, max_subscriptions: int
) -> tuple[subprocess.Popen, int]:
    command = [
        sys.executable, "-m", "server.main", "--grpc-port", "0", "--data-dir", str(data_dir),
        "--demo-miners", str(miners), "--demo-days", str(days), "--metrics-port", "-1",
        "--max-subscriptions", str(max_subscriptions),
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        found = LISTENING.search(line)
        if found:
            # Keep draining the log so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # type: ignore[union-attr]
            return process, int(found.group(1))
    raise RuntimeError(f"server exited with {process.wait()} before listening")


async def train(channel: grpc.aio.Channel) -> None:
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    for kind in (common_pb2.LSTM, common_pb2.AUTOENCODER):
        job = await stub.Train(training_pb2.TrainRequest(model_kind=kind, epochs=2, batch_size=128))
        while job.state not in (training_pb2.JOB_STATE_SUCCEEDED, training_pb2.JOB_STATE_FAILED):
            await asyncio.sleep(1)
            job = await stub.GetTrainJob(training_pb2.GetTrainJobRequest(job_id=job.job_id))
        print(
            f"trained {common_pb2.ModelKind.Name(kind)}: {training_pb2.JobState.Name(job.state)}", flush=True
        )


class Counters:
    def __init__(self) -> None:
        self.samples = 0
        self.predictions = 0
        self.events = 0
        self.errors: collections.Counter[str] = collections.Counter()


async def writer(channel: grpc.aio.Channel, miner_ids: list[str], stop: asyncio.Event, c: Counters) -> None:
    stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)

    async def batches():  # type: ignore[no-untyped-def]
        while not stop.is_set():
            stamp = Timestamp()
            stamp.FromDatetime(datetime.now(UTC))
            samples = [
                telemetry_pb2.MetricSample(
                    miner_id=m,
                    timestamp=stamp,
                    hashrate_ths=100 + random.random(),
                    temperature_c=65 + 5 * random.random(),
                    fan_speed_rpm=5000 + 100 * random.random(),
                    power_w=3200 + 50 * random.random(),
                )
                for m in miner_ids
            ]
            yield telemetry_pb2.WriteMetricsRequest(samples=samples)
            await asyncio.sleep(1.0)

    while not stop.is_set():
        try:
            async for reply in stub.IngestMetrics(batches()):
                c.samples += reply.written
        except grpc.aio.AioRpcError as error:
            c.errors[f"IngestMetrics {error.code().name}"] += 1
            await asyncio.sleep(0.5)


async def predictor(
    channel: grpc.aio.Channel, miner_ids: list[str], stop: asyncio.Event, c: Counters
) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    i = random.randrange(len(miner_ids))
    while not stop.is_set():
        i = (i + 1) % len(miner_ids)
        try:
            await stub.PredictFailureRisk(
                scoring_pb2.PredictFailureRiskRequest(miner_id=miner_ids[i]), timeout=30
            )
            c.predictions += 1
        except grpc.aio.AioRpcError as error:
            c.errors[f"PredictFailureRisk {error.code().name}"] += 1
        await asyncio.sleep(0.05)


async def subscriber(channel: grpc.aio.Channel, stop: asyncio.Event, c: Counters) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    while not stop.is_set():
        call = stub.SubscribeScores(scoring_pb2.SubscribeScoresRequest(heartbeat_seconds=5))
        try:
            async for event in call:
                c.events += 1
                if event.WhichOneof("event") == "error":
                    c.errors["SubscribeScores in-band error"] += 1
                if stop.is_set():
                    call.cancel()
                    return
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                c.errors[f"SubscribeScores {error.code().name}"] += 1
                await asyncio.sleep(1)


async def soak(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="mfh-soak-") as tmp:
        process, port = start_server(Path(tmp), args.miners, args.days, max(256, args.subscribers + 16))
        try:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            await train(channel)
            fleet = fleet_pb2_grpc.FleetServiceStub(channel)
            miners = await fleet.ListMiners(fleet_pb2.ListMinersRequest(page_size=1000))
            miner_ids = [m.miner_id for m in miners.miners]
            stop, c = asyncio.Event(), Counters()
            # Subscribers share a few channels (HTTP/2 connections), as real clients behind a proxy would.
            sub_channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(4)]
            tasks = [asyncio.create_task(writer(channel, miner_ids, stop, c))]
            tasks += [
                asyncio.create_task(predictor(channel, miner_ids, stop, c)) for _ in range(args.predictors)
            ]
            tasks += [
                asyncio.create_task(subscriber(sub_channels[i % 4], stop, c)) for i in range(args.subscribers)
            ]
            started = time.monotonic()
            rows = []
            print("| t (s) | RSS (MiB) | samples | predictions | sub events | errors |")
            print("|---:|---:|---:|---:|---:|---:|")
            while True:
                elapsed = time.monotonic() - started
                row = (
                    elapsed,
                    rss_mb(process.pid),
                    c.samples,
                    c.predictions,
                    c.events,
                    sum(c.errors.values()),
                )
                rows.append(row)
                print("| {:.0f} | {:.0f} | {} | {} | {} | {} |".format(*row), flush=True)
                if elapsed >= args.duration:
                    break
                await asyncio.sleep(min(args.sample_every, args.duration - elapsed + 0.01))
            stop.set()
            await asyncio.wait(tasks, timeout=10)
            for task in tasks:
                task.cancel()
            for ch in (channel, *sub_channels):
                await ch.close()
            first, last = rows[1] if len(rows) > 1 else rows[0], rows[-1]
            print(
                f"\n{args.duration:.0f} s, {args.subscribers} subscribers, {len(miner_ids)} miners: "
                f"{c.samples} samples ingested ({c.samples / args.duration:.0f}/s), "
                f"{c.predictions} predictions ({c.predictions / args.duration:.1f}/s), "
                f"{c.events} subscription events; RSS {rows[0][1]:.0f} MiB at start, "
                f"{first[1]:.0f} after {first[0]:.0f} s, {last[1]:.0f} at the end, "
                f"max {max(r[1] for r in rows):.0f}; errors: {dict(c.errors) or 'none'}"
            )
            return 1 if c.errors else 0
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 5 min)")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--predictors", type=int, default=4, help="concurrent prediction clients")
    parser.add_argument("--miners", type=int, default=60)
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS samples")
    args = parser.parse_args()
    os.environ.setdefault("MFH_METRICS_PORT", "-1")
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
