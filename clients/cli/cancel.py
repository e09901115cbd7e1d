"""`mining-health cancel JOB`: cancels a queued or running training job."""

from __future__ import annotations

import argparse

from clients.cli.args import Commands
from clients.cli.output import Output, state
from clients.client import FleetHealthClient


def register(commands: Commands) -> None:
    command = commands.add(
        "cancel", run, "Cancel a queued or running training job", "mining-health cancel 3f2a9c"
    )
    command.add_argument("job_id", help="the job id printed by `train`")


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    job = client.cancel_train_job(args.job_id)
    if out.as_json:
        out.message(job)
    else:
        out.line(f"job {job.job_id}: ", state(job.state))
    return 0
