"""RecordFeedback: a technician's verdict on a risk alert, stored against the miner."""

from __future__ import annotations

import grpc
import pytest
from mining.analytics.v1alpha1 import telemetry_pb2, telemetry_pb2_grpc

from tests.harness import ServerThread
from tests.ingest.builders import batch, metric, violations


def test_feedback_is_stored_against_the_miner_by_any_alias(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    telemetry.WriteMetrics(batch(metric("10.7.0.1", 0, serial="SN-FEEDBACK")))
    confirmed = telemetry.RecordFeedback(
        telemetry_pb2.RecordFeedbackRequest(
            miner_id="SN-FEEDBACK", verdict=telemetry_pb2.FEEDBACK_VERDICT_CONFIRMED, note="fan 3 seized"
        )
    )
    assert (confirmed.miner_id, confirmed.verdict, confirmed.note) == (
        "10.7.0.1",
        telemetry_pb2.FEEDBACK_VERDICT_CONFIRMED,
        "fan 3 seized",
    )
    assert confirmed.model_version == ""  # no LSTM is active on this server
    assert len(confirmed.feedback_id) == 32 and confirmed.HasField("recorded_at")
    with pytest.raises(grpc.RpcError) as caught:  # a version the registry never held
        telemetry.RecordFeedback(
            telemetry_pb2.RecordFeedbackRequest(
                miner_id="10.7.0.1", verdict=telemetry_pb2.FEEDBACK_VERDICT_FALSE_ALARM, model_version="v7"
            )
        )
    assert violations(caught.value) == ("INVALID_ARGUMENT", ["model_version"])
    false_alarm = telemetry.RecordFeedback(
        telemetry_pb2.RecordFeedbackRequest(
            miner_id="10.7.0.1", verdict=telemetry_pb2.FEEDBACK_VERDICT_FALSE_ALARM
        )
    )
    stored = server.app.store.list_feedback("10.7.0.1")
    assert [(f["feedback_id"], f["verdict"], f["model_version"]) for f in stored] == [
        (false_alarm.feedback_id, 2, ""),
        (confirmed.feedback_id, 1, ""),
    ]


def test_feedback_without_a_verdict_is_invalid_argument(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        telemetry.RecordFeedback(telemetry_pb2.RecordFeedbackRequest(miner_id="10.7.0.1"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "verdict: must be FEEDBACK_VERDICT_CONFIRMED or FEEDBACK_VERDICT_FALSE_ALARM"
    )
    assert violations(caught.value) == ("INVALID_ARGUMENT", ["verdict"])


def test_feedback_on_an_unknown_miner_is_not_found(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    request = telemetry_pb2.RecordFeedbackRequest(
        miner_id="10.7.9.9", verdict=telemetry_pb2.FEEDBACK_VERDICT_CONFIRMED
    )
    with pytest.raises(grpc.RpcError) as caught:
        telemetry.RecordFeedback(request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no miner '10.7.9.9'" in caught.value.details()
