"""Assembles the `mining-health` parser from the command modules and runs one command.

Connection flags are accepted before and after the command name (argparse parents), which is why
this is argparse and not click/typer (whose options belong to one level); argcomplete adds shell
completion: `eval "$(register-python-argcomplete mining-health)"`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import argcomplete

from clients.cli import (
    anomalies,
    cancel,
    collect,
    failures,
    feedback,
    fleet,
    import_file,
    miners,
    models,
    risk,
    status,
    train,
    watch,
)
from clients.cli.args import Commands, UsageError, example
from clients.cli.connection import Connection, add_flags
from clients.cli.output import Output
from clients.client import ClientError

# In the order `--help` lists them.
COMMAND_MODULES = (
    status,
    miners,
    fleet,
    risk,
    anomalies,
    watch,
    train,
    cancel,
    models,
    failures,
    feedback,
    import_file,
    collect,
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_flags(common)
    parser = argparse.ArgumentParser(
        prog="mining-health",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Mining-fleet health: failure risk, anomalies, training, models and telemetry import.",
        epilog=example("mining-health --target 10.0.0.5:50051 miners --min-risk HIGH"),
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = Commands(subparsers, common)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader of our output went away (`mining-health status | head -1`): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    out = Output.create(as_json=getattr(args, "json", False))
    try:
        connection = Connection.from_args(args)
        with connection.client() as client:
            code: int = args.handler(client, args, out)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler of BrokenPipeError
        return code
    except ClientError as error:
        if out.as_json:
            out.json({"error": error.to_dict()})
        print(f"error: {error}", file=sys.stderr)
        for violation in error.field_violations:
            print(f"  {violation.field}: {violation.description}", file=sys.stderr)
        return 1
    except UsageError as error:
        print(f"mining-health: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
