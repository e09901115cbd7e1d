"""Health per scoring service, reflection v1, and REST subscribers' headers (issue 11, item 10)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from tests.conftest import wait_for_job
from tests.harness import Stack, start_stack

SCORING = "mining.analytics.v1alpha1.ScoringService"
TRAINING = "mining.analytics.v1alpha1.TrainingService"
V1_REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


@pytest.fixture(scope="module")
def fresh_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("health")))
    yield running
    running.close()


def _health(channel: grpc.Channel, service: str) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=10
    )
    return int(reply.status)


def test_scoring_is_not_serving_until_its_model_loads_but_the_process_is(fresh_stack: Stack) -> None:
    # Through Envoy, as a health-checking proxy sees it.
    with grpc.insecure_channel(f"127.0.0.1:{fresh_stack.envoy.http_port}") as channel:
        assert _health(channel, "") == health_pb2.HealthCheckResponse.SERVING
        assert _health(channel, TRAINING) == health_pb2.HealthCheckResponse.SERVING
        assert _health(channel, SCORING) == health_pb2.HealthCheckResponse.NOT_SERVING
        reply = fresh_stack.rest("POST", "/api/advanced/train/lstm", {"epochs": 1, "seed": 2})
        assert reply.status == 200, reply.body
        wait_for_job(fresh_stack, reply.json()["job_id"])
        deadline = time.monotonic() + 60
        while _health(channel, SCORING) != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "ScoringService stayed NOT_SERVING after the LSTM loaded"
            time.sleep(0.2)
        assert _health(channel, "") == health_pb2.HealthCheckResponse.SERVING


def test_reflection_v1_answers_beside_v1alpha(fresh_stack: Stack) -> None:
    call = fresh_stack.channel.stream_stream(
        V1_REFLECTION,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,  # same wire format
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="mining.analytics.v1alpha1.FleetService"
        ),
    ]
    listed, found = list(call(iter(requests), timeout=30))
    names = {s.name for s in listed.list_services_response.service}
    assert {
        SCORING,
        TRAINING,
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in found.file_descriptor_response.file_descriptor_proto
    ]
    assert any(f.package == "mining.analytics.v1alpha1" and f.service for f in files)


def test_rest_subscribers_get_their_headers_at_once(fresh_stack: Stack) -> None:
    """With an hour between heartbeats, the 200 and its headers still arrive before any event."""
    connection = http.client.HTTPConnection("127.0.0.1", fresh_stack.envoy.http_port, timeout=30)
    try:
        connection.request("GET", "/api/advanced/scores/subscribe?heartbeat_seconds=3600")
        response = connection.getresponse()  # times out (30 s) if headers wait for the first event
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("application/json")
    finally:
        connection.close()
