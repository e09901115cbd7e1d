"""`?explain=true` names the failing part: a simulated PSU precursor, written through the API like any
miner's telemetry, is explained as PSU (it was called HASH_BOARD: a failing PSU and a lost board both
move hashrate and power, and the rule read only which features carried the risk)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from mining.analytics.v1alpha1 import telemetry_pb2, telemetry_pb2_grpc

from server.records import FailureMode
from server.sim import simulate_fleet
from tests.conftest import wait_for_job
from tests.harness import Stack, start_stack

# A simulated fleet (12 miners, 4 days, seed 2) whose miner 192.168.1.109 fails with a PSU after a
# 46 h precursor, 22 h before the end of the data.
FLEET = {"n_miners": 12, "days": 4.0, "seed": 2}
PSU_MINER = "192.168.1.109"
SENT_AS = "10.13.9.1"


def _psu_history(now: datetime) -> tuple[telemetry_pb2.MetricColumns, str]:
    """The PSU miner's telemetry up to 1 h before its failure, timed so that hour ends now, and its
    hardware model. Simulating is deterministic; `end` only moves the clock."""
    reference = datetime(2026, 1, 1, tzinfo=UTC)
    probe = simulate_fleet(**FLEET, end=reference)  # type: ignore[arg-type]
    (failure,) = [f for f in probe.failures if f.miner_id == PSU_MINER and f.mode == FailureMode.PSU]
    (episode,) = [
        e for e in probe.episodes if e.miner_id == PSU_MINER and e.failure_at == failure.occurred_at
    ]
    assert episode.kind == "psu" and failure.occurred_at - episode.start > timedelta(hours=12)
    last = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 5)
    fleet = simulate_fleet(**FLEET, end=last + timedelta(hours=1) - (failure.occurred_at - probe.end))  # type: ignore[arg-type]
    samples = fleet.samples
    keep = (samples.miner_id == PSU_MINER) & (samples.ts <= np.datetime64(last.replace(tzinfo=None), "s"))
    assert keep.sum() > 400  # more than a day and a half of history before the hour
    model = next(m.hardware_model for m in fleet.miners if m.miner_id == PSU_MINER)
    columns = telemetry_pb2.MetricColumns(
        miner_id=[SENT_AS] * int(keep.sum()),
        timestamp_ms=(samples.ts[keep].astype("datetime64[ms]").astype(np.int64)).tolist(),
        hashrate_ths=samples.hashrate_ths[keep].tolist(),
        temperature_c=samples.temperature_c[keep].tolist(),
        fan_speed_rpm=samples.fan_speed_rpm[keep].tolist(),
        power_w=samples.power_w[keep].tolist(),
        accepted_shares=samples.accepted_shares[keep].tolist(),
        rejected_shares=samples.rejected_shares[keep].tolist(),
    )
    return columns, model


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The small demo fleet with a trained LSTM, plus the PSU miner's history sent through the API."""
    running = start_stack(Path(tmp_path_factory.mktemp("explain")))
    try:
        reply = running.rest("POST", "/api/advanced/train/lstm", {"epochs": 2, "seed": 5})
        assert reply.status == 200, reply.body
        wait_for_job(running, reply.json()["job_id"])
        columns, model = _psu_history(datetime.now(UTC))
        put = running.rest(
            "PUT", f"/api/advanced/miners/{SENT_AS}", {"miner_id": SENT_AS, "hardware_model": model}
        )
        assert put.status == 200, put.body
        telemetry = telemetry_pb2_grpc.TelemetryServiceStub(running.channel)
        ack = telemetry.WriteMetrics(telemetry_pb2.WriteMetricsRequest(columns=columns), timeout=60)
        assert ack.written == len(columns.miner_id)
        yield running
    finally:
        running.close()


def test_a_simulated_psu_precursor_is_explained_as_psu(explained: Stack) -> None:
    reply = explained.rest("GET", f"/api/advanced/predict/failure-risk/{SENT_AS}?explain=true")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["risk_factors"], body
    assert body["likely_failure_mode"] == "FAILURE_MODE_PSU", body["risk_factors"]
