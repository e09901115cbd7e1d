"""`mining-health collect HOST...`: polls miners over the cgminer API and sends their readings.

The readings go to the server through the same connection flags as every command, so a TLS-only
server is reached with --tls / --ca-file / --cert-file --key-file / --server-name.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from clients.cli.args import Commands, UsageError, positive_int
from clients.cli.output import Output
from clients.client import FleetHealthClient


def register(commands: Commands) -> None:
    command = commands.add(
        "collect",
        run,
        "Poll miners over the cgminer API (TCP 4028: Antminer, Braiins OS, Whatsminer) and send readings",
        "mining-health collect 10.0.1.10 10.0.1.11:4028 --interval 60\n"
        "  mining-health collect --targets-file miners.txt --outage-after 900",
    )
    command.add_argument(
        "targets", nargs="*", metavar="HOST[:PORT]", help="miners to poll (port 4028 by default)"
    )
    command.add_argument("--targets-file", help="file with one host[:port] per line (# comments)")
    command.add_argument("--interval", type=float, default=60.0, help="seconds between polls (default 60)")
    command.add_argument(
        "--miner-timeout", type=float, default=5.0, help="seconds per miner command (default 5)"
    )
    command.add_argument(
        "--concurrency", type=positive_int, default=32, help="miners polled at once (default 32)"
    )
    command.add_argument(
        "--max-backoff",
        type=float,
        default=600.0,
        help="longest wait before retrying a failing miner, seconds (default 600)",
    )
    command.add_argument(
        "--outage-after",
        type=float,
        default=600.0,
        help="report an outage after this many seconds unreachable (default 600)",
    )
    command.add_argument("--once", action="store_true", help="poll once, send, and exit")


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
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
                out.note(f"error: {collector.pending} reading(s) could not be sent to {client.target}")
                return 1
            if out.as_json:
                out.json({"miners": len(config.targets), "readings": len(readings)})
            else:
                out.line(f"polled {len(config.targets)} miner(s), sent {len(readings)} reading(s)")
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await collector.run(stop)
        return 0

    return asyncio.run(collect())
