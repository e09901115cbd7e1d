"""The CLI's registry, fleet, job and label commands, its terminal behaviour (colour, Ctrl-C,
closed pipes) and completion, against the scripted server."""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mining.analytics.v1alpha1 import common_pb2, telemetry_pb2

from tests.clients.conftest import (
    COLOUR,
    REPO_ROOT,
    Terminal,
    cli_environment,
    run_cli,
    run_cli_into_closed_pipe,
)
from tests.clients.fake_server import FakeServer


def test_fleet_shows_the_top_k_miners_by_risk(fake_server: FakeServer) -> None:
    result = run_cli("--target", fake_server.target, "fleet", "--top", "2", "--min-risk", "high")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["miner", "risk", "level", "anomaly", "window", "end", "model"]
    assert [row.split()[:3] for row in rows] == [
        ["10.0.0.1", "0.910", "CRITICAL"],
        ["10.0.0.2", "0.600", "HIGH"],
    ]
    assert "scored 3 miner(s), skipped 1 with too little history" in result.stderr
    request = fake_server.script.requests[0]
    assert (request.top_k, request.min_risk_level) == (2, common_pb2.HIGH)


def test_models_marks_the_active_version(fake_server: FakeServer) -> None:
    result = run_cli("--target", fake_server.target, "models", "lstm")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert rows == [
        ["*", "lstm", "lstm-3", "-", "job-3", "0.81"],
        ["lstm", "lstm-2", "-", "job-2", "0.79"],
        ["lstm", "lstm-1", "-", "job-1", "0.75"],
    ]
    listed = json.loads(run_cli("--target", fake_server.target, "--json", "models").stdout)
    assert [(m["version"], m["active"]) for m in listed] == [
        ("lstm-3", True),
        ("lstm-2", False),
        ("lstm-1", False),
    ]


def test_activate_previous_rolls_back_one_version(fake_server: FakeServer) -> None:
    result = run_cli("--target", fake_server.target, "activate", "lstm", "--previous")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lstm model lstm-2 is now active"
    again = run_cli("--target", fake_server.target, "activate", "lstm", "--previous")
    assert again.stdout.strip() == "lstm model lstm-1 is now active"
    oldest = run_cli("--target", fake_server.target, "activate", "lstm", "--previous")
    assert oldest.returncode == 2 and "lstm-1 is the oldest lstm version" in oldest.stderr
    explicit = run_cli("--target", fake_server.target, "--json", "activate", "lstm", "lstm-3")
    assert json.loads(explicit.stdout)["version"] == "lstm-3"
    assert [r.version for r in fake_server.script.requests] == ["lstm-2", "lstm-1", "lstm-3"]
    both = run_cli("--target", fake_server.target, "activate", "lstm", "lstm-3", "--previous")
    assert both.returncode == 2 and "give a VERSION or --previous, not both" in both.stderr


def test_cancel_prints_the_jobs_new_state(fake_server: FakeServer) -> None:
    result = run_cli("--target", fake_server.target, "cancel", "job-1")
    assert (result.returncode, result.stdout.strip()) == (0, "job job-1: CANCELLED")
    assert fake_server.script.requests[0].job_id == "job-1"


def test_failures_lists_newest_first_and_records_one(fake_server: FakeServer) -> None:
    listing = run_cli("--target", fake_server.target, "failures", "10.0.0.1", "--limit", "5")
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()[1:]]
    assert [row[:4] for row in rows] == [["-", "10.0.0.1", "fan", "manual"]] * 2
    assert [row[-1] for row in rows] == ["2", "1"]  # "ticket 2", then "ticket 1"
    assert (fake_server.script.requests[0].miner_id, fake_server.script.requests[0].page_size) == (
        "10.0.0.1",
        5,
    )

    recorded = run_cli(
        "--target", fake_server.target, "failures", "10.0.0.1", "--record", "hash_board", "--note", "RMA 7"
    )
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout.startswith("recorded failure f-1: 10.0.0.1 hash_board")
    (sent,) = fake_server.script.failures
    assert (sent.mode, sent.note) == (common_pb2.FAILURE_MODE_HASH_BOARD, "RMA 7")
    missing = run_cli("--target", fake_server.target, "failures", "--record", "fan")
    assert missing.returncode == 2 and "give the MINER_ID" in missing.stderr


def test_feedback_records_the_verdict(fake_server: FakeServer) -> None:
    result = run_cli(
        "--target", fake_server.target, "feedback", "10.0.0.1", "false-alarm", "--note", "fan swap"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("feedback fb-1 recorded: 10.0.0.1 false-alarm on model lstm-3")
    request = fake_server.script.requests[0]
    assert (request.verdict, request.note) == (telemetry_pb2.FEEDBACK_VERDICT_FALSE_ALARM, "fan swap")
    assert run_cli("feedback", "10.0.0.1", "maybe").returncode == 2


@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("miners",),
        ("fleet",),
        ("models",),
        ("failures",),
        ("--json", "watch"),
        ("train", "lstm", "--epochs", "3"),
        ("--help",),
    ],
    ids=lambda command: " ".join(command),
)
def test_every_command_closes_quietly_on_a_closed_pipe(
    fake_server: FakeServer, command: tuple[str, ...]
) -> None:
    result = run_cli_into_closed_pipe("--target", fake_server.target, *command)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert "Exception ignored" not in result.stderr


def test_shell_pipe_to_head_prints_one_line_and_nothing_else(fake_server: FakeServer) -> None:
    result = subprocess.run(
        f"{sys.executable} -m clients.cli --target {fake_server.target} miners | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
        env=cli_environment(),
    )
    assert result.stdout.split() == ["miner", "model", "risk", "level", "anomaly", "samples", "last", "seen"]
    assert result.stderr == ""


def test_colour_only_on_a_terminal_and_never_with_no_color(fake_server: FakeServer) -> None:
    piped = run_cli("--target", fake_server.target, "miners")
    assert "\x1b[" not in piped.stdout and "CRITICAL" in piped.stdout

    code, shown = Terminal("--target", fake_server.target, "miners").finish()
    assert code == 0
    assert COLOUR.search(shown), shown
    assert "─" in shown  # the header rule of the terminal table

    code, plain = Terminal("--target", fake_server.target, "miners", env={"NO_COLOR": "1"}).finish()
    assert code == 0 and "CRITICAL" in plain
    assert not COLOUR.search(plain), plain


def test_ctrl_c_while_following_prints_the_cancel_command(fake_server: FakeServer) -> None:
    fake_server.script.watch_hangs = True
    process = subprocess.Popen(
        [sys.executable, "-m", "clients.cli", "--target", fake_server.target, "train", "lstm"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=cli_environment(),
    )
    deadline = time.monotonic() + 60
    while "WatchTrainJob" not in fake_server.script.calls:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "job job-1 keeps running on the server" in stderr
    assert f"cancel it with: mining-health --target {fake_server.target} cancel job-1" in stderr
    assert "CancelTrainJob" not in fake_server.script.calls and "Traceback" not in stderr


def test_ctrl_c_on_a_terminal_asks_and_cancels_the_job(fake_server: FakeServer) -> None:
    fake_server.script.watch_hangs = True
    terminal = Terminal("--target", fake_server.target, "train", "lstm")
    terminal.read_until(b"lstm job-1")  # the progress bar is up
    deadline = time.monotonic() + 60
    while "WatchTrainJob" not in fake_server.script.calls:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    terminal.process.send_signal(signal.SIGINT)
    terminal.read_until(b"cancel job job-1 now?")
    terminal.write(b"y\n")
    code, output = terminal.finish()
    assert code == 130
    assert "job job-1: CANCELLED" in re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert fake_server.script.calls.count("CancelTrainJob") == 1


def test_shell_completion_offers_commands_and_flags(tmp_path: Path) -> None:
    def complete(line: str) -> list[str]:
        # What argcomplete's bash integration sets; the candidates go to the named file.
        candidates = tmp_path / "candidates"
        environment = {
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "_ARGCOMPLETE_STDOUT_FILENAME": str(candidates),
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
        }
        result = run_cli(env=environment)
        assert result.returncode == 0, result.stderr
        return candidates.read_text().split()

    assert {"fleet", "failures", "feedback"} <= set(complete("mining-health f"))
    assert "--previous" in complete("mining-health activate lstm --pre")
    assert "--ca-file" in complete("mining-health status --ca")


def test_client_certificate_needs_its_key(fake_server: FakeServer) -> None:
    result = run_cli("--target", fake_server.target, "--cert-file", "client.pem", "status")
    assert result.returncode == 2 and "--cert-file and --key-file go together" in result.stderr
    unreadable = run_cli("--target", fake_server.target, "--ca-file", "/nonexistent/ca.pem", "status")
    assert unreadable.returncode == 2 and "--ca-file /nonexistent/ca.pem: cannot read" in unreadable.stderr


def registered_commands() -> list[str]:
    from clients.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(subparsers.choices)


def test_the_issue_commands_are_registered() -> None:
    assert {"fleet", "models", "activate", "cancel", "failures", "feedback"} <= set(registered_commands())


@pytest.mark.parametrize("command", registered_commands())
def test_every_command_explains_itself_with_an_example_and_the_tls_flags(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert f"example:\n  mining-health {command}" in result.stdout
    for flag in ("--target", "--tls", "--ca-file", "--cert-file", "--key-file", "--server-name"):
        assert flag in result.stdout
