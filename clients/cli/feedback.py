"""`mining-health feedback MINER VERDICT`: tells the server whether a risk alert was right."""

from __future__ import annotations

import argparse

from mining.analytics.v1alpha1 import telemetry_pb2

from clients.cli.args import Commands
from clients.cli.output import Output, when
from clients.client import FleetHealthClient

VERDICTS = ("confirmed", "false-alarm")


def register(commands: Commands) -> None:
    command = commands.add(
        "feedback",
        run,
        "Record whether a risk alert on a miner was right (confirmed) or wrong (false-alarm)",
        "mining-health feedback 192.168.1.100 false-alarm --note 'fan swapped yesterday'",
    )
    command.add_argument("miner_id", help="the miner the alert was about")
    command.add_argument("verdict", choices=VERDICTS, help="confirmed or false-alarm")
    command.add_argument(
        "--model-version", default="", help="the model whose alert this judges (default: active)"
    )
    command.add_argument("--note", default="", help="free text")


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    feedback = client.record_feedback(
        args.miner_id, args.verdict.replace("-", "_"), model_version=args.model_version, note=args.note
    )
    if out.as_json:
        out.message(feedback)
        return 0
    verdict = telemetry_pb2.FeedbackVerdict.Name(feedback.verdict).removeprefix("FEEDBACK_VERDICT_")
    out.line(
        f"feedback {feedback.feedback_id} recorded: {feedback.miner_id} {verdict.lower().replace('_', '-')} "
        f"on model {feedback.model_version or '-'} at {when(feedback, 'recorded_at')}"
    )
    return 0
