"""Every RPC, over gRPC, with generated requests: bad input gets a client-error status with a
message; nothing answers INTERNAL/UNKNOWN, crashes the server or hangs."""

from __future__ import annotations

import contextlib
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mining.analytics.v1alpha1 import fleet_pb2, fleet_pb2_grpc, training_pb2

from server.app import SERVICE_NAMES
from tests.fuzz.conftest import messages
from tests.harness import Stack

CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ALREADY_EXISTS,
}
STREAM_WAIT_S = 2.0

METHODS: list[MethodDescriptor] = [
    method
    for service in SERVICE_NAMES
    for method in descriptor_pool.Default().FindServiceByName(service).methods
]


def _message_class(descriptor: Any) -> Any:
    return message_factory.GetMessageClass(descriptor)


def _would_train(request: training_pb2.TrainRequest) -> bool:
    """A Train request the server would accept (starting a real job): the fuzz skips those."""

    def ok(field: str, low: float, high: float) -> bool:
        return not request.HasField(field) or low <= getattr(request, field) <= high

    return (
        request.model_kind in (1, 2)
        and ok("epochs", 1, 10_000)
        and ok("batch_size", 1, 4096)
        and (not request.HasField("validation_split") or 0 < request.validation_split < 1)
        and ok("seed", 0, 2**31 - 1)
        and len(request.request_id) <= 128
    )


def _call(channel: grpc.Channel, method: MethodDescriptor, request: Any) -> tuple[grpc.StatusCode, str]:
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_class = _message_class(method.output_type)
    kwargs = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": response_class.FromString,
    }
    try:
        if method.client_streaming:
            replies = channel.stream_stream(path, **kwargs)(iter([request]), timeout=30)
            list(replies)
        elif method.server_streaming:
            stream = channel.unary_stream(path, **kwargs)(request, timeout=STREAM_WAIT_S)
            with contextlib.suppress(StopIteration):
                next(stream)  # the first message (or the error) is enough
            stream.cancel()
        else:
            channel.unary_unary(path, **kwargs)(request, timeout=30)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.CANCELLED and method.server_streaming:
            return grpc.StatusCode.OK, ""
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture(scope="module")
def miner_ids(fuzz_stack: Stack) -> list[str]:
    stub = fleet_pb2_grpc.FleetServiceStub(fuzz_stack.channel)
    return [m.miner_id for m in stub.ListMiners(fleet_pb2.ListMinersRequest(), timeout=30).miners]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_rpc_answers_generated_requests_with_client_errors_only(
    fuzz_stack: Stack, miner_ids: list[str], method: MethodDescriptor
) -> None:
    request_class = _message_class(method.input_type)
    allowed = set(CLIENT_ERRORS)
    if method.name == "SubscribeScores":
        allowed.add(grpc.StatusCode.DEADLINE_EXCEEDED)  # a quiet subscription just waits
    examples = 15 if method.server_streaming else 40

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        fields = data.draw(messages(method.input_type, miner_ids))
        try:
            request = request_class(**fields)
        except (ValueError, TypeError):
            assume(False)  # not a message protobuf can build (e.g. an out-of-range enum in a oneof)
            return
        if method.name == "Train":
            assume(not _would_train(request))
        code, details = _call(fuzz_stack.channel, method, request)
        assert code == grpc.StatusCode.OK or code in allowed, f"{code.name}: {details} for {request}"
        if code != grpc.StatusCode.OK and code != grpc.StatusCode.DEADLINE_EXCEEDED:
            assert details, f"{code.name} without a message for {request}"

    check()


def test_no_training_job_was_started_by_the_fuzz(fuzz_stack: Stack) -> None:
    from mining.analytics.v1alpha1 import training_pb2_grpc

    stub = training_pb2_grpc.TrainingServiceStub(fuzz_stack.channel)
    assert list(stub.ListTrainJobs(training_pb2.ListTrainJobsRequest(), timeout=30).jobs) == []
