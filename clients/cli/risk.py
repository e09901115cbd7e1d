"""`mining-health risk MINER`: one miner's failure risk within the horizon, optionally explained."""

from __future__ import annotations

import argparse

from mining.analytics.v1alpha1 import common_pb2

from clients.cli.args import Commands
from clients.cli.output import Output, level, when
from clients.client import FleetHealthClient


def register(commands: Commands) -> None:
    command = commands.add(
        "risk",
        run,
        "Predict one miner's failure risk within the horizon",
        "mining-health risk 192.168.1.100 --explain",
    )
    command.add_argument("miner_id", help="the miner's id, e.g. its IP address")
    command.add_argument("--explain", action="store_true", help="also show the features driving the risk")


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    risk = client.predict_failure_risk(args.miner_id, explain=args.explain)
    if out.as_json:
        out.message(risk)
        return 0
    out.line(
        f"miner {risk.miner_id}: risk {risk.risk_score:.3f} (",
        level(risk.risk_level),
        f") within {risk.horizon_hours} h",
    )
    out.line(
        f"window {when(risk, 'window_start')} .. {when(risk, 'window_end')} "
        f"({risk.window_samples} samples), model {risk.model_version}"
    )
    if risk.likely_failure_mode:
        mode = common_pb2.FailureMode.Name(risk.likely_failure_mode).removeprefix("FAILURE_MODE_")
        out.line(f"likely failure mode: {mode}")
    if risk.risk_factors:
        out.table(
            ("feature", "importance", "recent", "fleet norm", "unit"),
            (
                (f.feature, f"{f.importance:.3f}", f"{f.recent_value:.4g}", f"{f.fleet_norm:.4g}", f.unit)
                for f in risk.risk_factors
            ),
            right=("importance", "recent", "fleet norm"),
        )
    return 0
