"""Performance benchmark: the server against a naive baseline, side by side, in one run.

    make bench   # bench/setup.sh (h2load), then .venv/bin/python -m bench.run --out bench/results/perf.md

Everything runs on 127.0.0.1 in a temp folder. The server (bench.serve: grpc.aio + Envoy) and the naive
server (bench.naive_server) run in processes of their own; h2load (nghttp2, C) generates the HTTP load
pinned to the last CPU with taskset, so it does not share the Python server's interpreter. Ingestion,
subscription and fleet-scoring clients run in this process (grpcio, pre-serialised requests).
Numbers, not pass/fail: medians of --repeats runs, written as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
from mining.analytics.v1alpha1 import (
    scoring_pb2,
    scoring_pb2_grpc,
    telemetry_pb2,
    training_pb2,
    training_pb2_grpc,
)

from server.sim import seed_store, simulate_fleet
from server.store import Store

PY = sys.executable
PREDICT_METHOD = "/mining.analytics.v1alpha1.ScoringService/PredictFailureRisk"
WRITE_METHOD = "/mining.analytics.v1alpha1.TelemetryService/WriteMetrics"
REST_PATH = "/api/advanced/predict/failure-risk/"
QUIET = [
    "outage_scan_interval_s=0",
    "retention_interval_s=0",
    "expensive_calls_burst=1000",
    "expensive_calls_per_minute=100000",
    "max_subscriptions=1000",
]


# ---- processes -----------------------------------------------------------------------------------------


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    info: dict[str, int]

    def peak_rss_mib(self) -> float:
        """VmHWM of the process (peak resident set), MiB."""
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def spawn(argv: list[str], timeout: float = 600) -> Proc:
    """Starts a process that prints one JSON line once ready."""
    popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert popen.stdout is not None
    started = time.monotonic()
    line = popen.stdout.readline()
    if not line:
        raise RuntimeError(f"{argv} exited with {popen.wait()} before it was ready")
    info = json.loads(line)
    info["start_s"] = time.monotonic() - started
    return Proc(popen, info)


@contextmanager
def server(data_dir: Path, *, envoy: bool, extra: list[str] = ()) -> Iterator[Proc]:  # type: ignore[assignment]
    argv = [PY, "-m", "bench.serve", "--data-dir", str(data_dir)]
    argv += ["--with-envoy"] if envoy else []
    for setting in [*QUIET, *extra]:
        argv += ["--setting", setting]
    proc = spawn(argv)
    try:
        yield proc
    finally:
        proc.stop()


def seed(data_dir: Path, miners: int, days: float, seed_value: int = 7) -> float:
    """Seeds a store with a simulated fleet; returns seconds spent."""
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(data_dir / "fleet.duckdb")
    try:
        seed_store(store, simulate_fleet(miners, days, seed_value))
        store.checkpoint()
    finally:
        store.close()
    return time.perf_counter() - started


# ---- h2load --------------------------------------------------------------------------------------------


@dataclass
class Load:
    rps: float
    succeeded: int
    failed: int
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    samples: list[float] = field(default_factory=list)


def h2load(args: list[str], log: Path | None = None) -> Load:
    cpu = str((os.cpu_count() or 1) - 1)
    argv = ["taskset", "-c", cpu, "h2load", *args]
    if log is not None:
        argv += ["--log-file", str(log)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    req = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
    assert req is not None, out
    load = Load(rps=rps, succeeded=int(req.group(1)), failed=int(req.group(2)))
    if log is not None:
        durations = [
            int(parts[2]) / 1000.0
            for parts in (line.split("\t") for line in log.read_text().splitlines())
            if len(parts) >= 3 and parts[1] == "200"
        ]
        if durations:
            p50, p95, p99 = np.percentile(durations, [50, 95, 99])
            load.p50_ms, load.p95_ms, load.p99_ms = float(p50), float(p95), float(p99)
    return load


def grpc_body(message: bytes) -> bytes:
    """One length-prefixed gRPC message (uncompressed)."""
    return b"\x00" + struct.pack(">I", len(message)) + message


# ---- measurements --------------------------------------------------------------------------------------


def train(channel: grpc.Channel, kind: int, epochs: int) -> training_pb2.TrainJob:
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    job = stub.Train(training_pb2.TrainRequest(model_kind=kind, epochs=epochs, seed=5))
    while job.state in (training_pb2.JOB_STATE_QUEUED, training_pb2.JOB_STATE_RUNNING):
        time.sleep(0.5)
        job = stub.GetTrainJob(training_pb2.GetTrainJobRequest(job_id=job.job_id))
    assert job.state == training_pb2.JOB_STATE_SUCCEEDED, job
    return job


def predict_load(
    work: Path, target: str, uris: list[str], *, h1: bool, body: Path | None, duration: int, rate: int
) -> tuple[Load, Load]:
    """(saturation at 64 clients, latency at `rate` req/s offered) for one endpoint."""
    urifile = work / f"uris-{abs(hash(target))}.txt"
    urifile.write_text("\n".join(uris) + "\n")
    common = ["--h1"] if h1 else ["-m", "1"]
    if body is not None:
        common += ["-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    common += ["-i", str(urifile)]
    h2load([*common, "-c", "16", "-D", "2"])  # warm-up
    saturation = h2load([*common, "-c", "64", "-D", str(duration)])
    clients = 10
    fixed = h2load(
        [*common, "-c", str(clients), "--rps", str(rate / clients), "-D", str(duration)],
        log=work / "latency.log",
    )
    return saturation, fixed


def columns_request(miner_ids: list[str], start: datetime, steps: int, seed_value: int) -> bytes:
    """A columns-only WriteMetrics request (len(miner_ids) * steps samples), serialised."""
    rng = np.random.default_rng(seed_value)
    n = len(miner_ids) * steps
    ts = np.array(
        [int((start + timedelta(minutes=5 * s)).timestamp() * 1000) for s in range(steps)], dtype=np.int64
    )
    cols = telemetry_pb2.MetricColumns(
        miner_id=np.repeat(np.array(miner_ids, dtype=object), steps).tolist(),
        timestamp_ms=np.tile(ts, len(miner_ids)).tolist(),
        hashrate_ths=rng.normal(100, 3, n).tolist(),
        temperature_c=rng.normal(70, 2, n).tolist(),
        fan_speed_rpm=rng.normal(4000, 100, n).tolist(),
        power_w=rng.normal(3200, 50, n).tolist(),
        accepted_shares=np.arange(n, dtype=np.int64).tolist(),
        rejected_shares=(np.arange(n, dtype=np.int64) // 100).tolist(),
    )
    return telemetry_pb2.WriteMetricsRequest(columns=cols).SerializeToString()


def rows_request(miner_ids: list[str], start: datetime, steps: int, seed_value: int) -> bytes:
    columns = telemetry_pb2.WriteMetricsRequest.FromString(
        columns_request(miner_ids, start, steps, seed_value)
    ).columns
    samples = []
    for i in range(len(columns.miner_id)):
        sample = telemetry_pb2.MetricSample(
            miner_id=columns.miner_id[i],
            hashrate_ths=columns.hashrate_ths[i],
            temperature_c=columns.temperature_c[i],
            fan_speed_rpm=columns.fan_speed_rpm[i],
            power_w=columns.power_w[i],
            accepted_shares=columns.accepted_shares[i],
            rejected_shares=columns.rejected_shares[i],
        )
        sample.timestamp.FromMilliseconds(columns.timestamp_ms[i])
        samples.append(sample)
    return telemetry_pb2.WriteMetricsRequest(samples=samples).SerializeToString()


def ingest_rate(channel: grpc.Channel, requests: list[bytes]) -> tuple[float, int]:
    """(samples/s, samples) sending pre-serialised requests one after another, end to end."""
    write = channel.unary_unary(
        WRITE_METHOD,
        request_serializer=None,
        response_deserializer=telemetry_pb2.WriteMetricsResponse.FromString,
    )
    started = time.perf_counter()
    total = 0
    for request in requests:
        ack = write(request, timeout=300)
        total += ack.written + ack.duplicates
    return total / (time.perf_counter() - started), total


async def fan_out(
    target: str, miner_ids: list[str], subscribers: int, request: bytes
) -> tuple[float, int, float]:
    """(updates/s delivered, updates delivered, seconds) to `subscribers` streams after one live batch
    touching `miner_ids`: from the write to the last subscriber's last expected update."""
    wanted = set(miner_ids)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        done = 0
        last = 0.0
        ready = asyncio.Event()
        opened = 0

        async def subscriber() -> None:
            nonlocal done, last, opened
            seen: set[str] = set()
            call = stub.SubscribeScores(
                scoring_pb2.SubscribeScoresRequest(miner_ids=miner_ids, heartbeat_seconds=1)
            )
            opened += 1
            if opened == subscribers:
                ready.set()
            async for event in call:
                if event.HasField("update") and event.update.miner_id in wanted:
                    seen.add(event.update.miner_id)
                    done += 1
                    last = time.perf_counter()
                    if len(seen) == len(wanted):
                        call.cancel()
                        return

        tasks = [asyncio.create_task(subscriber()) for _ in range(subscribers)]
        await ready.wait()
        await asyncio.sleep(2.0)  # every stream registered on the server
        write = channel.unary_unary(
            WRITE_METHOD,
            request_serializer=None,
            response_deserializer=telemetry_pb2.WriteMetricsResponse.FromString,
        )
        started = time.perf_counter()
        await write(request)
        await asyncio.wait(tasks, timeout=60)
        for task in tasks:
            task.cancel()
        elapsed = (last or time.perf_counter()) - started
        return done / elapsed, done, elapsed


def score_fleet(channel: grpc.Channel) -> tuple[float, float, int]:
    """(client wall ms, server elapsed_ms, miners scored) of one ScoreFleet call (top 100)."""
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    started = time.perf_counter()
    reply = stub.ScoreFleet(scoring_pb2.ScoreFleetRequest(top_k=100), timeout=600)
    return (time.perf_counter() - started) * 1000, reply.elapsed_ms, reply.miners_scored


# ---- the run -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/perf.md"))
    parser.add_argument("--miners", type=int, default=200, help="miners in the prediction fleet")
    parser.add_argument("--days", type=float, default=3.0, help="days of history in the prediction fleet")
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--rate", type=int, default=1000, help="offered req/s for the latency runs")
    parser.add_argument("--repeats", type=int, default=3, help="load runs per endpoint (medians)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fleet-sizes", default="1000,10000,100000")
    parser.add_argument(
        "--fleet-days", type=float, default=1.2, help="history per miner in the scoring fleets"
    )
    parser.add_argument("--work", type=Path, default=None, help="keep the temp data here")
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        sys.exit("h2load is missing: run bench/setup.sh (or make bench)")
    work = args.work or Path(tempfile.mkdtemp(prefix="mfh-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []  # (measure, value, note)
    started_at = datetime.now(UTC)

    def row(measure: str, value: str, note: str = "") -> None:
        rows.append((measure, value, note))
        print(f"{measure:<58} {value:>20}  {note}", flush=True)

    main_dir = work / "main"
    seconds = seed(main_dir, args.miners, args.days, seed_value=11)
    print(f"seeded {args.miners} miners x {args.days} days in {seconds:.1f} s", flush=True)
    shutil.copy(main_dir / "fleet.duckdb", work / "naive.duckdb")

    with server(main_dir, envoy=True) as srv:
        grpc_target = f"127.0.0.1:{srv.info['grpc_port']}"
        http = f"http://127.0.0.1:{srv.info['http_port']}"
        channel = grpc.insecure_channel(grpc_target, options=[("grpc.max_send_message_length", 64 << 20)])
        from mining.analytics.v1alpha1 import common_pb2

        lstm = train(channel, common_pb2.LSTM, args.epochs)
        auto = train(channel, common_pb2.AUTOENCODER, args.epochs)
        row(
            "training, LSTM (windows/s)",
            f"{lstm.samples_per_second:,.0f}",
            f"{args.epochs} epochs, job's samples_per_second",
        )
        row("training, autoencoder (windows/s)", f"{auto.samples_per_second:,.0f}", "")
        store_miners = sorted(
            m.miner_id
            for m in __import__("server.store", fromlist=["Store"])
            .Store.open(work / "naive.duckdb")
            .list_miners()
        )
        naive = spawn(
            [
                PY,
                "-m",
                "bench.naive_server",
                "--db",
                str(work / "naive.duckdb"),
                "--models",
                str(main_dir / "models"),
            ]
        )
        try:
            naive_base = f"http://127.0.0.1:{naive.info['port']}"
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            probe = store_miners[0]
            stub.PredictFailureRisk(scoring_pb2.PredictFailureRiskRequest(miner_id=probe))  # answers OK
            body = work / "predict.grpc"
            body.write_bytes(
                grpc_body(scoring_pb2.PredictFailureRiskRequest(miner_id=probe).SerializeToString())
            )
            endpoints = {
                "gRPC PredictFailureRisk (h2c, 1 miner)": (
                    grpc_target,
                    [f"http://{grpc_target}{PREDICT_METHOD}"],
                    False,
                    body,
                ),
                "REST via Envoy (HTTP/1.1)": (
                    http,
                    [f"{http}{REST_PATH}{m}" for m in store_miners],
                    True,
                    None,
                ),
                "REST naive server (HTTP/1.1)": (
                    naive_base,
                    [f"{naive_base}{REST_PATH}{m}" for m in store_miners],
                    True,
                    None,
                ),
            }
            results: dict[str, list[tuple[Load, Load]]] = {name: [] for name in endpoints}
            for _ in range(args.repeats):  # interleaved, so drift hits every endpoint alike
                for name, (target, uris, h1, data) in endpoints.items():
                    results[name].append(
                        predict_load(
                            work, target, uris, h1=h1, body=data, duration=args.duration, rate=args.rate
                        )
                    )
            medians: dict[str, dict[str, float]] = {}
            for name, runs in results.items():
                failed = sum(s.failed + f.failed for s, f in runs)
                medians[name] = {
                    "rps": statistics.median(s.rps for s, _ in runs),
                    "fixed_rps": statistics.median(f.rps for _, f in runs),
                    "p50": statistics.median(f.p50_ms for _, f in runs),
                    "p95": statistics.median(f.p95_ms for _, f in runs),
                    "p99": statistics.median(f.p99_ms for _, f in runs),
                }
                m = medians[name]
                row(f"{name}: saturation, 64 clients (req/s)", f"{m['rps']:,.0f}", f"{failed} failed")
                row(
                    f"{name}: p50 / p95 / p99 at {args.rate} req/s offered (ms)",
                    f"{m['p50']:.1f} / {m['p95']:.1f} / {m['p99']:.1f}",
                    f"achieved {m['fixed_rps']:,.0f} req/s",
                )
            ratio = (
                medians["REST via Envoy (HTTP/1.1)"]["rps"] / medians["REST naive server (HTTP/1.1)"]["rps"]
            )
            row("REST saturation ratio, server / naive", f"{ratio:.1f}x", "goal >= 10x")
            naive_rss = naive.peak_rss_mib()
        finally:
            naive.stop()
        row("naive server peak RSS (MiB)", f"{naive_rss:,.0f}", "")

        # Ingestion: fresh miners, batches in the past (a backfill-free stream ending now).
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        ingest_miners = [f"10.200.{i // 250}.{i % 250}" for i in range(2000)]
        steps, batches = 25, 6
        col_requests = [
            columns_request(ingest_miners, now - timedelta(minutes=5 * steps * (batches - b)), steps, b)
            for b in range(batches)
        ]
        # The first batch auto-registers the 2,000 miners (a one-off, timed on its own).
        first_rate, _ = ingest_rate(channel, col_requests[:1])
        row(
            "ingestion, first columnar batch incl. registering 2,000 miners (samples/s)",
            f"{first_rate:,.0f}",
            "",
        )
        rate_col, total_col = ingest_rate(channel, col_requests[1:])
        row(
            "ingestion, columnar WriteMetrics (samples/s)",
            f"{rate_col:,.0f}",
            f"{total_col:,} samples, {batches - 1} x 50k, known miners",
        )
        row_miners = [f"10.201.{i // 250}.{i % 250}" for i in range(400)]
        row_requests = [
            rows_request(row_miners, now - timedelta(minutes=5 * 25 * (4 - b)), 25, b) for b in range(4)
        ]
        ingest_rate(channel, row_requests[:1])  # registers the 400 miners
        rate_row, total_row = ingest_rate(channel, row_requests[1:])
        row(
            "ingestion, row WriteMetrics (samples/s)",
            f"{rate_row:,.0f}",
            f"{total_row:,} samples, 3 x 10k, known miners",
        )
        row("ingestion ratio, columnar / row", f"{rate_col / rate_row:.1f}x", "")

        # Subscription fan-out: one live batch for the prediction fleet, 100 subscribers.
        live = columns_request(store_miners, datetime.now(UTC) - timedelta(minutes=1), 1, 99)
        per_s, delivered, elapsed = asyncio.run(fan_out(grpc_target, store_miners, 100, live))
        row(
            "subscription fan-out, 100 subscribers (updates/s)",
            f"{per_s:,.0f}",
            f"{delivered:,} delivered in {elapsed:.2f} s",
        )
        row(
            "server peak RSS (MiB)",
            f"{srv.peak_rss_mib():,.0f}",
            f"{args.miners} miners, after all of the above",
        )
        channel.close()

    # Fleet scoring: a store per size, the same models.
    for size in [int(s) for s in args.fleet_sizes.split(",") if s]:
        fleet_dir = work / f"fleet{size}"
        seconds = seed(fleet_dir, size, args.fleet_days, seed_value=size)
        shutil.copytree(main_dir / "models", fleet_dir / "models")
        with server(fleet_dir, envoy=False) as srv:
            with grpc.insecure_channel(f"127.0.0.1:{srv.info['grpc_port']}") as channel:
                cold = score_fleet(channel)
                warm = [score_fleet(channel) for _ in range(3)]
            rss = srv.peak_rss_mib()
        row(
            f"ScoreFleet {size:,} miners, cold (s)",
            f"{cold[0] / 1000:.2f}",
            f"{cold[2]:,} scored; server start incl. cache build {srv.info['start_s']:.1f} s; "
            f"seed {seconds:.0f} s",
        )
        row(
            f"ScoreFleet {size:,} miners, warm (s)",
            f"{statistics.median(w[0] for w in warm) / 1000:.2f}",
            f"median of 3; server peak RSS {rss:,.0f} MiB",
        )

    write_report(args, rows, started_at, work)


def write_report(
    args: argparse.Namespace, rows: list[tuple[str, str, str]], started_at: datetime, work: Path
) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024**2  # type: ignore[union-attr]
    load = os.getloadavg()
    h2 = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Performance",
        "",
        f"- Date: {started_at:%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPUs ({cpu}), {mem} GiB, "
        "no GPU; "
        f"load average at the end {load[0]:.2f} (other engineers may share the machine).",
        "- Command: `make bench` (= `bash bench/setup.sh && .venv/bin/python -m bench.run "
        f"--out {args.out}`); "
        f"{args.miners} miners x {args.days:g} days for prediction, {args.repeats} interleaved runs of "
        f"{args.duration} s per endpoint (medians), {args.epochs} training epochs.",
        f"- Load: {h2}, pinned with taskset to CPU {(os.cpu_count() or 1) - 1}; saturation = 64 clients "
        "(HTTP/1.1: 64 connections; gRPC: 64 h2c connections, 1 stream each); latency = 10 clients at "
        f"{args.rate / 10:g} req/s each (closed loop: a client waits for its reply, so the achieved rate "
        "falls when replies take longer than 10 ms). gRPC load hits one miner (h2load sends one body); "
        "REST loads cycle over every miner.",
        "- Server: grpc.aio + Envoy (bench.serve), 1 torch thread. Naive: bench.naive_server, stdlib "
        "ThreadingHTTPServer, per request DuckDB read (own copy of the store) + batch-of-one forward pass.",
        "",
        "| Measure | Value | Note |",
        "|---|---:|---|",
        *(f"| {m} | {v} | {n} |" for m, v, n in rows),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} (work folder {work})")


if __name__ == "__main__":
    main()
