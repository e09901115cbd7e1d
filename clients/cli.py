"""`mining-health`: the command line of the mining-fleet health server.

Exit codes: 0 ok, 1 the server answered an error (code, reason and message are printed),
2 usage (bad flags, unreadable input file), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import Message
from mining.analytics.v1alpha1 import common_pb2, telemetry_pb2, training_pb2

from clients.client import FINAL_JOB_STATES, ClientError, FleetHealthClient

DEFAULT_TARGET: Final = "127.0.0.1:50051"
RISK_LEVELS: Final = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
# The documented import columns; miner_id and timestamp are required, the metrics may be absent.
REQUIRED_COLUMNS: Final = ("miner_id", "timestamp")
METRIC_COLUMNS: Final = ("hashrate_ths", "temperature_c", "fan_speed_rpm", "power_w")
SHARE_COLUMNS: Final = ("accepted_shares", "rejected_shares")


class UsageError(Exception):
    """Bad input from the user (exit code 2)."""


@dataclass
class Output:
    """Prints either for people or, with --json, one JSON document (or one per line for streams)."""

    as_json: bool

    def message(self, message: Message) -> None:
        print(json.dumps(to_dict(message)))

    def json(self, value: Any) -> None:
        print(json.dumps(value))


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _time(message: Message, name: str) -> str:
    if not message.HasField(name):
        return "-"
    stamp = getattr(message, name).ToDatetime()
    return f"{stamp.isoformat(timespec='seconds')}Z"


def _level(value: int) -> str:
    return common_pb2.RiskLevel.Name(value) if value else "-"  # type: ignore[arg-type]


def _kind(value: int) -> str:
    return common_pb2.ModelKind.Name(value)  # type: ignore[arg-type]


# -- commands -------------------------------------------------------------------------------------


def cmd_status(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    status = client.status()
    if out.as_json:
        out.message(status)
        return 0
    for label, info in (("lstm", status.lstm_model_info), ("autoencoder", status.autoencoder_info)):
        state = f"{info.version} (trained {_time(info, 'trained_at')})" if info.loaded else "not trained"
        print(f"{label + ' model:':<19}{state}")
    print(f"{'anomaly threshold:':<19}{status.anomaly_threshold:g}")
    print(f"{'miners:':<19}{status.miners}")
    print(f"{'samples:':<19}{status.samples}")
    print(f"{'failure events:':<19}{status.failure_events}")
    print(f"{'data:':<19}{_time(status, 'data_start')} .. {_time(status, 'data_end')}")
    print(f"{'features:':<19}{', '.join(status.feature_columns)}")
    print(f"{'window:':<19}{status.sequence_length} samples, horizon {status.horizon_hours} h")
    print(f"{'server version:':<19}{status.server_version}")
    return 0


def cmd_train(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    job = client.train(
        args.kind,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        request_id=args.request_id,
        seed=args.seed,
    )
    if args.no_follow:
        if out.as_json:
            out.message(job)
        else:
            print(
                f"started job {job.job_id} ({training_pb2.JobState.Name(job.state)}); "
                f"follow it with: mining-health train-watch {job.job_id}"
            )
        return 0
    return _follow(client, job, out)


def cmd_train_watch(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    return _follow(client, client.get_train_job(args.job_id), out)


def _follow(client: FleetHealthClient, job: training_pb2.TrainJob, out: Output) -> int:
    from tqdm import tqdm

    final = job
    bar = tqdm(
        total=job.params.epochs or None,
        unit="epoch",
        desc=f"{_kind(job.model_kind).lower()} {job.job_id}",
        disable=out.as_json,
        file=sys.stderr,
    )
    try:
        with bar:
            for update in client.watch_train_job(job.job_id):
                final = update
                if update.params.epochs and bar.total != update.params.epochs:
                    bar.total = update.params.epochs
                bar.update(update.epoch - bar.n)
                if update.epoch:
                    bar.set_postfix(train_loss=f"{update.train_loss:.4g}", val_loss=f"{update.val_loss:.4g}")
    except KeyboardInterrupt:
        print(
            f"\nstopped following; job {job.job_id} keeps running on the server "
            f"(cancel it with the CancelTrainJob RPC)",
            file=sys.stderr,
        )
        return 130
    succeeded = final.state == training_pb2.JOB_STATE_SUCCEEDED
    if out.as_json:
        out.message(final)
    else:
        state = training_pb2.JobState.Name(final.state).removeprefix("JOB_STATE_")
        print(f"job {final.job_id}: {state}")
        if succeeded:
            promoted = (
                "promoted to active" if final.promoted else "not promoted (not better than the active one)"
            )
            print(f"model {final.model_version}: {promoted}")
            for name, value in sorted(final.metrics.items()):
                print(f"  {name} = {value:.4g}")
        elif final.error:
            print(f"error: {final.error}", file=sys.stderr)
    return 0 if succeeded or final.state not in FINAL_JOB_STATES else 1


def cmd_risk(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    risk = client.predict_failure_risk(args.miner_id, explain=args.explain)
    if out.as_json:
        out.message(risk)
        return 0
    print(
        f"miner {risk.miner_id}: risk {risk.risk_score:.3f} ({_level(risk.risk_level)}) "
        f"within {risk.horizon_hours} h"
    )
    print(
        f"window {_time(risk, 'window_start')} .. {_time(risk, 'window_end')} "
        f"({risk.window_samples} samples), model {risk.model_version}"
    )
    if risk.likely_failure_mode:
        mode = common_pb2.FailureMode.Name(risk.likely_failure_mode).removeprefix("FAILURE_MODE_")
        print(f"likely failure mode: {mode}")
    if risk.risk_factors:
        print(f"{'feature':<22}{'importance':>11}{'recent':>12}{'fleet norm':>12}  unit")
        for factor in risk.risk_factors:
            print(
                f"{factor.feature:<22}{factor.importance:>11.3f}{factor.recent_value:>12.4g}"
                f"{factor.fleet_norm:>12.4g}  {factor.unit}"
            )
    return 0


def cmd_anomalies(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    result = client.detect_anomalies(args.miner_id, start=args.start, end=args.end)
    if out.as_json:
        out.message(result)
        return 0
    flagged = sum(1 for window in result.windows if window.is_anomaly)
    print(
        f"miner {result.miner_id}: {flagged} of {len(result.windows)} window(s) anomalous "
        f"(threshold {result.threshold:.4g}, model {result.model_version})"
    )
    for window in result.windows:
        if window.is_anomaly or args.all:
            mark = "ANOMALY" if window.is_anomaly else "ok"
            print(
                f"{_time(window, 'window_end')}  {window.score:>10.4g}  {mark:<8}"
                f"confidence {window.confidence:.2f}  {', '.join(window.top_features)}"
            )
    return 0


def cmd_miners(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    miners = []
    for miner in client.iter_miners(
        page_size=min(1000, args.limit or 1000),
        min_risk_level=args.min_risk,
        hardware_model=args.hardware_model,
        site=args.site,
    ):
        miners.append(miner)
        if args.limit and len(miners) >= args.limit:
            break
    # The server already sorts highest risk first; sort again so the table never depends on it.
    miners.sort(key=lambda m: (-m.risk_score, m.miner_id))
    if out.as_json:
        out.json([to_dict(miner) for miner in miners])
        return 0
    print(f"{'miner':<18}{'model':<22}{'risk':>6}  {'level':<9}{'anomaly':<9}{'samples':>8}  last seen")
    for m in miners:
        risk = f"{m.risk_score:.3f}" if m.risk_level else "-"
        print(
            f"{m.miner_id:<18}{m.hardware_model[:21]:<22}{risk:>6}  {_level(m.risk_level):<9}"
            f"{'yes' if m.is_anomaly else '':<9}{m.sample_count:>8}  {_time(m, 'last_seen')}"
        )
    return 0


def cmd_watch(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    events = client.subscribe_scores(
        miner_ids=args.miner,
        min_risk_level=args.min_risk,
        anomalies_only=args.anomalies_only,
        after_sequence=args.after_sequence,
        heartbeat_seconds=args.heartbeat,
    )
    try:
        for event in events:
            kind = event.WhichOneof("event")
            if out.as_json:
                out.message(event)
            elif kind == "update":
                score = event.update
                anomaly = f"  ANOMALY {score.anomaly_score:.4g}" if score.is_anomaly else ""
                print(
                    f"#{event.sequence} {_time(score, 'window_end')} {score.miner_id:<18} "
                    f"risk {score.risk_score:.3f} {_level(score.risk_level)}{anomaly}",
                    flush=True,
                )
            elif kind == "dropped":
                print(
                    f"warning: {event.dropped.count} update(s) dropped (reading too slowly)", file=sys.stderr
                )
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    return 0


def _read_columns(path: Path) -> tuple[Any, str, int]:
    """Opens the file with DuckDB in this process; returns (connection, SELECT, rows)."""
    import duckdb

    suffix = path.suffix.lower()
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    reader = {".csv": "read_csv", ".tsv": "read_csv", ".parquet": "read_parquet", ".pq": "read_parquet"}.get(
        suffix
    )
    if reader is None:
        raise UsageError(f"{path}: unknown format {suffix!r}; expected .csv or .parquet")
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")  # timestamps without an offset are UTC
    source = f"{reader}('{str(path).replace(chr(39), chr(39) * 2)}')"
    try:
        columns = {row[0] for row in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    except duckdb.Error as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from exc
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise UsageError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(sorted(columns))}"
        )

    def metric(name: str) -> str:
        return f"coalesce(CAST(\"{name}\" AS DOUBLE), 'NaN'::DOUBLE)" if name in columns else "'NaN'::DOUBLE"

    def shares(name: str) -> str:
        return f'coalesce(CAST("{name}" AS BIGINT), -1)' if name in columns else "-1::BIGINT"

    select = (
        'SELECT CAST(miner_id AS VARCHAR), epoch_ms(CAST("timestamp" AS TIMESTAMPTZ)), '
        + ", ".join([metric(name) for name in METRIC_COLUMNS] + [shares(name) for name in SHARE_COLUMNS])
        + f" FROM {source}"
    )
    try:
        rows, incomplete = connection.execute(
            f'SELECT count(*), count(*) FILTER (miner_id IS NULL OR "timestamp" IS NULL) FROM {source}'
        ).fetchone() or (0, 0)
    except duckdb.Error as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from exc
    if incomplete:
        raise UsageError(f"{path}: {incomplete} row(s) without miner_id or timestamp")
    return connection, select, int(rows)


def cmd_import(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    from tqdm import tqdm

    path = Path(args.file)
    connection, select, rows = _read_columns(path)
    sizes: dict[str, int] = {}

    def batches() -> Iterator[telemetry_pb2.WriteMetricsRequest]:
        cursor = connection.execute(select)
        number = 0
        while chunk := cursor.fetchmany(args.batch_size):
            number += 1
            batch_id = f"{path.name}#{number}"
            sizes[batch_id] = len(chunk)
            miner_ids, times, hashrate, temperature, fan, power, accepted, rejected = zip(*chunk, strict=True)
            yield telemetry_pb2.WriteMetricsRequest(
                batch_id=batch_id,
                columns=telemetry_pb2.MetricColumns(
                    miner_id=miner_ids,
                    timestamp_ms=times,
                    hashrate_ths=hashrate,
                    temperature_c=temperature,
                    fan_speed_rpm=fan,
                    power_w=power,
                    accepted_shares=accepted,
                    rejected_shares=rejected,
                ),
            )

    totals = {"rows": rows, "batches": 0, "written": 0, "duplicates": 0, "miners_registered": 0}
    with tqdm(
        total=rows, unit="row", desc=f"import {path.name}", disable=out.as_json, file=sys.stderr
    ) as bar:
        for ack in client.ingest_metrics(batches()):
            totals["batches"] += 1
            totals["written"] += ack.written
            totals["duplicates"] += ack.duplicates
            totals["miners_registered"] += ack.miners_registered
            bar.update(sizes.get(ack.batch_id, ack.written + ack.duplicates))
    if out.as_json:
        out.json(totals)
    else:
        print(
            f"imported {rows} row(s) in {totals['batches']} batch(es): {totals['written']} written, "
            f"{totals['duplicates']} duplicate(s), {totals['miners_registered']} new miner(s)"
        )
    return 0


def cmd_collect(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    from clients.collector import Collector, CollectorConfig, MinerTarget, load_targets
    from clients.collector.sink import GrpcSink

    try:
        targets = [MinerTarget.parse(text) for text in args.targets]
        if args.targets_file:
            targets += load_targets(Path(args.targets_file))
        config = CollectorConfig(
            targets=tuple(targets),
            interval_s=args.interval,
            timeout_s=args.miner_timeout,
            concurrency=args.concurrency,
            max_backoff_s=args.max_backoff,
            outage_after_s=args.outage_after,
        )
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from exc
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    collector = Collector(config, GrpcSink(client))

    async def collect() -> int:
        if args.once:
            readings = await collector.poll_round()
            if collector.pending:
                print(
                    f"error: {collector.pending} reading(s) could not be sent to {client.target}",
                    file=sys.stderr,
                )
                return 1
            if out.as_json:
                out.json({"miners": len(config.targets), "readings": len(readings)})
            else:
                print(f"polled {len(config.targets)} miner(s), sent {len(readings)} reading(s)")
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await collector.run(stop)
        return 0

    return asyncio.run(collect())


# -- parser ---------------------------------------------------------------------------------------


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-25T00:00:00Z"
        ) from exc


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _risk(text: str) -> str:
    if text.upper() not in RISK_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(RISK_LEVELS)}")
    return text.upper()


def _example(text: str) -> str:
    return "example:\n" + textwrap.indent(textwrap.dedent(text).strip(), "  ")


def build_parser() -> argparse.ArgumentParser:
    # Global flags are accepted before and after the subcommand: SUPPRESS keeps a subcommand's
    # unset copy from overwriting a value given before it; defaults are applied in main().
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        default=argparse.SUPPRESS,
        help=f"server host:port (env MFH_TARGET; default {DEFAULT_TARGET})",
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        help="deadline of each call in seconds (default 30)",
    )
    common.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="bearer token sent as `authorization: Bearer ...` (env MFH_TOKEN)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable JSON output"
    )
    formatter = argparse.RawDescriptionHelpFormatter

    parser = argparse.ArgumentParser(
        prog="mining-health",
        parents=[common],
        formatter_class=formatter,
        description="Mining-fleet health: failure risk, anomalies, training and telemetry import.",
        epilog=_example("mining-health --target 10.0.0.5:50051 miners --min-risk HIGH"),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[..., int], help: str, example: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            parents=[common],
            help=help,
            description=help + ".",
            epilog=_example(example),
            formatter_class=formatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    command(
        "status",
        cmd_status,
        "Show loaded models, anomaly threshold and the store's size",
        "mining-health status --json",
    )

    train = command(
        "train",
        cmd_train,
        "Train a model and follow its progress (epochs, losses)",
        "mining-health train lstm --epochs 20\n  mining-health train autoencoder --no-follow --json",
    )
    train.add_argument("kind", choices=("lstm", "autoencoder"), help="which model to train")
    train.add_argument(
        "--epochs", type=_positive_int, help="epochs (server default: lstm 50, autoencoder 100)"
    )
    train.add_argument("--batch-size", type=_positive_int, help="mini-batch size (server default 32)")
    train.add_argument("--validation-split", type=float, help="fraction of miners held out, in (0, 1)")
    train.add_argument("--seed", type=int, help="random seed for a reproducible run")
    train.add_argument("--request-id", help="idempotency key: repeating it returns the same job")
    train.add_argument("--no-follow", action="store_true", help="print the job and return at once")

    watch_job = command(
        "train-watch", cmd_train_watch, "Follow a running training job", "mining-health train-watch 3f2a9c"
    )
    watch_job.add_argument("job_id", help="the job id printed by `train`")

    risk = command(
        "risk",
        cmd_risk,
        "Predict one miner's failure risk within the horizon",
        "mining-health risk 192.168.1.100 --explain",
    )
    risk.add_argument("miner_id", help="the miner's id, e.g. its IP address")
    risk.add_argument("--explain", action="store_true", help="also show the features driving the risk")

    anomalies = command(
        "anomalies",
        cmd_anomalies,
        "Score one miner's recent windows for anomalies",
        "mining-health anomalies 192.168.1.100 --start 2026-11-25T00:00:00Z",
    )
    anomalies.add_argument("miner_id", help="the miner's id")
    anomalies.add_argument("--start", type=_when, help="start of the range, ISO 8601 (default: end - 24 h)")
    anomalies.add_argument("--end", type=_when, help="end of the range, ISO 8601 (default: newest sample)")
    anomalies.add_argument("--all", action="store_true", help="list every window, not only anomalous ones")

    miners = command(
        "miners",
        cmd_miners,
        "List miners, highest risk first",
        "mining-health miners --min-risk HIGH --limit 20",
    )
    miners.add_argument(
        "--min-risk", type=_risk, help="only miners at or above LOW, MEDIUM, HIGH or CRITICAL"
    )
    miners.add_argument("--limit", type=_positive_int, help="show at most this many")
    miners.add_argument("--hardware-model", default="", help='only this model, e.g. "Antminer S19 Pro"')
    miners.add_argument("--site", default="", help="only this site")

    watch = command(
        "watch",
        cmd_watch,
        "Print score updates live, one line per update",
        "mining-health watch --min-risk HIGH --anomalies-only",
    )
    watch.add_argument("--miner", action="append", default=[], help="only this miner (repeatable)")
    watch.add_argument("--min-risk", type=_risk, help="only updates at or above this level")
    watch.add_argument("--anomalies-only", action="store_true", help="only anomalous windows")
    watch.add_argument("--after-sequence", type=int, default=0, help="resume after this sequence number")
    watch.add_argument(
        "--heartbeat", type=int, default=0, help="seconds between heartbeats (server default 15)"
    )

    imports = command(
        "import",
        cmd_import,
        "Import telemetry from a CSV or Parquet file (columns: miner_id, timestamp, hashrate_ths, "
        "temperature_c, fan_speed_rpm, power_w, accepted_shares, rejected_shares)",
        "mining-health import fleet-2026-11.parquet",
    )
    imports.add_argument("file", help="a .csv or .parquet file; timestamps without an offset are UTC")
    imports.add_argument(
        "--batch-size", type=_positive_int, default=5000, help="rows per batch (default 5000)"
    )

    collect = command(
        "collect",
        cmd_collect,
        "Poll miners over the cgminer API (TCP 4028: Antminer, Braiins OS, Whatsminer) and send readings",
        "mining-health collect 10.0.1.10 10.0.1.11:4028 --interval 60\n"
        "  mining-health collect --targets-file miners.txt --outage-after 900",
    )
    collect.add_argument(
        "targets", nargs="*", metavar="HOST[:PORT]", help="miners to poll (port 4028 by default)"
    )
    collect.add_argument("--targets-file", help="file with one host[:port] per line (# comments)")
    collect.add_argument("--interval", type=float, default=60.0, help="seconds between polls (default 60)")
    collect.add_argument(
        "--miner-timeout", type=float, default=5.0, help="seconds per miner command (default 5)"
    )
    collect.add_argument(
        "--concurrency", type=_positive_int, default=32, help="miners polled at once (default 32)"
    )
    collect.add_argument(
        "--max-backoff",
        type=float,
        default=600.0,
        help="longest wait before retrying a failing miner, seconds (default 600)",
    )
    collect.add_argument(
        "--outage-after",
        type=float,
        default=600.0,
        help="report an outage after this many seconds unreachable (default 600)",
    )
    collect.add_argument("--once", action="store_true", help="poll once, send, and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    target = getattr(args, "target", None) or os.environ.get("MFH_TARGET") or DEFAULT_TARGET
    token = getattr(args, "token", None) or os.environ.get("MFH_TOKEN") or None
    timeout = getattr(args, "timeout", 30.0)
    out = Output(as_json=getattr(args, "json", False))
    if timeout <= 0:
        parser.error(f"--timeout {timeout}: must be positive")
    try:
        with FleetHealthClient(target, timeout=timeout, token=token) as client:
            code: int = args.handler(client, args, out)
            return code
    except ClientError as error:
        if out.as_json:
            print(json.dumps({"error": error.to_dict()}))
        print(f"error: {error}", file=sys.stderr)
        for violation in error.field_violations:
            print(f"  {violation.field}: {violation.description}", file=sys.stderr)
        return 1
    except UsageError as error:
        print(f"mining-health: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
