"""`mining-health failures [MINER]`: failure events, newest first; with --record, records one."""

from __future__ import annotations

import argparse
from typing import Final

from mining.analytics.v1alpha1 import common_pb2

from clients.cli.args import Commands, UsageError, positive_int, when
from clients.cli.output import Output, to_dict
from clients.cli.output import when as time_of
from clients.client import FleetHealthClient

MODES: Final = tuple(
    name.removeprefix("FAILURE_MODE_").lower()
    for name in common_pb2.FailureMode.DESCRIPTOR.values_by_name
    if name != "FAILURE_MODE_UNSPECIFIED"
)


def register(commands: Commands) -> None:
    command = commands.add(
        "failures",
        run,
        "List failure events, newest first, or record one (labels for training)",
        "mining-health failures 192.168.1.100\n"
        "  mining-health failures 192.168.1.100 --record fan --at 2026-11-25T03:10:00Z --note 'ticket 4411'",
    )
    command.add_argument("miner_id", nargs="?", default="", help="only this miner (required with --record)")
    command.add_argument("--limit", type=positive_int, help="list at most this many (server default 100)")
    command.add_argument(
        "--record", metavar="MODE", choices=MODES, help=f"record a failure: {', '.join(MODES)}"
    )
    command.add_argument("--at", type=when, help="with --record: when it failed, ISO 8601 (default now)")
    command.add_argument("--repaired-at", type=when, help="with --record: when it was repaired")
    command.add_argument("--note", default="", help="with --record: free text, e.g. a ticket reference")


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    if args.record:
        if not args.miner_id:
            raise UsageError("failures --record: give the MINER_ID")
        event = client.record_failure(
            args.miner_id, args.record, occurred_at=args.at, repaired_at=args.repaired_at, note=args.note
        )
        if out.as_json:
            out.message(event)
        else:
            out.line(
                f"recorded failure {event.event_id}: {event.miner_id} {_mode(event.mode)} "
                f"at {time_of(event, 'occurred_at')}"
            )
        return 0
    failures = client.list_failures(args.miner_id, page_size=args.limit or 0).failures
    if out.as_json:
        out.json([to_dict(event) for event in failures])
        return 0
    out.table(
        ("occurred", "miner", "mode", "source", "repaired", "note"),
        (
            (
                time_of(e, "occurred_at"),
                e.miner_id,
                _mode(e.mode),
                common_pb2.EventSource.Name(e.source).removeprefix("EVENT_SOURCE_").lower(),
                time_of(e, "repaired_at"),
                e.note,
            )
            for e in failures
        ),
    )
    return 0


def _mode(value: int) -> str:
    return common_pb2.FailureMode.Name(value).removeprefix("FAILURE_MODE_").lower()  # type: ignore[arg-type]
