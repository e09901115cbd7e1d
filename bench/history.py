"""History and rescoring benchmark: numbers for issue 15's closing note, in one run.

    .venv/bin/python -m bench.history --out bench/results/history.md

Everything runs on 127.0.0.1 in a temp folder, one server process at a time (bench.serve), so it
keeps to about one core. It measures:
1. fleet rescoring after a model became active (a training promotion, ActivateModel, a restart) on
   the demo-sized fleet and on a large one: the server's own `mfh_rescore_last_duration_seconds`,
   and the wall time from the API call to the last miner's new score (`mfh_rescore_runs` counting);
2. history query times through Envoy for one miner, 1 day and 30 days (telemetry, risk history);
3. the storage cost of the risk history: the DuckDB file's growth for a dense history (a point every
   5 minutes for every miner), per miner-day;
4. ingestion with risk-history persistence on and off, side by side on copies of one store: live
   column batches (200 miners x 1 h each), until the rescorer has scored the last one.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
from mining.analytics.v1alpha1 import (
    common_pb2,
    scoring_pb2,
    scoring_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)
from prometheus_client.parser import text_string_to_metric_families

from bench.run import Proc, columns_request, ingest_rate, spawn
from server.records import RiskLevel
from server.sim import seed_store, simulate_fleet
from server.sim.fleet import miner_ip
from server.store import Store
from server.store.history import RiskPoint

QUIET = [
    "outage_scan_interval_s=0",
    "retention_interval_s=0",
    "expensive_calls_burst=1000",
    "expensive_calls_per_minute=100000",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(data_dir: Path, *, extra: list[str] = (), envoy: bool = True) -> Iterator[tuple[Proc, int]]:  # type: ignore[assignment]
    """The server (and Envoy) in a process of its own; yields it and its metrics port."""
    import sys

    metrics = free_port()
    argv = [sys.executable, "-m", "bench.serve", "--data-dir", str(data_dir)]
    argv += ["--with-envoy"] if envoy else []
    for setting in [*QUIET, f"metrics_port={metrics}", *extra]:
        argv += ["--setting", setting]
    proc = spawn(argv, timeout=1800)
    try:
        yield proc, metrics
    finally:
        proc.stop()


def seed(data_dir: Path, miners: int, days: float, end: datetime | None = None) -> float:
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    with Store.open(data_dir / "fleet.duckdb") as store:
        seed_store(store, simulate_fleet(miners, days, 7, end=end))
        store.checkpoint()
    return time.perf_counter() - started


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("mfh_rescore")
    }


def wait_rescored(port: int, runs_before: float, timeout: float = 1800) -> dict[str, float]:
    """Waits until a fleet rescoring finished after `runs_before`; returns the rescore gauges."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = scrape(port)
        if metrics.get("mfh_rescore_runs", 0) > runs_before and not metrics.get("mfh_rescore_running"):
            return metrics
        time.sleep(0.05)
    raise TimeoutError("the fleet rescoring did not finish")


def train(channel: grpc.Channel, kind: int, epochs: int, seed_value: int) -> training_pb2.TrainJob:
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    job = stub.Train(training_pb2.TrainRequest(model_kind=kind, epochs=epochs, seed=seed_value))
    while job.state in (training_pb2.JOB_STATE_QUEUED, training_pb2.JOB_STATE_RUNNING):
        time.sleep(0.2)
        job = stub.GetTrainJob(training_pb2.GetTrainJobRequest(job_id=job.job_id))
    assert job.state == training_pb2.JOB_STATE_SUCCEEDED, job
    return job


def activate(channel: grpc.Channel, port: int) -> tuple[str, float, float]:
    """Activates the LSTM version that is not active; (version, wall s to rescored, server s)."""
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    versions = stub.ListModels(training_pb2.ListModelsRequest(model_kind=common_pb2.LSTM)).models
    other = next(v.version for v in versions if not v.active)
    runs = scrape(port).get("mfh_rescore_runs", 0)
    started = time.perf_counter()
    stub.ActivateModel(training_pb2.ActivateModelRequest(model_kind=common_pb2.LSTM, version=other))
    metrics = wait_rescored(port, runs)
    return other, time.perf_counter() - started, metrics["mfh_rescore_last_duration_seconds"]


def timed_get(url: str, repeats: int) -> tuple[float, int, dict[str, object]]:
    """(median ms, bytes, body) of GET url, after one warm-up."""
    times, size, body = [], 0, {}
    for i in range(repeats + 1):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as reply:
            raw = reply.read()
        if i:
            times.append((time.perf_counter() - started) * 1000)
        size, body = len(raw), json.loads(raw)
    return statistics.median(times), size, body


def dense_risk_history(data_dir: Path, days: float) -> tuple[int, int, float]:
    """Writes a point every 5 min for every miner over `days` (one batch per day, as rescoring writes
    them in rounds); returns (points, bytes the file grew, seconds spent writing)."""
    path = data_dir / "fleet.duckdb"
    with Store.open(path) as store:
        store.checkpoint()
        before = path.stat().st_size
        miners = [m.miner_id for m in store.list_miners()]
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        rng = np.random.default_rng(1)
        written, spent = 0, 0.0
        for day in range(int(days)):
            day_end = end - timedelta(days=int(days) - day - 1)
            points = [
                RiskPoint(
                    miner_id=m,
                    window_end=day_end - timedelta(minutes=5 * k),
                    model_version="lstm-20261129T155928Z-67db",
                    risk_score=float(r),
                    risk_level=RiskLevel.from_score(float(r), (0.25, 0.5, 0.75)),
                    is_anomaly=bool(r > 0.9),
                    anomaly_score=float(r) * 2.0,
                    anomaly_model_version="autoencoder-20261129T160012Z-1a2b",
                    scored_at=day_end,
                )
                for m in miners
                for k, r in enumerate(rng.beta(1, 12, 288))
            ]
            started = time.perf_counter()
            store.write_risk_points(points)
            spent += time.perf_counter() - started
            written += len(points)
        store.checkpoint()
        grown = path.stat().st_size - before
    return written, grown, spent


def ingest_run(
    data_dir: Path, models: Path, *, history_on: bool, miners: int, start: datetime, hours: int
) -> tuple[float, float, int]:
    """(samples/s acked, samples/s until the last batch was re-scored, samples) on one store copy."""
    shutil.copytree(models, data_dir / "models")
    extra = [
        "backfill_after_minutes=100000000",
        f"risk_history={str(history_on).lower()}",
        "subscriber_queue=100000",
    ]
    with server(data_dir, extra=extra, envoy=False) as (proc, metrics):
        wait_rescored(metrics, 0)  # the start-up rescoring, not measured here
        target = f"127.0.0.1:{proc.info['grpc_port']}"
        ids = [miner_ip(i) for i in range(miners)]
        requests = [columns_request(ids, start + timedelta(hours=h), 12, h) for h in range(hours)]
        last_end = start + timedelta(hours=hours - 1, minutes=55)
        with grpc.insecure_channel(target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            stream = stub.SubscribeScores(
                scoring_pb2.SubscribeScoresRequest(miner_ids=[ids[0]]), timeout=1800
            )
            done = threading.Event()

            def watch() -> None:
                for event in stream:
                    if (
                        event.HasField("update")
                        and event.update.window_end.ToDatetime(tzinfo=UTC) >= last_end
                    ):
                        done.set()
                        return

            threading.Thread(target=watch, daemon=True).start()
            time.sleep(0.5)
            started = time.perf_counter()
            acked_rate, total = ingest_rate(channel, requests)
            assert done.wait(600), "the last batch was never re-scored"
            elapsed = time.perf_counter() - started
            stream.cancel()
    return acked_rate, total / elapsed, total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/history.md"))
    parser.add_argument("--miners", type=int, default=200)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--large-miners", type=int, default=10_000)
    parser.add_argument("--large-days", type=float, default=1.5)
    parser.add_argument(
        "--ingest-hours", type=int, default=72, help="hours of live batches per ingestion run"
    )
    parser.add_argument("--repeats", type=int, default=2, help="ingestion runs per setting (medians)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument(
        "--ingest-only",
        type=Path,
        default=None,
        metavar="MODELS_DIR",
        help="only the ingestion comparison, with the models of an earlier run (its work/demo/models)",
    )
    args = parser.parse_args()
    if args.ingest_only is not None:
        ingest_report(args, args.ingest_only)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="mfh-history-bench-"))
    lines: list[str] = []

    def note(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    # -- the demo-sized fleet: dense risk history, rescoring, queries ------------------------------
    demo = work / "demo"
    seconds = seed(demo, args.miners, args.days)
    points, grown, write_s = dense_risk_history(demo, args.days)
    miner_days = args.miners * int(args.days)
    note(f"seeded {args.miners} miners x {args.days:g} days in {seconds:.1f} s")
    rescores: list[tuple[str, float, float]] = []
    with server(demo) as (proc, metrics):
        wait_rescored(metrics, -1)
        http = f"http://127.0.0.1:{proc.info['http_port']}"
        with grpc.insecure_channel(f"127.0.0.1:{proc.info['grpc_port']}") as channel:
            for kind, seed_value, label in (
                (common_pb2.LSTM, 5, "training promotion (LSTM)"),
                (common_pb2.AUTOENCODER, 5, "training promotion (autoencoder)"),
                (common_pb2.LSTM, 6, "training, second LSTM"),
            ):
                runs = scrape(metrics).get("mfh_rescore_runs", 0)
                job = train(channel, kind, args.epochs, seed_value)
                finished = time.perf_counter()
                if job.promoted:
                    gauges = wait_rescored(metrics, runs)
                    rescores.append(
                        (label, time.perf_counter() - finished, gauges["mfh_rescore_last_duration_seconds"])
                    )
            for _ in range(2):
                version, wall, own = activate(channel, metrics)
                rescores.append((f"ActivateModel {version}", wall, own))
        miner = "192.168.1.100"
        newest = datetime.now(UTC)
        day_ago = f"{newest - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"
        month_ago = f"{newest - timedelta(days=30):%Y-%m-%dT%H:%M:%SZ}"
        queries = []
        for label, path in (
            ("telemetry, 1 day (300 s steps)", f"/api/advanced/miners/{miner}/telemetry"),
            (
                "telemetry, 30 days (automatic steps)",
                f"/api/advanced/miners/{miner}/telemetry?start={month_ago}&end={newest:%Y-%m-%dT%H:%M:%SZ}",
            ),
            (
                "risk history, 1 day",
                f"/api/advanced/miners/{miner}/risk-history?start={day_ago}",
            ),
            (
                "risk history, 30 days",
                f"/api/advanced/miners/{miner}/risk-history?start={month_ago}",
            ),
        ):
            ms, size, body = timed_get(http + path, repeats=7)
            count = len(body.get("times", body.get("points", [])))  # type: ignore[arg-type]
            queries.append((label, ms, size, count))
    models = demo / "models"

    # -- the large fleet: rescoring at start (a restart) and after ActivateModel ---------------------
    large = work / "large"
    large_seed_s = seed(large, args.large_miners, args.large_days)
    shutil.copytree(models, large / "models")
    large_rescores: list[tuple[str, float, float]] = []
    with server(large, envoy=False) as (proc, metrics):
        gauges = wait_rescored(metrics, 0)
        large_rescores.append(
            ("restart (start-up)", float("nan"), gauges["mfh_rescore_last_duration_seconds"])
        )
        with grpc.insecure_channel(f"127.0.0.1:{proc.info['grpc_port']}") as channel:
            version, wall, own = activate(channel, metrics)
            large_rescores.append((f"ActivateModel {version}", wall, own))
        start_s = proc.info["start_s"]
    shutil.rmtree(large, ignore_errors=True)

    # -- report -----------------------------------------------------------------------------------
    out: list[str] = [
        "# History and rescoring benchmark",
        "",
        f"`.venv/bin/python -m bench.history` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{__import__('os').cpu_count()} cores shared with other work; one server process at a time).",
        "",
        "## Rescoring the fleet after a model became active",
        "",
        "`server` is the server's own `mfh_rescore_last_duration_seconds` (every miner's window prepared, "
        "both models, scores published and risk points written); `wall` runs from the API call returning "
        "(training: the job finished; ActivateModel: the call) until the metrics say the run finished.",
        "",
        "| fleet | event | server (s) | wall (s) |",
        "|---|---|---:|---:|",
    ]
    for label, wall, own in rescores:
        out.append(f"| {args.miners} miners x {args.days:g} days | {label} | {own:.2f} | {wall:.2f} |")
    for label, wall, own in large_rescores:
        out.append(
            f"| {args.large_miners:,} miners x {args.large_days:g} days | {label} | {own:.2f} | "
            + ("" if wall != wall else f"{wall:.2f}")
            + " |"
        )
    out += [
        "",
        f"The {args.large_miners:,}-miner store was seeded in {large_seed_s:.0f} s; its server was ready in "
        f"{start_s:.0f} s (feature cache for every miner) and rescored the fleet right after.",
        "",
        "## History queries, one miner, through Envoy",
        "",
        f"Store: {args.miners} miners x {args.days:g} days of samples and a dense risk history "
        f"({points:,} points). Median of 7 after a warm-up.",
        "",
        "| query | median (ms) | response (KiB) | points per series |",
        "|---|---:|---:|---:|",
    ]
    for label, ms, size, count in queries:
        out.append(f"| {label} | {ms:.1f} | {size / 1024:.0f} | {count:,} |")
    out += [
        "",
        "## Storage cost of the risk history",
        "",
        f"A point every 5 minutes for each of {args.miners} miners over {int(args.days)} days "
        f"({points:,} points, written in daily batches in {write_s:.1f} s): the DuckDB file grew by "
        f"{grown / 2**20:.1f} MiB, "
        f"**{grown / miner_days / 1024:.1f} KiB per miner-day** ({grown / points:.0f} bytes per point).",
        "",
    ]
    out += ingest_section(args, work, models)
    args.out.write_text("\n".join(out))
    print("\n".join(out))


def ingest_section(args: argparse.Namespace, work: Path, models: Path) -> list[str]:
    """Ingestion with risk-history persistence on and off, side by side; the report's lines."""
    # -- ingestion with risk-history persistence on and off, side by side ---------------------------
    base = work / "ingest-base"
    ingest_start = (datetime.now(UTC) - timedelta(hours=args.ingest_hours + 1)).replace(
        minute=0, second=0, microsecond=0
    )
    seed(base, args.miners, 3.0, end=ingest_start - timedelta(minutes=5))
    rates: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
    for repeat in range(args.repeats):
        for history_on in (False, True):
            run_dir = work / f"ingest-{repeat}-{history_on}"
            shutil.copytree(base, run_dir)
            rates[history_on].append(
                ingest_run(
                    run_dir,
                    models,
                    history_on=history_on,
                    miners=args.miners,
                    start=ingest_start,
                    hours=args.ingest_hours,
                )
            )
            shutil.rmtree(run_dir, ignore_errors=True)
    on_acked = statistics.median(r[0] for r in rates[True])
    off_acked = statistics.median(r[0] for r in rates[False])
    on_done = statistics.median(r[1] for r in rates[True])
    off_done = statistics.median(r[1] for r in rates[False])
    return [
        "## Ingestion with risk-history persistence on and off",
        "",
        f"Live column batches of {args.miners} miners x 1 h ({args.miners * 12:,} samples) for "
        f"{args.ingest_hours} h, every batch re-scored (`backfill_after_minutes` raised), on copies of "
        "one store; `scored` counts until the rescorer published the last batch's score. Runs "
        f"alternate off/on; medians of {args.repeats}.",
        "",
        "| risk history | samples/s acked | samples/s until scored | runs |",
        "|---|---:|---:|---|",
        f"| off | {off_acked:,.0f} | {off_done:,.0f} | "
        + ", ".join(f"{r[1]:,.0f}" for r in rates[False])
        + " |",
        f"| on | {on_acked:,.0f} | {on_done:,.0f} | " + ", ".join(f"{r[1]:,.0f}" for r in rates[True]) + " |",
        "",
        f"On vs off: {100 * (on_done / off_done - 1):+.1f} % (until scored), "
        f"{100 * (on_acked / off_acked - 1):+.1f} % (acked).",
        "",
    ]


def ingest_report(args: argparse.Namespace, models: Path) -> None:
    work = args.work or Path(tempfile.mkdtemp(prefix="mfh-history-bench-"))
    out = [
        "# Ingestion with risk-history persistence on and off",
        "",
        f"`.venv/bin/python -m bench.history --ingest-only MODELS --repeats {args.repeats} --ingest-hours "
        f"{args.ingest_hours}` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{__import__('os').cpu_count()} cores shared with other work).",
        "",
        *ingest_section(args, work, models)[2:],
    ]
    args.out.write_text("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()
