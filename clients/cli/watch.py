"""`mining-health watch`: score updates live, one line per update (one JSON object with --json)."""

from __future__ import annotations

import argparse

from rich.text import Text

from clients.cli.args import Commands, risk
from clients.cli.output import Output, level, when
from clients.client import FleetHealthClient


def register(commands: Commands) -> None:
    command = commands.add(
        "watch",
        run,
        "Print score updates live, one line per update",
        "mining-health watch --min-risk HIGH --anomalies-only",
    )
    command.add_argument("--miner", action="append", default=[], help="only this miner (repeatable)")
    command.add_argument("--min-risk", type=risk, help="only updates at or above this level")
    command.add_argument("--anomalies-only", action="store_true", help="only anomalous windows")
    command.add_argument("--after-sequence", type=int, default=0, help="resume after this sequence number")
    command.add_argument(
        "--heartbeat", type=int, default=0, help="seconds between heartbeats (server default 15)"
    )


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
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
                anomaly = (
                    Text(f"  ANOMALY {score.anomaly_score:.4g}", style="red") if score.is_anomaly else ""
                )
                out.line(
                    f"#{event.sequence} {when(score, 'window_end')} {score.miner_id:<18} "
                    f"risk {score.risk_score:.3f} ",
                    level(score.risk_level),
                    anomaly,
                )
                out.out.file.flush()
            elif kind == "dropped":
                out.note(f"warning: {event.dropped.count} update(s) dropped (reading too slowly)")
    except KeyboardInterrupt:
        return 130
    finally:
        events.close()
    return 0
