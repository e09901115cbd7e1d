"""What a finished training job says about its validation: how the validation part was chosen, and
which quality figures it could not compute for want of failures, with what that means for promotion.

Worded from the run's metrics (`split_by_time`, `train_miners`, `val_miners`, `val_failure_windows`;
see server/models/train.py) for the job's message, next to the promotion note.
"""

from __future__ import annotations

import math

from server.models import ModelKind
from server.models.registry import PromotionGate

NEEDS_VALIDATION_FAILURES: dict[ModelKind, tuple[str, ...]] = {
    ModelKind.LSTM: ("val_roc_auc", "val_roc_auc_lo", "val_roc_auc_hi"),
    ModelKind.AUTOENCODER: ("val_failure_roc_auc", "val_prefailure_anomaly_rate"),
}
"""The quality figures that need failure windows in the validation part, per model kind."""


def split_note(metrics: dict[str, float], validation_split: float) -> str:
    """How the validation part was chosen."""
    share = f"{validation_split * 100:g} %"
    train, val = int(metrics.get("train_miners", 0)), int(metrics.get("val_miners", 0))
    if metrics.get("split_by_time"):
        miners = "1 miner is" if val == 1 else f"{val} miners are"
        return (
            f"validation: the last {share} of each miner's history ({miners} too few to hold out "
            f"{share} of the miners whole)"
        )
    return f"validation: {val} of {train + val} miners held out whole"


def missing_figures_note(kind: ModelKind, metrics: dict[str, float], gate: PromotionGate) -> str:
    """Which quality figures could not be computed (no failure in the validation part) and what that
    means for promotion; "" when the validation part holds a failure."""
    if metrics.get("val_failure_windows", 0) > 0:
        return ""
    missing = ", ".join(NEEDS_VALIDATION_FAILURES[kind])
    said = f"the validation part holds no failure: {missing} could not be computed (left out of metrics)"
    if kind == ModelKind.LSTM:
        if gate.lstm_min_auc_lower > 0:
            return (
                f"{said}; the promotion gate needs val_roc_auc_lo, so this version is not activated until "
                "a validation part holds failures (record failures, or --gate-lstm-min-auc-lower 0 "
                "serves a model checked on val_brier only)"
            )
        return (
            f"{said}; the promotion gate is off (--gate-lstm-min-auc-lower 0): promotion compares val_brier"
        )
    recall = metrics.get("val_precursor_recall", math.nan)
    if math.isfinite(recall):
        failures = int(metrics.get("val_precursor_failures", 0))
        return f"{said}; promotion rests on val_precursor_recall over every miner's failures ({failures})"
    if gate.autoencoder_min_recall > 0:
        return (
            f"{said}, nor val_precursor_recall (no failure recorded); the promotion gate needs it, so this "
            "version is not activated (record failures, or --gate-autoencoder-min-recall 0 serves it "
            "unverified)"
        )
    return f"{said}; the promotion gate is off (--gate-autoencoder-min-recall 0): promotion compares val_loss"
