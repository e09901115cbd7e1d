"""grpcurl through server reflection, and grpc.health.v1."""

from __future__ import annotations

import json

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import Stack

SERVICES = [
    "mining.analytics.v1alpha1.FleetService",
    "mining.analytics.v1alpha1.ScoringService",
    "mining.analytics.v1alpha1.TelemetryService",
    "mining.analytics.v1alpha1.TrainingService",
]


def test_grpcurl_lists_every_service(stack: Stack) -> None:
    result = stack.grpcurl("list")
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split()
    for name in [*SERVICES, "grpc.health.v1.Health"]:
        assert name in listed


def test_grpcurl_describes_every_rpc(stack: Stack) -> None:
    result = stack.grpcurl("describe", "mining.analytics.v1alpha1.TrainingService")
    assert result.returncode == 0, result.stderr
    for rpc in ("Train", "GetTrainJob", "WatchTrainJob", "CancelTrainJob", "ListModels", "ActivateModel"):
        assert f"rpc {rpc}" in result.stdout
    result = stack.grpcurl("describe", "mining.analytics.v1alpha1.ScoringService")
    for rpc in ("PredictFailureRisk", "DetectAnomalies", "ScoreFleet", "SubscribeScores"):
        assert f"rpc {rpc}" in result.stdout
    result = stack.grpcurl("describe", "mining.analytics.v1alpha1.TelemetryService")
    for rpc in ("WriteMetrics", "IngestMetrics", "RecordFailure"):
        assert f"rpc {rpc}" in result.stdout


def test_grpcurl_calls_status(stack: Stack) -> None:
    result = stack.grpcurl("mining.analytics.v1alpha1.FleetService/Status")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["sequence_length"] == 24
    assert "hashrate" in body["feature_columns"]


def test_grpcurl_reaches_the_server_through_envoy(stack: Stack) -> None:
    result = stack.grpcurl(
        "mining.analytics.v1alpha1.FleetService/Status", target=f"127.0.0.1:{stack.envoy.http_port}"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sequence_length"] == 24


def test_grpcurl_shows_error_codes(stack: Stack) -> None:
    result = stack.grpcurl(
        "mining.analytics.v1alpha1.ScoringService/PredictFailureRisk",
        flags=("-d", '{"miner_id": "192.168.1.100"}'),
    )
    assert result.returncode != 0
    assert "FailedPrecondition" in result.stderr
    assert "no trained LSTM model" in result.stderr


def test_health_is_serving(stack: Stack) -> None:
    """The process and every service but scoring serve; scoring waits for its model (none here)."""
    stub = health_pb2_grpc.HealthStub(stack.channel)
    for service in ["", *SERVICES]:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
        expected = "NOT_SERVING" if service.endswith("ScoringService") else "SERVING"
        assert health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status) == expected, service


def test_health_of_an_unknown_service_is_not_found(stack: Stack) -> None:
    stub = health_pb2_grpc.HealthStub(stack.channel)
    try:
        stub.Check(health_pb2.HealthCheckRequest(service="nope.Service"), timeout=30)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND
    else:
        raise AssertionError("expected NOT_FOUND")
