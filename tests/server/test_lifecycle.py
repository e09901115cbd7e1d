"""Start-up, drain and shutdown: health follows the server's state, SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import SMALL_FLEET, start_server


def test_health_turns_not_serving_while_draining(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    statuses: list[int] = []
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)

    def read() -> None:
        try:
            for reply in watch:
                statuses.append(reply.status)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while not statuses and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop(grace=2.0)
    reader.join(30)
    channel.close()
    assert statuses[0] == health_pb2.HealthCheckResponse.SERVING
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses


def test_sigterm_stops_the_server_and_keeps_the_store(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MFH_DATA_DIR": str(tmp_path),
        "MFH_DEMO_MINERS": str(SMALL_FLEET["demo_miners"]),
        "MFH_DEMO_DAYS": str(SMALL_FLEET["demo_days"]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "server.main", "--grpc-port", "0", "--grace-seconds", "1"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    port = None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while port is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        found = re.search(r"gRPC server listening on [\d.]+:(\d+)", line)
        if found:
            port = int(found.group(1))
    assert port, "".join(lines)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "draining" in rest and "stopped" in rest
    # The store survives: a second start finds the fleet and does not seed again.
    second = start_server(tmp_path)
    try:
        assert second.app.store.counts().miners == SMALL_FLEET["demo_miners"]
    finally:
        second.stop()
