"""Limits: per-client rate limit on expensive calls, message sizes, subscription slots, deadlines."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from mining.analytics.v1alpha1 import (
    scoring_pb2,
    scoring_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
)

from server.errors import RateLimited, ResourceExhausted
from server.ops.limits import RateLimiter, SubscriptionSlots
from tests.harness import Stack, start_server
from tests.security.conftest import AuthStack


def _score_fleet(auth_stack: AuthStack, token: str) -> grpc.RpcError:
    stub = scoring_pb2_grpc.ScoringServiceStub(auth_stack.stack.channel)
    with pytest.raises(grpc.RpcError) as error:
        stub.ScoreFleet(scoring_pb2.ScoreFleetRequest(), metadata=auth_stack.metadata(token), timeout=30)
    return error.value


def test_expensive_calls_are_rate_limited_per_token_with_a_retry_hint(auth_stack: AuthStack) -> None:
    # burst 2: two calls pass the limiter (and fail later: no model), the third is refused.
    codes = [_score_fleet(auth_stack, "reader").code() for _ in range(3)]
    assert codes[:2] == [grpc.StatusCode.FAILED_PRECONDITION] * 2
    assert codes[2] == grpc.StatusCode.RESOURCE_EXHAUSTED
    refused = _score_fleet(auth_stack, "reader")
    assert "rate limit" in refused.details() and "retry in" in refused.details()
    status = rpc_status.from_call(refused)
    assert status is not None
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(retry) == 1
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert 0 < info.retry_delay.ToTimedelta().total_seconds() <= 60
    # Another client (token) has its own bucket.
    assert _score_fleet(auth_stack, "admin").code() == grpc.StatusCode.FAILED_PRECONDITION


def test_rate_limit_is_429_with_retry_after_through_envoy(auth_stack: AuthStack) -> None:
    headers = auth_stack.headers("scoped-site")
    statuses = [auth_stack.stack.rest("GET", "/api/advanced/fleet/scores", headers=headers) for _ in range(3)]
    assert [r.status for r in statuses[:2]] == [400, 400]
    assert statuses[2].status == 429
    assert statuses[2].json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "retry in" in statuses[2].json()["message"]
    assert int(statuses[2].headers.get("retry-after", "0")) >= 1


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    limiter.acquire("a", "Train")
    limiter.acquire("a", "Train")
    with pytest.raises(RateLimited) as error:
        limiter.acquire("a", "Train")
    assert error.value.retry_after_s == pytest.approx(1.0)
    limiter.acquire("b", "Train")  # other clients are unaffected
    now[0] = 1.0
    limiter.acquire("a", "Train")  # one token refilled after a second


def test_subscription_slots_cap_concurrent_streams() -> None:
    seen: list[int] = []
    slots = SubscriptionSlots(limit=2, on_change=seen.append)
    with slots.hold(), slots.hold():
        with pytest.raises(ResourceExhausted, match="subscription slots"), slots.hold():
            pass
        assert slots.active == 2
    assert slots.active == 0
    assert seen == [1, 2, 1, 0]


def test_oversized_grpc_message_is_resource_exhausted(tmp_path: Path) -> None:
    server = start_server(tmp_path, max_message_bytes=64 * 1024, metrics_port=-1)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)
            samples = [telemetry_pb2.MetricSample(miner_id=f"big-{i}", serial="x" * 100) for i in range(1000)]
            with pytest.raises(grpc.RpcError) as error:
                stub.WriteMetrics(telemetry_pb2.WriteMetricsRequest(samples=samples), timeout=30)
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "larger than max" in error.value.details()
    finally:
        server.stop()


def test_oversized_rest_body_is_413(stack: Stack) -> None:
    body = b'{"samples": [' + b" " * (16 * 1024 * 1024 + 10) + b"]}"
    reply = stack.rest("POST", "/api/advanced/metrics", raw=body)
    assert reply.status == 413
    assert reply.json()["details"][0]["reason"] == "BODY_TOO_LARGE"


def test_expired_deadline_is_refused_before_the_handler_runs() -> None:
    import asyncio

    from server.ops.limits import RateLimiter as Limiter
    from server.transport.interceptors import LimitsInterceptor

    class ExpiredContext:
        aborted: tuple[grpc.StatusCode, str] | None = None

        def time_remaining(self) -> float:
            return -0.5

        def cancelled(self) -> bool:
            return False

        async def abort(self, code: grpc.StatusCode, details: str) -> None:
            self.aborted = (code, details)
            raise grpc.aio.AbortError()

    ran = []

    async def handler(request: object, context: object) -> str:
        ran.append(request)
        return "done"

    interceptor = LimitsInterceptor(Limiter(60, 1))
    wrapped = interceptor.around_unary("/x.Y/Z", handler)
    context = ExpiredContext()
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(wrapped("request", context))
    assert ran == []
    assert context.aborted is not None and context.aborted[0] == grpc.StatusCode.DEADLINE_EXCEEDED
