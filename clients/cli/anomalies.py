"""`mining-health anomalies MINER`: anomaly scores of one miner's recent windows."""

from __future__ import annotations

import argparse

from rich.text import Text

from clients.cli.args import Commands, when
from clients.cli.output import Output
from clients.cli.output import when as time_of
from clients.client import FleetHealthClient


def register(commands: Commands) -> None:
    command = commands.add(
        "anomalies",
        run,
        "Score one miner's recent windows for anomalies",
        "mining-health anomalies 192.168.1.100 --start 2026-11-25T00:00:00Z",
    )
    command.add_argument("miner_id", help="the miner's id")
    command.add_argument("--start", type=when, help="start of the range, ISO 8601 (default: end - 24 h)")
    command.add_argument("--end", type=when, help="end of the range, ISO 8601 (default: newest sample)")
    command.add_argument("--all", action="store_true", help="list every window, not only anomalous ones")


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    result = client.detect_anomalies(args.miner_id, start=args.start, end=args.end)
    if out.as_json:
        out.message(result)
        return 0
    flagged = sum(1 for window in result.windows if window.is_anomaly)
    out.line(
        f"miner {result.miner_id}: {flagged} of {len(result.windows)} window(s) anomalous "
        f"(threshold {result.threshold:.4g}, model {result.model_version})"
    )
    shown = [w for w in result.windows if w.is_anomaly or args.all]
    if shown:
        out.table(
            ("window end", "score", "", "confidence", "top features"),
            (
                (
                    time_of(w, "window_end"),
                    f"{w.score:.4g}",
                    Text("ANOMALY", style="red") if w.is_anomaly else Text("ok"),
                    f"{w.confidence:.2f}",
                    ", ".join(w.top_features),
                )
                for w in shown
            ),
            right=("score", "confidence"),
        )
    return 0
