"""`mining-health train KIND` and `train-watch JOB`: start a training job and follow its epochs.

Ctrl-C while following stops following, not the job: on a terminal it asks whether to cancel the
job on the server; otherwise it prints the `mining-health cancel` command that would.
"""

from __future__ import annotations

import argparse
import sys

from mining.analytics.v1alpha1 import training_pb2
from rich.prompt import Confirm

from clients.cli.args import MODEL_KINDS, Commands, positive_int
from clients.cli.connection import DEFAULT_TARGET
from clients.cli.output import Output, kind_name, state
from clients.client import FINAL_JOB_STATES, FleetHealthClient


def register(commands: Commands) -> None:
    train = commands.add(
        "train",
        run_train,
        "Train a model and follow its progress (epochs, losses)",
        "mining-health train lstm --epochs 20\n  mining-health train autoencoder --no-follow --json",
    )
    train.add_argument("kind", choices=MODEL_KINDS, help="which model to train")
    train.add_argument(
        "--epochs", type=positive_int, help="epochs (server default: lstm 50, autoencoder 100)"
    )
    train.add_argument("--batch-size", type=positive_int, help="mini-batch size (server default 32)")
    train.add_argument("--validation-split", type=float, help="fraction of miners held out, in (0, 1)")
    train.add_argument("--seed", type=int, help="random seed for a reproducible run")
    train.add_argument("--request-id", help="idempotency key: repeating it returns the same job")
    train.add_argument("--no-follow", action="store_true", help="print the job and return at once")

    watch = commands.add(
        "train-watch", run_watch, "Follow a running training job", "mining-health train-watch 3f2a9c"
    )
    watch.add_argument("job_id", help="the job id printed by `train`")


def run_train(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
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
            out.line(
                f"started job {job.job_id} (",
                state(job.state),
                "); follow it with: ",
                command_line(client, "train-watch", job.job_id),
            )
        return 0
    return follow(client, job, out)


def run_watch(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    return follow(client, client.get_train_job(args.job_id), out)


def command_line(client: FleetHealthClient, *words: str) -> str:
    """The `mining-health` command that reaches the same server."""
    target = [] if client.target == DEFAULT_TARGET else ["--target", client.target]
    return " ".join(["mining-health", *target, *words])


def follow(client: FleetHealthClient, job: training_pb2.TrainJob, out: Output) -> int:
    """Shows the job's epochs on a progress bar (stderr) until it ends; prints the outcome."""
    from tqdm import tqdm

    final = job
    bar = tqdm(
        total=job.params.epochs or None,
        unit="epoch",
        desc=f"{kind_name(job.model_kind)} {job.job_id}",
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
        offer_cancel(client, job.job_id, out)
        return 130
    succeeded = final.state == training_pb2.JOB_STATE_SUCCEEDED
    if out.as_json:
        out.message(final)
    else:
        out.line(f"job {final.job_id}: ", state(final.state))
        if succeeded:
            promoted = (
                "promoted to active" if final.promoted else "not promoted (not better than the active one)"
            )
            out.line(f"model {final.model_version}: {promoted}")
            for name, value in sorted(final.metrics.items()):
                out.line(f"  {name} = {value:.4g}")
        elif final.error:
            out.note(f"error: {final.error}")
    return 0 if succeeded or final.state not in FINAL_JOB_STATES else 1


def offer_cancel(client: FleetHealthClient, job_id: str, out: Output) -> None:
    """After Ctrl-C: ask to cancel the job (on a terminal), else say how to."""
    out.note(f"\nstopped following; job {job_id} keeps running on the server")
    if out.interactive and sys.stdin.isatty():
        try:
            cancel = Confirm.ask(f"cancel job {job_id} now?", console=out.err, default=False)
        except (KeyboardInterrupt, EOFError):
            cancel = False
        if cancel:
            cancelled = client.cancel_train_job(job_id)
            out.note(f"job {job_id}: ", state(cancelled.state))
            return
    out.note(f"cancel it with: {command_line(client, 'cancel', job_id)}")
