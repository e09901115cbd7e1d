"""Platt scaling, Brier score and ROC-AUC."""

from __future__ import annotations

import numpy as np
import pytest

from server.models.calibration import PlattCalibration, brier_score, roc_auc


def test_platt_maps_into_unit_interval_and_preserves_order() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(4000) < 0.05
    raw = rng.normal(size=4000) + 2.0 * labels + 1.5  # over-confident raw logits, as after oversampling
    calibration = PlattCalibration.fit(raw, labels)
    grid = np.linspace(-50, 50, 1001)
    risk = calibration.apply(grid)
    assert ((risk >= 0) & (risk <= 1)).all()
    assert (np.diff(risk) >= 0).all()
    assert calibration.apply(raw).mean() == pytest.approx(labels.mean(), abs=0.005)  # base rate recovered
    assert brier_score(calibration.apply(raw), labels) < brier_score(1 / (1 + np.exp(-raw)), labels)


def test_platt_never_inverts_the_ranking() -> None:
    rng = np.random.default_rng(1)
    labels = rng.random(500) < 0.2
    calibration = PlattCalibration.fit(-3.0 * labels + rng.normal(size=500), labels)  # anti-correlated
    assert calibration.a == 0.0
    assert calibration.apply(np.array([0.0]))[0] == pytest.approx(labels.mean(), abs=0.01)


def test_platt_is_finite_with_a_single_class() -> None:
    calibration = PlattCalibration.fit(np.array([1.0, 2.0, 3.0]), np.array([0, 0, 0]))
    assert np.isfinite([calibration.a, calibration.b]).all()
    assert PlattCalibration.from_dict(calibration.to_dict()) == calibration


def test_roc_auc_handles_ties_and_single_class() -> None:
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))
