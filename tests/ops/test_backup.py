"""Backup while the server runs, restore into a fresh data directory (issue 11, item 11).

A writer keeps sending batches while the backup is taken through Envoy; the restored store holds
every batch acknowledged before the backup was asked for, no batch in part, and the active model.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from mining.analytics.v1alpha1 import fleet_pb2, fleet_pb2_grpc, telemetry_pb2, telemetry_pb2_grpc

from tests.conftest import wait_for_job
from tests.harness import start_server, start_stack

PER_BATCH = 12


def _batch(index: int, start: datetime) -> telemetry_pb2.WriteMetricsRequest:
    samples = []
    for i in range(PER_BATCH):
        sample = telemetry_pb2.MetricSample(miner_id=f"10.95.0.{index % 200}", hashrate_ths=100.0 + i)
        sample.timestamp.FromDatetime(start + timedelta(minutes=5 * (index // 200 * PER_BATCH + i)))
        samples.append(sample)
    return telemetry_pb2.WriteMetricsRequest(samples=samples, batch_id=str(index))


def test_a_restored_backup_has_every_acknowledged_sample_and_the_active_model(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "live")
    acked: list[int] = []
    stop = threading.Event()
    start = datetime.now(UTC) - timedelta(days=2)
    try:
        reply = stack.rest("POST", "/api/advanced/train/lstm", {"epochs": 1, "seed": 4})
        assert reply.status == 200, reply.body
        active = wait_for_job(stack, reply.json()["job_id"])["model_version"]
        telemetry = telemetry_pb2_grpc.TelemetryServiceStub(stack.channel)

        def write() -> None:
            index = 0
            while not stop.is_set():
                telemetry.WriteMetrics(_batch(index, start), timeout=60)
                acked.append(index)
                index += 1

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        while len(acked) < 20:  # the writer is well under way
            threading.Event().wait(0.05)
        acked_before = list(acked)
        backup = stack.rest("POST", "/api/advanced/backup", {"name": "during-writes"})
        stop.set()
        writer.join(60)
        assert backup.status == 200, backup.body
        answer = backup.json()
        assert answer["lstm_version"] == active and answer["path"].endswith("during-writes")
        assert stack.rest("POST", "/api/advanced/backup", {"name": "during-writes"}).status == 409
    finally:
        stop.set()
        stack.close()

    restored_dir = tmp_path / "restored"
    restore = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.ops.backup",
            "restore",
            answer["path"],
            "--data-dir",
            str(restored_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert restore.returncode == 0, restore.stderr
    again = subprocess.run(  # never over a data directory that has a store
        [
            sys.executable,
            "-m",
            "server.ops.backup",
            "restore",
            answer["path"],
            "--data-dir",
            str(restored_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode != 0 and "fresh data directory" in again.stderr

    server = start_server(restored_dir)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            fleet = fleet_pb2_grpc.FleetServiceStub(channel)
            status = fleet.Status(fleet_pb2.StatusRequest(), timeout=30)
            assert status.lstm_model and status.lstm_model_info.version == active
            assert status.samples == answer["samples"]
            counts: dict[str, int] = {}
            for miner in fleet.ListMiners(fleet_pb2.ListMinersRequest(page_size=1000), timeout=30).miners:
                counts[miner.miner_id] = miner.sample_count
        stored_batches = 0
        for miner_id, count in counts.items():
            if miner_id.startswith("10.95.0."):
                assert count % PER_BATCH == 0, (miner_id, count)  # whole batches only
                stored_batches += count // PER_BATCH
        assert stored_batches >= len(acked_before)
        for index in acked_before:
            assert counts.get(f"10.95.0.{index % 200}", 0) >= PER_BATCH * (index // 200 + 1)
    finally:
        server.stop()
