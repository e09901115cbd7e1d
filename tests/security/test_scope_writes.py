"""Scoped tokens see and change only their miners: status, failures, writes, registration, streams."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from mining.analytics.v1alpha1 import (
    common_pb2,
    fleet_pb2,
    fleet_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
)

from server.domain.subscriptions import ScoreFilter
from server.records import MinerScore, RiskLevel
from tests.security.conftest import AuthStack


def scoped_pair(auth_stack: AuthStack) -> tuple[str, str]:
    """(the scoped writer's miner, a miner outside its scope)."""
    miners = fleet_pb2_grpc.FleetServiceStub(auth_stack.stack.channel).ListMiners(
        fleet_pb2.ListMinersRequest(), metadata=auth_stack.metadata("admin"), timeout=30
    )
    ids = sorted(m.miner_id for m in miners.miners)
    return ids[0], ids[1]


def test_status_counts_only_the_scoped_miners(auth_stack: AuthStack) -> None:
    stub = fleet_pb2_grpc.FleetServiceStub(auth_stack.stack.channel)
    full = stub.Status(fleet_pb2.StatusRequest(), metadata=auth_stack.metadata("admin"), timeout=30)
    scoped = stub.Status(fleet_pb2.StatusRequest(), metadata=auth_stack.metadata("scoped-ids"), timeout=30)
    assert scoped.miners == 2 < full.miners
    assert 0 < scoped.samples < full.samples


def test_scoped_writer_cannot_write_other_miners(auth_stack: AuthStack) -> None:
    mine, other = scoped_pair(auth_stack)
    stub = telemetry_pb2_grpc.TelemetryServiceStub(auth_stack.stack.channel)
    samples = []
    for miner_id in (mine, other):
        sample = telemetry_pb2.MetricSample(miner_id=miner_id, hashrate_ths=100.0)
        sample.timestamp.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
        samples.append(sample)
    with pytest.raises(grpc.RpcError) as caught:
        stub.WriteMetrics(
            telemetry_pb2.WriteMetricsRequest(samples=samples),
            metadata=auth_stack.metadata("scoped-writer"),
            timeout=30,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[1].miner_id" in caught.value.details()
    assert "samples[0]" not in caught.value.details()
    written = stub.WriteMetrics(
        telemetry_pb2.WriteMetricsRequest(samples=samples[:1]),
        metadata=auth_stack.metadata("scoped-writer"),
        timeout=30,
    )
    assert written.written + written.duplicates == 1


def test_scoped_writer_cannot_register_or_change_other_miners(auth_stack: AuthStack) -> None:
    _, other = scoped_pair(auth_stack)
    stub = fleet_pb2_grpc.FleetServiceStub(auth_stack.stack.channel)
    for miner_id in (other, "10.77.0.1"):  # an existing miner and a new one answer alike
        with pytest.raises(grpc.RpcError) as caught:
            stub.UpsertMiner(
                fleet_pb2.UpsertMinerRequest(
                    miner=common_pb2.Miner(miner_id=miner_id, hardware_model="Antminer S19 Pro")
                ),
                metadata=auth_stack.metadata("scoped-writer"),
                timeout=30,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "own scope" in caught.value.details()


def test_scoped_failure_listing_and_recording(auth_stack: AuthStack) -> None:
    mine, other = scoped_pair(auth_stack)
    stub = telemetry_pb2_grpc.TelemetryServiceStub(auth_stack.stack.channel)
    listed = stub.ListFailures(
        telemetry_pb2.ListFailuresRequest(), metadata=auth_stack.metadata("scoped-writer")
    )
    assert {e.miner_id for e in listed.failures} <= {mine}
    with pytest.raises(grpc.RpcError) as caught:
        stub.RecordFailure(
            telemetry_pb2.RecordFailureRequest(miner_id=other, mode=common_pb2.FAILURE_MODE_FAN),
            metadata=auth_stack.metadata("scoped-writer"),
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_subscription_filter_hides_miners_outside_the_scope() -> None:
    visible = ScoreFilter(allowed=frozenset({"a"}))
    score = MinerScore("b", 0.9, RiskLevel.CRITICAL, None, "v")
    assert not visible.matches(score)
    assert visible.matches(MinerScore("a", 0.9, RiskLevel.CRITICAL, None, "v"))
    assert ScoreFilter().matches(score)  # unscoped callers see everything
