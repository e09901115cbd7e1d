"""`make monitoring`'s command (python -m deploy.monitoring): it starts Prometheus and Alertmanager, prints
the notifications its webhook receives, and stops both binaries on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deploy import monitoring
from tests.deploy.conftest import requires_binaries

pytestmark = requires_binaries


def test_monitoring_prints_alerts_and_stops_its_binaries_on_sigterm(tmp_path: Path) -> None:
    # Nothing listens on the metrics target: ScoringServerDown is the alert that must come out.
    argv = [sys.executable, "-m", "deploy.monitoring", "--fast", "--metrics-target", "127.0.0.1:9"]
    argv += ["--prometheus-port", "0", "--alertmanager-port", "0", "--webhook-port", "0"]
    argv += ["--run-dir", str(tmp_path)]
    process = subprocess.Popen(
        argv, cwd=monitoring.DEPLOY.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline() if process.stdout else ""
            if not line:
                break
            lines.append(line)
            if "FIRING ScoringServerDown" in line:
                break
        output = "".join(lines)
        assert re.search(r"/oncall FIRING ScoringServerDown miner=all site=all", output), output
        urls = re.findall(r"(http://127\.0\.0\.1:\d+)/", output)
        assert len(urls) == 2, output  # Prometheus and Alertmanager
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    for url in urls:
        with pytest.raises(OSError):
            urllib.request.urlopen(url + "/-/ready", timeout=5)
