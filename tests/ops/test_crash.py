"""kill -9 during ingestion and during training, then restart on the same data directory.

Proves: every acknowledged batch is stored, no batch is partly stored, a job cut off reads
INTERRUPTED, the active model still loads, and the orphaned training worker stops by itself.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from mining.analytics.v1alpha1 import (
    common_pb2,
    fleet_pb2,
    fleet_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

from tests.harness import start_server
from tests.ops.server_process import ServerProcess, alive

SAMPLES_PER_BATCH = 48


def _batch(index: int, start: datetime) -> telemetry_pb2.WriteMetricsRequest:
    samples = []
    for i in range(SAMPLES_PER_BATCH):
        stamp = Timestamp()
        stamp.FromDatetime(start + timedelta(minutes=5 * i))
        samples.append(
            telemetry_pb2.MetricSample(
                miner_id=f"crash-{index}", timestamp=stamp, temperature_c=60.0 + i % 7, hashrate_ths=100.0
            )
        )
    return telemetry_pb2.WriteMetricsRequest(samples=samples, batch_id=str(index))


def test_kill_during_ingestion_keeps_every_acknowledged_batch_whole(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    start = datetime.now(UTC) - timedelta(days=1)
    sent: list[int] = []
    acked: list[int] = []
    try:
        channel = grpc.insecure_channel(server.target)
        stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)

        def batches() -> Iterator[telemetry_pb2.WriteMetricsRequest]:
            for index in range(100_000):
                sent.append(index)
                yield _batch(index, start)

        killer: threading.Thread | None = None
        try:
            for reply in stub.IngestMetrics(batches(), timeout=120):
                assert reply.written == SAMPLES_PER_BATCH
                acked.append(int(reply.batch_id))
                if len(acked) == 20 and killer is None:
                    # Kill while the client keeps streaming: later batches are in flight.
                    killer = threading.Thread(target=server.kill9)
                    killer.start()
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert killer is not None
        killer.join(30)
        channel.close()
    finally:
        server.stop()
    assert server.process.returncode == -signal.SIGKILL
    assert len(sent) > len(acked) >= 20

    restarted = start_server(tmp_path, metrics_port=-1)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{restarted.port}") as channel:
            fleet = fleet_pb2_grpc.FleetServiceStub(channel)
            stored = {}
            for index in sent:
                try:
                    miner = fleet.GetMiner(fleet_pb2.GetMinerRequest(miner_id=f"crash-{index}"), timeout=30)
                    stored[index] = miner.sample_count
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.NOT_FOUND
                    stored[index] = 0
    finally:
        restarted.stop()
    assert all(stored[index] == SAMPLES_PER_BATCH for index in acked), stored
    assert set(stored.values()) <= {0, SAMPLES_PER_BATCH}, stored  # all or nothing


def _wait_for(stub: training_pb2_grpc.TrainingServiceStub, job_id: str, states: set[int], timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = stub.GetTrainJob(training_pb2.GetTrainJobRequest(job_id=job_id), timeout=30)
        if job.state in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} stayed {job.state} ({job.message})")


def test_kill_during_training_marks_the_job_interrupted_and_keeps_the_active_model(tmp_path: Path) -> None:
    # No early stopping: the long job must still be training when the server is killed.
    server = ServerProcess(tmp_path, "--train-patience", "100000")
    workers: list[int] = []
    try:
        with grpc.insecure_channel(server.target) as channel:
            training = training_pb2_grpc.TrainingServiceStub(channel)
            tiny = training.Train(
                training_pb2.TrainRequest(model_kind=common_pb2.LSTM, epochs=2, batch_size=128), timeout=30
            )
            done = _wait_for(training, tiny.job_id, {training_pb2.JOB_STATE_SUCCEEDED}, timeout=240)
            assert done.promoted
            long = training.Train(
                training_pb2.TrainRequest(model_kind=common_pb2.LSTM, epochs=5000, batch_size=8), timeout=30
            )
            running = _wait_for(training, long.job_id, {training_pb2.JOB_STATE_RUNNING}, timeout=120)
            assert running.state == training_pb2.JOB_STATE_RUNNING
            workers = server.children()
            assert workers, "the training worker process should be running"
            server.kill9()
    finally:
        server.stop()
    # The orphaned worker notices its parent is gone and stops instead of training on.
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [pid for pid in workers if alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "the training worker outlived the killed server"

    restarted = start_server(tmp_path, metrics_port=-1)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{restarted.port}") as channel:
            training = training_pb2_grpc.TrainingServiceStub(channel)
            job = training.GetTrainJob(training_pb2.GetTrainJobRequest(job_id=long.job_id), timeout=30)
            assert job.state == training_pb2.JOB_STATE_INTERRUPTED
            assert "restart" in job.message
            status = fleet_pb2_grpc.FleetServiceStub(channel).Status(fleet_pb2.StatusRequest(), timeout=30)
            assert status.lstm_model
            assert status.lstm_model_info.version == done.model_version
    finally:
        restarted.stop()
    audit = (tmp_path / "audit.log").read_text()
    assert audit.count('"action": "train"') == 2
