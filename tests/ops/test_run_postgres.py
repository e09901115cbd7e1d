"""`make run-postgres`: a local PostgreSQL, the server and Envoy on it, the README's curls unchanged."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.harness import SMALL_FLEET

REST_READY = re.compile(r"curl http://localhost:(\d+)/api/advanced/status")
STORE_URL = re.compile(r"PostgreSQL running: (postgresql://\S+)")


class RunPostgres:
    """`python -m server.ops.pg_local --data-dir D -- mining-health-server --with-envoy ...`, as the
    Makefile target runs it (the small demo fleet and free ports instead of the defaults)."""

    def __init__(self, cluster: Path, data_dir: Path) -> None:
        server = [
            str(Path(sys.executable).parent / "mining-health-server"),
            "--with-envoy",
            "--grpc-port=0",
            "--http-port=0",
            "--envoy-admin-port=0",
            "--metrics-port=-1",
            f"--data-dir={data_dir}",
            f"--demo-miners={SMALL_FLEET['demo_miners']}",
            f"--demo-days={SMALL_FLEET['demo_days']}",
            f"--demo-seed={SMALL_FLEET['demo_seed']}",
        ]
        command = [sys.executable, "-m", "server.ops.pg_local", "--data-dir", str(cluster), "--", *server]
        env = {k: v for k, v in os.environ.items() if k != "MFH_STORE"}
        self.data_dir = data_dir
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.port = 0
        self.store_url = ""
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(300) or not self.port:
            self.process.kill()
            raise AssertionError("the server did not come up:\n" + "".join(self.lines[-40:]))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if found := STORE_URL.search(line):
                self.store_url = found.group(1)
            if found := REST_READY.search(line):
                self.port = int(found.group(1))
                self._ready.set()
        self._ready.set()

    def rest(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(120)


@pytest.fixture(scope="module")
def running() -> Iterator[RunPostgres]:
    # Not tmp_path: as root its parent is 0700 and the unprivileged server could not enter it.
    work = Path(tempfile.mkdtemp(prefix="mfh-runpg-"))
    work.chmod(0o755)
    try:
        run = RunPostgres(work / "pgdata", work / "var")
        try:
            yield run
        finally:
            if run.process.poll() is None:
                run.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_demo_fleet_is_served_from_postgres(running: RunPostgres) -> None:
    status, body = running.rest("GET", "/api/advanced/status")
    assert status == 200, body
    assert running.store_url.startswith("postgresql://postgres@127.0.0.1:")
    with psycopg.connect(running.store_url) as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT miner_id) FROM samples").fetchone()
    assert stored is not None and stored[1] == SMALL_FLEET["demo_miners"]
    assert str(stored[0]) == str(body["samples"]), "the status counts the samples PostgreSQL holds"
    assert not (running.data_dir / "fleet.duckdb").exists(), "no DuckDB file beside the models"


def test_the_readme_curls_answer_as_on_duckdb(running: RunPostgres) -> None:
    status, miners = running.rest("GET", "/api/advanced/miners?page_size=10")
    assert status == 200 and len(miners["miners"]) == min(10, SMALL_FLEET["demo_miners"])
    assert any(m["miner_id"] == "192.168.1.100" for m in miners["miners"])
    # No model is trained yet: the same clear error as on DuckDB, naming the route that fixes it.
    status, error = running.rest("GET", "/api/advanced/predict/failure-risk/192.168.1.100")
    assert status == 400 and "POST /api/advanced/train/lstm" in error["message"]
    status, job = running.rest("POST", "/api/advanced/train/lstm", {"epochs": 2, "batch_size": 32})
    assert status == 200, job
    deadline = time.monotonic() + 300
    while job["state"] in ("JOB_STATE_QUEUED", "JOB_STATE_RUNNING") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = running.rest("GET", f"/api/advanced/train/jobs/{job['job_id']}")[1]
    assert job["state"] == "JOB_STATE_SUCCEEDED", job
    status, risk = running.rest("GET", "/api/advanced/predict/failure-risk/192.168.1.100")
    assert status == 200, risk
    assert 0.0 <= risk["risk_score"] <= 1.0 and risk["risk_level"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL")
    # The job record lives in PostgreSQL too.
    with psycopg.connect(running.store_url) as conn:
        assert conn.execute("SELECT count(*) FROM training_jobs").fetchone() == (1,)


def test_stopping_the_server_stops_its_postgres(running: RunPostgres) -> None:
    url = running.store_url
    assert running.stop() == 0, "".join(running.lines[-20:])
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)
