"""The server's command line help and its JSON log: every default once, every log line parses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from server.config import Settings
from server.main import build_parser
from tests.harness import SMALL_FLEET

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_help_prints_each_default_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server.main", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "(default: None)" not in result.stdout
    assert "--grpc-port GRPC_PORT" in result.stdout and "(default 50051) [env MFH_GRPC_PORT]" in result.stdout
    # One "(default ...)" per setting, bool flags and --risk-cutoffs included.
    assert len(re.findall(r"\(default", result.stdout)) == len(Settings.model_fields)
    assert "(default False) [env MFH_LOG_JSON]" in " ".join(result.stdout.split())


def test_parser_help_keeps_the_environment_variables() -> None:
    assert "MFH_TLS_CERT_FILE" in build_parser().format_help()


def json_lines(stderr: str) -> list[dict[str, object]]:
    """Every non-empty line as JSON; fails on the first line that does not parse."""
    entries = []
    for line in stderr.splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except ValueError as exc:
                raise AssertionError(f"not JSON: {line!r}") from exc
    return entries


def test_raw_stderr_lines_become_json_entries() -> None:
    # What gRPC core, a stray print and a child process write to descriptor 2, in one process.
    script = textwrap.dedent(
        """
        import logging, os, subprocess, sys
        from server import logs
        logs.configure("INFO", as_json=True)
        logging.getLogger("server").info("ready")
        os.write(2, b"I1129 12:00:00.123456   42 chttp2_transport.cc:1234] ping received\\n")
        os.write(2, b"E1129 12:00:01.000001   42 ssl_transport_security.cc:77] handshake failed\\n")
        print("a stray print", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "import sys; print('from a child', file=sys.stderr)"])
        raise RuntimeError("unhandled")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=REPO_ROOT
    )
    assert result.returncode == 1
    entries = json_lines(result.stderr)
    by_message = {entry["message"]: entry for entry in entries}
    assert by_message["ready"]["logger"] == "server"
    core = by_message["ping received"]
    assert (core["logger"], core["level"], core["source"]) == (
        "grpc.core",
        "INFO",
        "chttp2_transport.cc:1234",
    )
    assert by_message["handshake failed"]["level"] == "ERROR"
    assert by_message["a stray print"]["logger"] == "stderr"
    assert by_message["from a child"]["logger"] == "stderr"
    assert any("RuntimeError: unhandled" in str(entry["message"]) for entry in entries)
    assert [e["message"] for e in entries].index("ready") < [e["message"] for e in entries].index(
        "ping received"
    )


def test_real_server_json_log_parses_with_grpc_core_logging_on(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "server.main",
        "--grpc-port",
        "0",
        "--metrics-port",
        "-1",
        "--data-dir",
        str(tmp_path),
        "--log-json",
        *(f"--{name.replace('_', '-')}={value}" for name, value in SMALL_FLEET.items()),
    ]
    environment = {**os.environ, "GRPC_VERBOSITY": "INFO", "GRPC_TRACE": "server_channel"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=environment)
    assert process.stderr is not None
    # Read until the server listens and gRPC core's own line has come through the pipe: a SIGTERM
    # sent at "listening" can land before the server's handler and end it with lines still in the
    # pipe. A watchdog kills a server that never writes both, so the read ends.
    watchdog = threading.Timer(120, process.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        for line in process.stderr:
            lines.append(line)
            text = "".join(lines)
            if "gRPC server listening on" in text and '"logger": "grpc.core"' in text:
                break
    finally:
        watchdog.cancel()
        process.terminate()
        _, rest = process.communicate(timeout=60)
    entries = json_lines("".join(lines) + rest)
    assert any(entry["message"].startswith("gRPC server listening on") for entry in entries)  # type: ignore[union-attr]
    assert any(entry["logger"] == "grpc.core" for entry in entries), "gRPC core wrote nothing"
