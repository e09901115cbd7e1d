"""deploy/systemd/mining-health-server.service: systemd-analyze accepts it, and its command line and
environment start the server with Envoy and stop cleanly (exit 0, so Restart=on-failure stays quiet) on
its KillSignal within TimeoutStopSec."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deploy import monitoring
from tests.harness import SMALL_FLEET

UNIT = monitoring.DEPLOY / "systemd" / "mining-health-server.service"
INSTALL_DIR = "/opt/mining-fleet-health"
REPO = monitoring.DEPLOY.parent


def service_section() -> dict[str, list[str]]:
    """[Service] keys -> values (systemd allows a key more than once, e.g. Environment=)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def installed_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with this checkout standing in for /opt/mining-fleet-health and root for the mfh user."""
    text = (text or UNIT.read_text()).replace(INSTALL_DIR, str(REPO))
    text = text.replace("User=mfh", "User=root").replace("Group=mfh", "Group=root")
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: run `make setup` (deploy/setup.sh installs systemd)"
    return subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, check=False)


def test_systemd_analyze_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    result = verify(installed_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_systemd_analyze_would_report_a_mistake(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("Type=exec", "Type=sometimes")
    result = verify(installed_copy(tmp_path, broken))
    assert "sometimes" in result.stdout + result.stderr


def test_the_units_command_serves_and_stops_cleanly_on_its_kill_signal(tmp_path: Path) -> None:
    service = service_section()
    (exec_start,) = service["ExecStart"]
    argv = exec_start.replace(INSTALL_DIR + "/.venv/bin", str(Path(sys.executable).parent)).split()
    assert Path(argv[0]).exists(), argv[0]
    environment = dict(os.environ)
    for assignment in service["Environment"]:
        key, _, value = assignment.partition("=")
        environment[key] = value
    assert environment["MFH_DATA_DIR"] == "/var/lib/mining-fleet-health"  # StateDirectory=
    environment["MFH_DATA_DIR"] = str(tmp_path)  # ... which systemd would create; here a temp dir
    ports = {"MFH_GRPC_PORT": "0", "MFH_HTTP_PORT": "0", "MFH_ENVOY_ADMIN_PORT": "0", "MFH_METRICS_PORT": "0"}
    small = {f"MFH_{key.upper()}": str(value) for key, value in SMALL_FLEET.items()}
    environment.update(ports | small)
    process = subprocess.Popen(argv, env=environment, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines: list[str] = []
    try:
        rest_port = None
        deadline = time.monotonic() + 180
        while rest_port is None and time.monotonic() < deadline:
            line = process.stderr.readline() if process.stderr else ""
            if not line:
                raise AssertionError("server exited during start-up:\n" + "".join(lines))
            lines.append(line)
            found = re.search(r"curl http://localhost:(\d+)/api/advanced/status", line)
            rest_port = int(found.group(1)) if found else None
        assert rest_port is not None, "".join(lines)
        json_lines = [json.loads(line) for line in lines if line.startswith("{")]  # MFH_LOG_JSON=true
        assert any("listening" in entry.get("message", "") for entry in json_lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/api/advanced/status", timeout=30) as reply:
            assert reply.status == 200
        process.send_signal(getattr(signal, service["KillSignal"][0]))
        stop_timeout = float(service["TimeoutStopSec"][0])
        assert process.wait(stop_timeout) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    with pytest.raises(OSError):  # Envoy went with it
        urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/api/advanced/status", timeout=5)
