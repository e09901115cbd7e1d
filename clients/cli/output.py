"""Printing: tables and colour for people (rich), or JSON for programs (`--json`).

Colour only on a terminal, and never with NO_COLOR set (rich honours both). In a pipe or a file a
table is one line per row with no borders, never wrapped to a guessed width, so `grep`, `awk` and
`head` see whole rows. JSON is one document per command, or one per line for streams, flushed at
once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

from google.protobuf import json_format
from google.protobuf.message import Message
from mining.analytics.v1alpha1 import common_pb2, training_pb2
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Wide enough that no row of ours wraps when the output is not a terminal.
PIPE_WIDTH: Final = 10_000

RISK_STYLES: Final = {"LOW": "green", "MEDIUM": "yellow", "HIGH": "red", "CRITICAL": "bold red"}
JOB_STYLES: Final = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow", "INTERRUPTED": "yellow"}


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich would exit 1 here; the CLI's main() ends quietly with 0 on a reader that went away.
        raise BrokenPipeError


def make_console(file: IO[str]) -> Console:
    """A console on `file`: markup off (miner ids and notes are printed as given)."""
    options: dict[str, Any] = {"markup": False, "highlight": False, "emoji": False}
    console = _Console(file=file, **options)
    if not console.is_terminal:
        console = _Console(file=file, width=PIPE_WIDTH, **options)
    return console


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def when(message: Message, name: str) -> str:
    """A Timestamp field as "2026-11-25T12:00:00Z", or "-" when unset."""
    if not message.HasField(name):
        return "-"
    stamp = getattr(message, name).ToDatetime()
    return f"{stamp.isoformat(timespec='seconds')}Z"


def level_name(value: int) -> str:
    return common_pb2.RiskLevel.Name(value) if value else "-"  # type: ignore[arg-type]


def kind_name(value: int) -> str:
    return common_pb2.ModelKind.Name(value).lower()  # type: ignore[arg-type]


def job_state(value: int) -> str:
    return training_pb2.JobState.Name(value).removeprefix("JOB_STATE_")  # type: ignore[arg-type]


def level(value: int) -> Text:
    name = level_name(value)
    return Text(name, style=RISK_STYLES.get(name, ""))


def state(value: int) -> Text:
    name = job_state(value)
    return Text(name, style=JOB_STYLES.get(name, ""))


@dataclass
class Output:
    """Where a command prints: `out` (stdout) and `err` (stderr) consoles, or JSON with --json."""

    as_json: bool
    out: Console
    err: Console

    @classmethod
    def create(cls, as_json: bool) -> Output:
        return cls(as_json, make_console(sys.stdout), make_console(sys.stderr))

    @property
    def interactive(self) -> bool:
        return self.err.is_terminal

    def message(self, message: Message) -> None:
        self.json(to_dict(message))

    def json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    def line(self, *parts: str | Text) -> None:
        """One line on stdout, pieces joined as given (Text pieces keep their style)."""
        self.out.print(Text.assemble(*parts), soft_wrap=True)

    def note(self, *parts: str | Text) -> None:
        """One line on stderr: progress, warnings, hints."""
        self.err.print(Text.assemble(*parts), soft_wrap=True)

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[str | Text]], *, right: Sequence[str] = ()
    ) -> None:
        """A table with a header row; `right` names the columns aligned right (numbers)."""
        terminal = self.out.is_terminal
        table = Table(
            box=box.SIMPLE_HEAD if terminal else None,
            pad_edge=False,
            show_edge=False,
            header_style="bold" if terminal else "",
        )
        for name in columns:
            table.add_column(name, justify="right" if name in right else "left", no_wrap=True)
        for row in rows:
            table.add_row(*row)
        self.out.print(table)

    def pairs(self, rows: Iterable[tuple[str, str | Text]]) -> None:
        """`label: value` lines, the values aligned."""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column()
        for label, value in rows:
            grid.add_row(label + ":", value)
        self.out.print(grid)
