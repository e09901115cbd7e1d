"""Training from what a user has: a fleet too small to hold out whole miners validates on the last part
of each miner's history and says so in the job; a validation part without failures says which quality
figures could not be computed and what that means for promotion."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import wait_for_job
from tests.harness import Stack, start_stack


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def one_miner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One simulated miner, five days, with a PSU failure recorded three days ago (repaired 2 h later);
    the LSTM's promotion gate on (the suite turns it off)."""
    running = start_stack(
        Path(tmp_path_factory.mktemp("one-miner")),
        demo_miners=1,
        demo_days=5.0,
        demo_seed=3,
        gate_lstm_min_auc_lower=0.55,
    )
    try:
        occurred = datetime.now(UTC) - timedelta(days=3)
        reply = running.rest(
            "POST",
            "/api/advanced/failures",
            {
                "miner_id": "192.168.1.100",
                "occurred_at": _iso(occurred),
                "repaired_at": _iso(occurred + timedelta(hours=2)),
                "mode": "FAILURE_MODE_PSU",
            },
        )
        assert reply.status == 200, reply.body
        yield running
    finally:
        running.close()


def _train(stack: Stack, kind: str) -> dict[str, object]:
    reply = stack.rest("POST", f"/api/advanced/train/{kind}", {"epochs": 1, "seed": 5})
    assert reply.status == 200, reply.body
    return wait_for_job(stack, reply.json()["job_id"])


def test_one_miner_trains_on_the_last_part_of_its_history_and_says_so(one_miner: Stack) -> None:
    job = _train(one_miner, "lstm")
    metrics = job["metrics"]
    assert isinstance(metrics, dict)
    assert (metrics["split_by_time"], metrics["train_miners"], metrics["val_miners"]) == (1, 1, 1)
    assert metrics["val_windows"] > 0 and metrics["train_failure_windows"] > 0
    message = str(job["message"])
    assert "validation: the last 20 % of each miner's history" in message
    assert "1 miner is too few to hold out 20 % of the miners whole" in message


def test_validation_without_failures_names_the_missing_figures_and_the_promotion(one_miner: Stack) -> None:
    job = _train(one_miner, "lstm")
    metrics = job["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["val_failure_windows"] == 0
    # Not reported as 0 (a terrible model): left out, and named.
    assert not {"val_roc_auc", "val_roc_auc_lo", "val_roc_auc_hi"} & set(metrics)
    message = str(job["message"])
    assert "the validation part holds no failure" in message
    assert "val_roc_auc, val_roc_auc_lo, val_roc_auc_hi could not be computed" in message
    assert "not activated" in message and "--gate-lstm-min-auc-lower" in message
    assert job["promoted"] is False


def test_two_miners_both_train_and_validate_on_their_history(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, demo_miners=2, demo_days=4.0, demo_seed=3)
    try:
        job = _train(stack, "autoencoder")
    finally:
        stack.close()
    metrics = job["metrics"]
    assert isinstance(metrics, dict)
    # 10 % of 2 miners is no whole miner: neither is held out; each validates on its last 10 %.
    assert (metrics["split_by_time"], metrics["train_miners"], metrics["val_miners"]) == (1, 2, 2)
    assert "validation: the last 10 % of each miner's history" in str(job["message"])


def test_a_fleet_large_enough_holds_out_whole_miners(trained_stack: Stack) -> None:
    jobs = trained_stack.rest("GET", "/api/advanced/train/jobs").json()["jobs"]
    lstm = next(j for j in jobs if j["model_kind"] == "LSTM")
    assert lstm["metrics"]["split_by_time"] == 0
    assert lstm["metrics"]["train_miners"] + lstm["metrics"]["val_miners"] == 8
    assert "of 8 miners held out whole" in lstm["message"]
