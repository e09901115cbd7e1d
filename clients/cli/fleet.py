"""`mining-health fleet`: scores the fleet now and shows the top k miners by failure risk."""

from __future__ import annotations

import argparse

from rich.text import Text

from clients.cli.args import Commands, positive_int, risk
from clients.cli.output import Output, level, to_dict, when
from clients.client import FleetHealthClient


def register(commands: Commands) -> None:
    command = commands.add(
        "fleet",
        run,
        "Score the fleet and show the miners most likely to fail, highest risk first",
        "mining-health fleet --top 10 --min-risk MEDIUM",
    )
    command.add_argument(
        "--top", type=positive_int, default=20, help="show the k riskiest miners (default 20)"
    )
    command.add_argument("--min-risk", type=risk, help="only miners at or above this level")
    command.add_argument("--hardware-model", default="", help='only this model, e.g. "Antminer S19 Pro"')
    command.add_argument("--miner", action="append", default=[], help="score only this miner (repeatable)")


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    result = client.score_fleet(
        miner_ids=args.miner, min_risk_level=args.min_risk, top_k=args.top, hardware_model=args.hardware_model
    )
    if out.as_json:
        out.json(to_dict(result))
        return 0
    out.table(
        ("miner", "risk", "level", "anomaly", "window end", "model"),
        (
            (
                score.miner_id,
                f"{score.risk_score:.3f}",
                level(score.risk_level),
                Text(f"yes {score.anomaly_score:.4g}", style="red") if score.is_anomaly else Text(""),
                when(score, "window_end"),
                score.model_version,
            )
            for score in result.scores
        ),
        right=("risk",),
    )
    out.note(
        f"scored {result.miners_scored} miner(s), skipped {result.miners_skipped} with too little history, "
        f"in {result.elapsed_ms:.0f} ms"
    )
    return 0
