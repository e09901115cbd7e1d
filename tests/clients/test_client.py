"""FleetHealthClient against a scripted gRPC server: retries, metadata, rich errors, stream resume."""

from __future__ import annotations

import grpc
import pytest
from mining.analytics.v1alpha1 import common_pb2, telemetry_pb2

from clients.client import ClientError, FieldViolation, FleetHealthClient, service_config
from tests.clients.fake_server import FakeServer


class CountingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def client_for(server: FakeServer, **options: object) -> tuple[FleetHealthClient, CountingSleep]:
    sleep = CountingSleep()
    return FleetHealthClient(server.target, timeout=30, sleep=sleep, **options), sleep  # type: ignore[arg-type]


def test_unavailable_is_retried_by_the_channel_retry_policy(fake_server: FakeServer) -> None:
    fake_server.script.unavailable_first = 2
    client, sleep = client_for(fake_server, retries=3)
    with client:
        assert client.status().server_version == "fake"
    assert fake_server.script.calls == ["Status"] * 3
    assert sleep.delays == []  # the channel waited, not the client's own loop


def test_unavailable_gives_up_after_the_retry_budget(fake_server: FakeServer) -> None:
    fake_server.script.unavailable_first = 10
    client, _ = client_for(fake_server, retries=2)
    with client, pytest.raises(ClientError) as caught:
        client.status()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and caught.value.message == "warming up"
    assert fake_server.script.calls == ["Status"] * 3


def test_retries_zero_makes_one_attempt(fake_server: FakeServer) -> None:
    fake_server.script.unavailable_first = 1
    client, _ = client_for(fake_server, retries=0)
    with client, pytest.raises(ClientError):
        client.status()
    assert fake_server.script.calls == ["Status"]


def test_service_config_retries_unary_calls_and_leaves_streams_to_the_client() -> None:
    config = service_config(3)
    unary, streams = config["methodConfig"]
    assert unary["retryPolicy"]["maxAttempts"] == 4
    assert unary["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert {"service": "mining.analytics.v1alpha1.FleetService"} in unary["name"]
    assert "retryPolicy" not in streams
    assert {"service": "mining.analytics.v1alpha1.TelemetryService", "method": "IngestMetrics"} in streams[
        "name"
    ]
    assert "retryPolicy" not in service_config(0)["methodConfig"][0]
    with pytest.raises(ValueError, match="gRPC caps attempts at 5"):
        FleetHealthClient("127.0.0.1:1", retries=5)


def test_other_codes_are_not_retried_and_carry_rich_details(fake_server: FakeServer) -> None:
    client, sleep = client_for(fake_server, retries=3)
    with client, pytest.raises(ClientError) as caught:
        client.get_miner("")
    error = caught.value
    assert (error.code, error.reason, error.domain) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "mining.analytics",
    )
    assert error.message == "miner_id: must not be empty"
    assert error.field_violations == (FieldViolation("miner_id", "must not be empty"),)
    assert str(error) == "INVALID_ARGUMENT INVALID_ARGUMENT: miner_id: must not be empty"
    assert fake_server.script.calls == ["GetMiner"] and sleep.delays == []


def test_failed_precondition_surfaces_its_reason(fake_server: FakeServer) -> None:
    client, _ = client_for(fake_server)
    with client, pytest.raises(ClientError) as caught:
        client.predict_failure_risk("10.0.0.1")
    assert (caught.value.code, caught.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MODEL_NOT_TRAINED",
    )


def test_bearer_token_is_sent_as_authorization_metadata(fake_server: FakeServer) -> None:
    client, _ = client_for(fake_server, token="s3cret")
    with client:
        client.status()
    assert fake_server.script.metadata[0]["authorization"] == "Bearer s3cret"


def test_train_sends_a_request_id_that_is_reused_on_retry(fake_server: FakeServer) -> None:
    fake_server.script.unavailable_first = 1
    client, _ = client_for(fake_server)
    with client:
        client.train("lstm", epochs=3)
        client.train("AUTOENCODER", request_id="mine")
    rejected, retried, explicit = fake_server.script.train_requests
    assert len(retried.request_id) == 32 and retried.request_id == rejected.request_id
    assert retried.epochs == 3 and not retried.HasField("batch_size")  # absent: server defaults apply
    assert explicit.request_id == "mine" and explicit.model_kind == common_pb2.AUTOENCODER


def test_subscribe_resumes_after_the_last_sequence_then_raises_error_events(fake_server: FakeServer) -> None:
    client, sleep = client_for(fake_server)
    events = []
    with client, pytest.raises(ClientError) as caught:
        for event in client.subscribe_scores(min_risk_level="high"):
            events.append(event.sequence)
    assert events == [1, 2, 3, 4]
    assert [s.after_sequence for s in fake_server.script.subscriptions] == [0, 2]
    assert fake_server.script.subscriptions[0].min_risk_level == common_pb2.HIGH
    assert (caught.value.code, caught.value.message) == (grpc.StatusCode.PERMISSION_DENIED, "token revoked")
    assert len(sleep.delays) == 1


def test_watch_train_job_ends_at_the_final_state(fake_server: FakeServer) -> None:
    client, _ = client_for(fake_server)
    with client:
        epochs = [job.epoch for job in client.watch_train_job("job-1")]
    assert epochs == [0, 1, 2, 3, 3]


def test_ingest_yields_one_ack_per_batch_in_order(fake_server: FakeServer) -> None:
    batches = [
        telemetry_pb2.WriteMetricsRequest(
            batch_id=f"b{n}", samples=[telemetry_pb2.MetricSample(miner_id="m")] * n
        )
        for n in (1, 2, 3)
    ]
    client, _ = client_for(fake_server)
    with client:
        acks = [(ack.batch_id, ack.written) for ack in client.ingest_metrics(batches)]
    assert acks == [("b1", 1), ("b2", 2), ("b3", 3)]


def test_unreachable_server_raises_unavailable_after_retries() -> None:
    with (
        FleetHealthClient("127.0.0.1:1", timeout=5, retries=1) as client,
        pytest.raises(ClientError) as caught,
    ):
        client.status()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_bad_arguments_are_rejected_before_any_call() -> None:
    with (
        pytest.raises(ValueError, match="expected 'lstm' or 'autoencoder'"),
        FleetHealthClient("127.0.0.1:1") as c,
    ):
        c.train("gru")
    with pytest.raises(ValueError, match="timeout"):
        FleetHealthClient("127.0.0.1:1", timeout=0)
