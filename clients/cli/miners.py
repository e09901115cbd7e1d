"""`mining-health miners`: the fleet's miners, highest risk first, with filters."""

from __future__ import annotations

import argparse

from rich.text import Text

from clients.cli.args import Commands, positive_int, risk
from clients.cli.output import Output, level, to_dict, when
from clients.client import FleetHealthClient


def register(commands: Commands) -> None:
    command = commands.add(
        "miners",
        run,
        "List miners, highest risk first",
        "mining-health miners --min-risk HIGH --limit 20",
    )
    command.add_argument(
        "--min-risk", type=risk, help="only miners at or above LOW, MEDIUM, HIGH or CRITICAL"
    )
    command.add_argument("--limit", type=positive_int, help="show at most this many")
    command.add_argument("--hardware-model", default="", help='only this model, e.g. "Antminer S19 Pro"')
    command.add_argument("--site", default="", help="only this site")


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
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
    out.table(
        ("miner", "model", "risk", "level", "anomaly", "samples", "last seen"),
        (
            (
                m.miner_id,
                m.hardware_model or "-",
                f"{m.risk_score:.3f}" if m.risk_level else "-",
                level(m.risk_level),
                Text("yes", style="red") if m.is_anomaly else Text(""),
                str(m.sample_count),
                when(m, "last_seen"),
            )
            for m in miners
        ),
        right=("risk", "samples"),
    )
    return 0
