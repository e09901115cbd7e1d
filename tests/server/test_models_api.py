"""Training, prediction, detection and the model registry through REST, gRPC and grpcurl."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from mining.analytics.v1alpha1 import common_pb2, scoring_pb2, scoring_pb2_grpc

from server.models import ModelKind
from server.models.registry import ModelRegistry
from server.records import FEATURE_COLUMNS
from tests.conftest import STORE_ENGINES, trained, wait_for_job
from tests.harness import Stack, start_stack


@pytest.fixture(scope="module", params=STORE_ENGINES)
def trained_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, trained_stack: Stack
) -> Iterator[Stack]:
    """The documented contract on both store engines: the session's trained stack (DuckDB), then one
    trained the same way on a fresh PostgreSQL database."""
    if request.param == "duckdb":
        yield trained_stack
        return
    engine: dict[str, str] = request.getfixturevalue("postgres_store")
    with trained(Path(tmp_path_factory.mktemp("trained-pg")), **engine) as running:
        yield running


def test_status_shows_both_models_with_versions(trained_stack: Stack) -> None:
    body = trained_stack.rest("GET", "/api/advanced/status").json()
    assert body["lstm_model"] is True
    assert body["autoencoder"] is True
    assert body["anomaly_threshold"] > 0
    assert body["lstm_model_info"]["version"].startswith("lstm-")
    assert body["autoencoder_info"]["version"].startswith("autoencoder-")
    assert body["lstm_model_info"]["trained_at"].endswith("Z")


def test_predict_returns_the_documented_fields(trained_stack: Stack) -> None:
    reply = trained_stack.rest("GET", "/api/advanced/predict/failure-risk/192.168.1.100")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert 0.0 <= body["risk_score"] <= 1.0
    assert body["risk_level"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL")
    assert body["features_used"] == list(FEATURE_COLUMNS)
    assert body["model_type"] == "LSTM"
    assert body["window_samples"] > 0
    assert body["horizon_hours"] == 24
    assert body["risk_factors"] == []  # only on request


def test_predict_with_explain_ranks_risk_factors(trained_stack: Stack) -> None:
    body = trained_stack.rest("GET", "/api/advanced/predict/failure-risk/192.168.1.100?explain=true").json()
    factors = body["risk_factors"]
    assert {f["feature"] for f in factors} <= set(FEATURE_COLUMNS)
    importances = [f["importance"] for f in factors]
    assert importances == sorted(importances, reverse=True)
    assert all(0.0 <= i <= 1.0 for i in importances)
    assert any(f["fleet_norm"] > 0 for f in factors)


def test_detect_returns_the_documented_fields(trained_stack: Stack) -> None:
    body = trained_stack.rest("GET", "/api/advanced/detect/anomalies/192.168.1.100").json()
    assert len(body["is_anomaly"]) == len(body["anomaly_scores"]) == len(body["windows"]) > 0
    assert body["threshold"] > 0
    assert body["features_analyzed"] == list(FEATURE_COLUMNS)
    assert all(isinstance(flag, bool) for flag in body["is_anomaly"])
    assert [w["is_anomaly"] for w in body["windows"]] == body["is_anomaly"]
    # The decision: deviates from the miner's own baseline (k of n) and is not suppressed as context.
    assert [
        w["deviates"] and w["suppression"] == "ANOMALY_SUPPRESSION_UNSPECIFIED" for w in body["windows"]
    ] == (body["is_anomaly"])
    assert body["decision_scores"] == [w["decision_score"] for w in body["windows"]]
    assert body["decision_threshold"] == 4.0
    assert body["threshold"] == body["windows"][-1]["window_threshold"]
    assert body["site"] == "demo-row-1" and isinstance(body["site_events"], list)
    ends = [w["window_end"] for w in body["windows"]]
    assert ends == sorted(ends)
    assert all(0.0 <= w["confidence"] <= 1.0 for w in body["windows"])


def test_the_demo_miner_is_flagged_as_its_fan_fails_and_context_explains_the_rest(
    trained_stack: Stack,
) -> None:
    body = trained_stack.rest("GET", "/api/advanced/detect/anomalies/192.168.1.100").json()
    windows = body["windows"]
    # its fan slows over its last 18 h (temperature +12 C by the end): flagged at the end, not a day ago
    assert all(w["is_anomaly"] for w in windows[-6:]), [w["decision_score"] for w in windows[-6:]]
    assert not any(w["is_anomaly"] for w in windows[:24])
    assert {"temperature", "fan_speed", "temperature_trend"} & set(windows[-1]["top_features"])
    # every window that deviates but is not an anomaly says why
    for w in windows:
        if w["deviates"] and not w["is_anomaly"]:
            assert w["suppression"] != "ANOMALY_SUPPRESSION_UNSPECIFIED"


def test_detect_range_beyond_seven_days_is_invalid(trained_stack: Stack) -> None:
    reply = trained_stack.rest(
        "GET",
        "/api/advanced/detect/anomalies/192.168.1.100?start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z",
    )
    assert reply.status == 400
    assert reply.json()["message"].startswith("start")


def test_fleet_scores_are_sorted_and_complete(trained_stack: Stack) -> None:
    body = trained_stack.rest("GET", "/api/advanced/fleet/scores?top_k=3").json()
    assert body["miners_scored"] + body["miners_skipped"] == 8
    risks = [s["risk_score"] for s in body["scores"]]
    assert len(risks) == 3 and risks == sorted(risks, reverse=True)
    # The same miners' single predictions agree with the fleet pass.
    first = body["scores"][0]
    single = trained_stack.rest("GET", f"/api/advanced/predict/failure-risk/{first['miner_id']}").json()
    assert single["risk_score"] == pytest.approx(first["risk_score"], abs=1e-5)


def test_list_miners_sorts_by_latest_risk(trained_stack: Stack) -> None:
    trained_stack.rest("GET", "/api/advanced/fleet/scores")
    miners = trained_stack.rest("GET", "/api/advanced/miners").json()["miners"]
    risks = [m["risk_score"] for m in miners]
    assert risks == sorted(risks, reverse=True)
    assert all(m["risk_level"] != "RISK_LEVEL_UNSPECIFIED" for m in miners if m["sample_count"] > 300)


def test_concurrent_predictions_agree_with_single_ones(trained_stack: Stack) -> None:
    # Many requests at once are coalesced into shared forward passes; each still gets its own miner's score.
    stub = scoring_pb2_grpc.ScoringServiceStub(trained_stack.channel)
    miners = [f"192.168.1.{100 + i}" for i in range(8)]
    alone = {
        m: stub.PredictFailureRisk(scoring_pb2.PredictFailureRiskRequest(miner_id=m), timeout=60).risk_score
        for m in miners
    }
    futures = [
        (m, stub.PredictFailureRisk.future(scoring_pb2.PredictFailureRiskRequest(miner_id=m), timeout=60))
        for m in miners * 5
    ]
    for miner_id, future in futures:
        assert future.result().risk_score == pytest.approx(alone[miner_id], abs=1e-5)


def test_grpcurl_predicts(trained_stack: Stack) -> None:
    result = trained_stack.grpcurl(
        "mining.analytics.v1alpha1.ScoringService/PredictFailureRisk",
        flags=("-d", '{"miner_id": "192.168.1.100"}'),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model_type"] == "LSTM"


def test_models_are_listed_and_activation_of_unknown_version_is_not_found(trained_stack: Stack) -> None:
    models = trained_stack.rest("GET", "/api/advanced/models").json()["models"]
    assert {m["model_kind"] for m in models} == {"LSTM", "AUTOENCODER"}
    assert sum(m["active"] for m in models) == 2
    reply = trained_stack.rest("POST", "/api/advanced/models/lstm/lstm-nope/activate", {})
    assert reply.status == 404
    assert reply.json()["details"][0]["reason"] == "MODEL_VERSION_NOT_FOUND"


def test_activating_a_version_this_server_cannot_serve_is_refused(trained_stack: Stack) -> None:
    registry = ModelRegistry(trained_stack.server.app.settings.models_dir)
    active = registry.active_version(ModelKind.LSTM)
    checkpoint = dict(registry.load(ModelKind.LSTM).checkpoint)
    checkpoint["features_version"] = 1  # trained before the baselines restarted after idling
    old = registry.save({k: v for k, v in checkpoint.items() if k not in ("version", "created_at")})
    reply = trained_stack.rest("POST", f"/api/advanced/models/lstm/{old}/activate", {})
    assert reply.status == 400, reply.body
    assert reply.json()["details"][0]["reason"] == "MODEL_INCOMPATIBLE"
    assert "features version 1" in reply.json()["message"]
    assert registry.active_version(ModelKind.LSTM) == active
    assert trained_stack.rest("GET", "/api/advanced/predict/failure-risk/192.168.1.100").status == 200


def test_predict_of_a_miner_with_too_little_history_is_failed_precondition(trained_stack: Stack) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(trained_stack.channel)
    reply = trained_stack.rest(
        "PUT", "/api/advanced/miners/10.0.0.5", {"miner_id": "10.0.0.5", "hardware_model": "Antminer S19 Pro"}
    )
    assert reply.status == 200, reply.body
    with pytest.raises(grpc.RpcError) as caught:
        stub.PredictFailureRisk(scoring_pb2.PredictFailureRiskRequest(miner_id="10.0.0.5"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "needed" in caught.value.details()


def test_training_lifecycle_survives_restart_and_guards_duplicates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = start_stack(tmp_path)
    try:
        first = stack.rest("POST", "/api/advanced/train/lstm", {"epochs": 2, "request_id": "retry-1"})
        assert first.status == 200
        job = first.json()
        assert job["params"] == {"epochs": 2, "batch_size": 32, "validation_split": 0.2, "seed": 42}
        # A retried POST with the same request id returns the same job.
        again = stack.rest("POST", "/api/advanced/train/lstm", {"epochs": 2, "request_id": "retry-1"})
        assert again.json()["job_id"] == job["job_id"]
        # A second LSTM job while one runs is refused, naming the running job.
        second = stack.rest("POST", "/api/advanced/train/lstm", {"epochs": 2})
        if second.status == 409:
            assert job["job_id"] in second.json()["message"]
        done = wait_for_job(stack, job["job_id"])
        assert done["epoch"] >= 1 and done["promoted"] is True
        assert done["model_version"].startswith("lstm-")
        # Cancelling a finished job is a precondition failure.
        cancel = stack.rest("POST", f"/api/advanced/train/jobs/{job['job_id']}/cancel", {})
        assert cancel.status == 400 and cancel.json()["details"][0]["reason"] == "JOB_FINISHED"
        # A second model: the registry then allows a rollback to the first.
        newer = wait_for_job(
            stack, stack.rest("POST", "/api/advanced/train/lstm", {"epochs": 1, "seed": 9}).json()["job_id"]
        )
        rollback = stack.rest("POST", f"/api/advanced/models/lstm/{done['model_version']}/activate", {})
        assert rollback.status == 200 and rollback.json()["active"] is True
        status = stack.rest("GET", "/api/advanced/status").json()
        assert status["lstm_model_info"]["version"] == done["model_version"] != newer["model_version"]
    finally:
        stack.close()
    # After a restart the jobs are still there and the rolled-back model is still the active one.
    stack = start_stack(tmp_path)
    try:
        jobs = stack.rest("GET", "/api/advanced/train/jobs").json()["jobs"]
        assert job["job_id"] in [j["job_id"] for j in jobs]
        status = stack.rest("GET", "/api/advanced/status").json()
        assert status["lstm_model_info"]["version"] == done["model_version"]
    finally:
        stack.close()


def test_cancel_stops_a_running_job(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = start_stack(tmp_path, train_patience=100_000)  # no early stop: the job runs until stopped
    try:
        job = stack.rest("POST", "/api/advanced/train/autoencoder", {"epochs": 10000}).json()
        watch = stack.rest("GET", f"/api/advanced/train/jobs/{job['job_id']}", timeout=60).json()
        assert watch["state"] in ("JOB_STATE_QUEUED", "JOB_STATE_RUNNING")
        cancelled = stack.rest("POST", f"/api/advanced/train/jobs/{job['job_id']}/cancel", {}).json()
        assert cancelled["state"] == "JOB_STATE_CANCELLED"
        assert stack.rest("GET", "/api/advanced/status").json()["autoencoder"] is False
    finally:
        stack.close()


def test_watch_streams_epochs_through_envoy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = start_stack(tmp_path)
    try:
        job = stack.rest("POST", "/api/advanced/train/lstm", {"epochs": 3}).json()
        reply = stack.rest("GET", f"/api/advanced/train/jobs/{job['job_id']}/watch", timeout=300)
        assert reply.status == 200
        updates = [json.loads(line) for line in reply.body.decode().splitlines() if line.strip()]
        assert updates[-1]["state"] == "JOB_STATE_SUCCEEDED"
        epochs = [u["epoch"] for u in updates]
        assert epochs == sorted(epochs) and epochs[-1] >= 1
        assert any(u["val_loss"] > 0 for u in updates)
    finally:
        stack.close()


def test_unset_risk_level_never_reads_low() -> None:
    assert common_pb2.RiskLevel.Name(scoring_pb2.MinerScore().risk_level) == "RISK_LEVEL_UNSPECIFIED"


def test_one_training_job_at_a_time_keeps_a_core_for_serving(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = start_stack(tmp_path, train_patience=100_000)  # no early stop: the job runs until stopped
    try:
        long_job = stack.rest("POST", "/api/advanced/train/autoencoder", {"epochs": 10000}).json()
        deadline = time.monotonic() + 120
        while (
            stack.rest("GET", f"/api/advanced/train/jobs/{long_job['job_id']}").json()["state"]
            != "JOB_STATE_RUNNING"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        waiting = stack.rest("POST", "/api/advanced/train/lstm", {"epochs": 2}).json()
        time.sleep(1.0)
        queued = stack.rest("GET", f"/api/advanced/train/jobs/{waiting['job_id']}").json()
        assert queued["state"] == "JOB_STATE_QUEUED"
        assert "waits for the running training job" in queued["message"]
        cancelled = stack.rest("POST", f"/api/advanced/train/jobs/{waiting['job_id']}/cancel", {}).json()
        assert cancelled["state"] == "JOB_STATE_CANCELLED" and cancelled["epoch"] == 0
        stopped = stack.rest("POST", f"/api/advanced/train/jobs/{long_job['job_id']}/cancel", {}).json()
        assert stopped["state"] == "JOB_STATE_CANCELLED"
    finally:
        stack.close()


def test_a_job_running_at_shutdown_reads_interrupted_after_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = start_stack(tmp_path, train_patience=100_000)  # no early stop: the job runs until stopped
    try:
        job = stack.rest("POST", "/api/advanced/train/autoencoder", {"epochs": 10000}).json()
        deadline = time.monotonic() + 120
        while stack.rest("GET", f"/api/advanced/train/jobs/{job['job_id']}").json()["epoch"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stack.close()
    stack = start_stack(tmp_path)
    try:
        after = stack.rest("GET", f"/api/advanced/train/jobs/{job['job_id']}").json()
        assert after["state"] == "JOB_STATE_INTERRUPTED"
        assert after["epoch"] >= 1 and "server" in after["error"]
    finally:
        stack.close()


def test_fleet_anomaly_flags_follow_the_served_decision(trained_stack: Stack) -> None:
    """ListMiners (and the gauges and subscriptions fed by the same scores) flag a miner by the
    decision DetectAnomalies serves, not by a fixed threshold of its own."""
    trained_stack.rest("GET", "/api/advanced/fleet/scores")
    miners = {m["miner_id"]: m for m in trained_stack.rest("GET", "/api/advanced/miners").json()["miners"]}
    assert miners["192.168.1.100"]["is_anomaly"] is True  # its fan is failing (see the test above)
    for miner_id, miner in miners.items():
        if miner["risk_level"] == "RISK_LEVEL_UNSPECIFIED":
            continue  # too little history to score
        windows = trained_stack.rest("GET", f"/api/advanced/detect/anomalies/{miner_id}").json()["windows"]
        assert miner["is_anomaly"] == windows[-1]["is_anomaly"], miner_id
