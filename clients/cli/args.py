"""What every command module uses to declare itself: argument types, usage errors, registration."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from clients.cli.output import Output
    from clients.client import FleetHealthClient

RISK_LEVELS: Final = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
MODEL_KINDS: Final = ("lstm", "autoencoder")

Handler = Callable[["FleetHealthClient", argparse.Namespace, "Output"], int]


class UsageError(Exception):
    """Bad input from the user (exit code 2)."""


def when(text: str) -> datetime:
    """An ISO 8601 time ("2026-11-25T00:00:00Z"); one without an offset is UTC."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-25T00:00:00Z"
        ) from exc


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def risk(text: str) -> str:
    if text.upper() not in RISK_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(RISK_LEVELS)}")
    return text.upper()


def example(text: str) -> str:
    return "example:\n" + textwrap.indent(textwrap.dedent(text).strip(), "  ")


class Commands:
    """Adds subcommands that accept the shared flags (before or after the command name)."""

    def __init__(
        self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
    ) -> None:
        self._subparsers = subparsers
        self._common = common

    def add(self, name: str, handler: Handler, help: str, examples: str) -> argparse.ArgumentParser:
        command = self._subparsers.add_parser(
            name,
            parents=[self._common],
            help=help,
            description=help + ".",
            epilog=example(examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.set_defaults(handler=handler)
        return command
