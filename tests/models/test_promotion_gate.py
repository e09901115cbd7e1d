"""The promotion gate: no coin-flip model serves, the first version of a kind included."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from server.models import ModelKind
from server.models.calibration import event_recall, roc_auc_interval
from server.models.registry import PromotionGate, gate_failure, promotion
from tests.conftest import wait_for_job
from tests.harness import start_stack

GATE = PromotionGate(lstm_min_auc_lower=0.55, autoencoder_min_recall=0.5)


def test_an_lstm_whose_auc_interval_does_not_clear_chance_by_the_margin_is_refused() -> None:
    coin_flip = {"val_roc_auc_lo": 0.47, "val_roc_auc_hi": 0.56, "val_brier": 0.05}
    reason = gate_failure(ModelKind.LSTM, coin_flip, GATE)
    assert "[0.470, 0.560] does not clear 0.550" in reason
    assert gate_failure(ModelKind.LSTM, {"val_roc_auc_lo": 0.61, "val_roc_auc_hi": 0.7}, GATE) == ""
    # unmeasured (no failures among the validation miners) is refused too, unless the check is off
    assert gate_failure(ModelKind.LSTM, {"val_roc_auc_lo": math.nan}, GATE)
    assert gate_failure(ModelKind.LSTM, coin_flip, PromotionGate(0.0, 0.5)) == ""


def test_an_autoencoder_without_precursor_recall_at_its_threshold_is_refused() -> None:
    weak = {"val_precursor_recall": 0.3, "val_precursor_failures": 10.0}
    assert "precursor recall 0.30 on 10 validation failures" in gate_failure(
        ModelKind.AUTOENCODER, weak, GATE
    )
    assert gate_failure(ModelKind.AUTOENCODER, {"val_precursor_recall": 0.8}, GATE) == ""
    assert gate_failure(ModelKind.AUTOENCODER, {}, GATE)
    assert gate_failure(ModelKind.AUTOENCODER, weak, PromotionGate(0.55, 0.0)) == ""


def test_the_gate_applies_to_the_first_version_and_then_the_comparison_with_the_active_one() -> None:
    coin_flip = {"val_roc_auc_lo": 0.45, "val_roc_auc_hi": 0.58, "val_brier": 0.05}
    promoted, why = promotion(ModelKind.LSTM, coin_flip, None, GATE)  # no active model yet
    assert not promoted and why.startswith("not activated: the promotion gate failed: validation ROC-AUC")
    good = {"val_roc_auc_lo": 0.7, "val_roc_auc_hi": 0.8, "val_brier": 0.05}
    assert promotion(ModelKind.LSTM, good, None, GATE) == (True, "")
    assert promotion(ModelKind.LSTM, good, {"val_brier": 0.04}, GATE) == (
        False,
        "the active model is as good or better, kept it",
    )


def test_the_auc_interval_resamples_miners_and_brackets_the_auc() -> None:
    rng = np.random.default_rng(0)
    miners = np.repeat(np.arange(40), 50)
    labels = (rng.random(miners.size) < 0.2).astype(float)
    informative = labels + rng.normal(0.0, 0.8, miners.size)
    lo, hi = roc_auc_interval(informative, labels, miners)
    assert 0.7 < lo < hi < 0.95
    lo, hi = roc_auc_interval(rng.normal(size=miners.size), labels, miners)
    assert lo < 0.5 < hi  # a coin flip's interval covers chance


def test_event_recall_counts_failures_not_windows() -> None:
    ends = np.arange(12) * 300
    groups = np.array(["a"] * 6 + ["b"] * 6)
    labels = np.array([0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1], dtype=float)
    scores = np.array([9, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    assert event_recall(scores, labels, groups, ends, threshold=1.0) == (0.5, 2)
    assert math.isnan(event_recall(scores, np.zeros(12), groups, ends, 1.0)[0])


def test_a_model_that_fails_the_gate_is_registered_not_activated_and_status_and_job_say_why(
    tmp_path: Path,
) -> None:
    # A bar no model can reach: ROC-AUC interval's lower end >= 0.999.
    stack = start_stack(tmp_path, gate_lstm_min_auc_lower=0.999)
    try:
        reply = stack.rest("POST", "/api/advanced/train/lstm", {"epochs": 1, "seed": 3})
        assert reply.status == 200, reply.body
        job = wait_for_job(stack, reply.json()["job_id"])
        assert job["promoted"] is False
        assert "not activated: the promotion gate failed: validation ROC-AUC" in str(job["message"])
        status = stack.rest("GET", "/api/advanced/status").json()
        assert status["lstm_model"] is False
        info = status["lstm_model_info"]
        assert info["not_activated_version"] == job["model_version"]
        # The small demo fleet's one failing miner trains (a fifth of one miner rounds to none), so
        # validation holds no failure: the interval cannot be computed, and unverified is not served.
        assert "ROC-AUC could not be computed" in info["not_activated_reason"]
        models = stack.rest("GET", "/api/advanced/models").json()["models"]
        assert [(m["version"], m["active"]) for m in models if m["version"] == job["model_version"]] == [
            (job["model_version"], False)
        ]
        predict = stack.rest("GET", "/api/advanced/predict/failure-risk/192.168.1.100")
        assert predict.status == 400 and predict.json()["details"][0]["reason"] == "MODEL_NOT_TRAINED"
    finally:
        stack.close()
