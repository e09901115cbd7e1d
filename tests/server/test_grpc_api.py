"""The foundation RPCs through generated stubs: status, miners, and every documented error."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from mining.analytics.v1alpha1 import (
    common_pb2,
    fleet_pb2,
    fleet_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

from server.records import FEATURE_COLUMNS
from tests.harness import SMALL_FLEET, Stack, error_details


def test_status_reports_the_store_and_no_models(stack: Stack) -> None:
    status = fleet_pb2_grpc.FleetServiceStub(stack.channel).Status(fleet_pb2.StatusRequest(), timeout=30)
    assert status.lstm_model is False
    assert status.autoencoder is False
    assert status.anomaly_threshold == 0.0
    assert list(status.feature_columns) == list(FEATURE_COLUMNS)
    assert status.sequence_length == 24
    assert status.miners == SMALL_FLEET["demo_miners"]
    # 3 days of 5-minute samples per miner, less gaps and downtime.
    assert status.samples > SMALL_FLEET["demo_miners"] * 288 * 2
    assert status.data_start.ToDatetime() < status.data_end.ToDatetime()
    assert status.lstm_model_info.loaded is False


def test_list_miners_pages_cover_the_fleet_once(stack: Stack) -> None:
    stub = fleet_pb2_grpc.FleetServiceStub(stack.channel)
    seen: list[str] = []
    token = ""
    while True:
        page = stub.ListMiners(fleet_pb2.ListMinersRequest(page_size=3, page_token=token), timeout=30)
        seen += [m.miner_id for m in page.miners]
        assert page.total == SMALL_FLEET["demo_miners"]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == SMALL_FLEET["demo_miners"]
    assert "192.168.1.100" in seen


def test_get_miner_returns_its_record(stack: Stack) -> None:
    miner = fleet_pb2_grpc.FleetServiceStub(stack.channel).GetMiner(
        fleet_pb2.GetMinerRequest(miner_id="192.168.1.100"), timeout=30
    )
    assert miner.miner_id == "192.168.1.100"
    assert miner.hardware_model
    assert miner.nominal_hashrate_ths > 0
    assert miner.sample_count > 0
    assert miner.risk_level == common_pb2.RISK_LEVEL_UNSPECIFIED


def test_bad_page_token_is_invalid_argument(stack: Stack) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        fleet_pb2_grpc.FleetServiceStub(stack.channel).ListMiners(
            fleet_pb2.ListMinersRequest(page_token="not-a-token"), timeout=30
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in caught.value.details()


def test_unknown_miner_returns_not_found(stack: Stack) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(stack.channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.PredictFailureRisk(scoring_pb2.PredictFailureRiskRequest(miner_id="10.9.9.9"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "10.9.9.9" in caught.value.details()
    assert error_details(caught.value)[0] == "MINER_NOT_FOUND"


@pytest.mark.parametrize("miner_id", ["", "bad id with spaces", "x" * 200, "../etc/passwd"])
def test_malformed_miner_id_is_invalid_argument(stack: Stack, miner_id: str) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(stack.channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.DetectAnomalies(scoring_pb2.DetectAnomaliesRequest(miner_id=miner_id), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "miner_id" in caught.value.details()
    assert error_details(caught.value)[1] == ["miner_id"]


def test_predict_before_training_is_failed_precondition(stack: Stack) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(stack.channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.PredictFailureRisk(scoring_pb2.PredictFailureRiskRequest(miner_id="192.168.1.100"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # A gRPC caller is pointed at the method; a REST caller at the route (test_rest.py).
    assert "no trained LSTM model: TrainingService.Train" in caught.value.details()
    assert "/api/" not in caught.value.details()
    assert error_details(caught.value)[0] == "MODEL_NOT_TRAINED"
    assert _error_info(caught.value).metadata["next_step"] == "TrainingService.Train"  # for the CLI


def test_detect_before_training_is_failed_precondition(stack: Stack) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(stack.channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.DetectAnomalies(scoring_pb2.DetectAnomaliesRequest(miner_id="192.168.1.100"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no trained anomaly autoencoder: TrainingService.Train" in caught.value.details()
    assert error_details(caught.value)[0] == "MODEL_NOT_TRAINED"


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -5}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1_000_000}, "batch_size"),
        ({"validation_split": 0.0}, "validation_split"),
        ({"validation_split": 1.0}, "validation_split"),
        ({"validation_split": float("nan")}, "validation_split"),
    ],
)
def test_out_of_range_training_parameters_are_invalid_argument(
    stack: Stack, fields: dict[str, float], bad_field: str
) -> None:
    stub = training_pb2_grpc.TrainingServiceStub(stack.channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Train(training_pb2.TrainRequest(model_kind=common_pb2.LSTM, **fields), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(bad_field)
    assert error_details(caught.value)[1] == [bad_field]


def test_train_without_a_model_kind_is_invalid_argument(stack: Stack) -> None:
    stub = training_pb2_grpc.TrainingServiceStub(stack.channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Train(training_pb2.TrainRequest(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model_kind" in caught.value.details()


def test_unknown_job_is_not_found(stack: Stack) -> None:
    stub = training_pb2_grpc.TrainingServiceStub(stack.channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetTrainJob(training_pb2.GetTrainJobRequest(job_id="nope"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(caught.value)[0] == "JOB_NOT_FOUND"


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(info) for detail in status.details if detail.Is(info.DESCRIPTOR))
    return info
