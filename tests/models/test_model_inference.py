"""Serving: training/serving parity, calibrated batches, explanations, anomaly scores."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from synthetic_fleet import T0, Fleet, flat_series

from server.errors import InsufficientHistory
from server.models.explain import RiskFactor, likely_failure_mode
from server.models.features import FEATURES_VERSION, INPUT_SCHEMA
from server.models.inference import AnomalyScorer, FailureRiskPredictor
from server.models.registry import ModelRegistry
from server.models.windows import WindowSet
from server.records import FEATURE_COLUMNS, FailureMode, Miner


@pytest.fixture(scope="module")
def predictor(trained: dict[str, object]) -> FailureRiskPredictor:
    registry = trained["registry"]
    assert isinstance(registry, ModelRegistry)
    return FailureRiskPredictor.from_registry(registry)


@pytest.fixture(scope="module")
def scorer(trained: dict[str, object]) -> AnomalyScorer:
    registry = trained["registry"]
    assert isinstance(registry, ModelRegistry)
    return AnomalyScorer.from_registry(registry)


def test_serving_windows_equal_training_windows(
    fleet: Fleet, trained: dict[str, object], predictor: FailureRiskPredictor
) -> None:
    windows = trained["windows"]
    assert isinstance(windows, WindowSet)
    index = int(np.flatnonzero(windows.miner_ids == "10.0.0.3")[7])
    end = windows.window_ends[index].astype(object).replace(tzinfo=T0.tzinfo)
    batch = predictor.prepare(fleet.series["10.0.0.3"], fleet.miners["10.0.0.3"], end=end, latest_only=True)
    expected = predictor.norm.apply(windows.gather(np.array([index])))
    assert batch.x.shape == (1, 24, len(INPUT_SCHEMA))
    assert np.array_equal(batch.x, expected)
    assert batch.window_ends[0] == windows.window_ends[index]


def test_predict_returns_calibrated_risk_per_window(fleet: Fleet, predictor: FailureRiskPredictor) -> None:
    batch = predictor.prepare(fleet.series["10.0.0.1"], fleet.miners["10.0.0.1"])
    risk = predictor.predict(batch.x)
    assert risk.shape == (batch.x.shape[0],) and ((risk >= 0) & (risk <= 1)).all()
    assert np.allclose(predictor.predict(batch.x[5:6]), risk[5:6], atol=1e-6)  # batching changes nothing
    assert predictor.horizon_hours == 24.0 and predictor.feature_columns == list(FEATURE_COLUMNS)


def test_explain_ranks_features_with_shares_and_recent_values(
    fleet: Fleet, predictor: FailureRiskPredictor
) -> None:
    series = fleet.series["10.0.0.1"]
    batch = predictor.prepare_latest(series, fleet.miners["10.0.0.1"])
    factors = predictor.explain(batch)
    assert sorted(f.feature for f in factors) == sorted(FEATURE_COLUMNS)
    importances = [f.importance for f in factors]
    assert importances == sorted(importances, reverse=True)
    assert all(0 <= i <= 1 for i in importances) and sum(importances) == pytest.approx(1.0, abs=1e-6)
    temperature = next(f for f in factors if f.feature == "temperature")
    assert temperature.unit == "C"
    assert temperature.recent_value == pytest.approx(float(np.nanmean(series.values[-6:, 1])), rel=1e-5)
    assert isinstance(predictor.likely_failure_mode(factors), FailureMode)


def factor(name: str, importance: float, **channels: float) -> RiskFactor:
    return RiskFactor(name, importance, 0.0, "", 0.0, channels)


def test_likely_failure_mode_reads_each_modes_signature() -> None:
    # Risk carried by the hashing features; the channels tell a failing PSU from a lost board.
    def hashing(**channels: float) -> list[RiskFactor]:
        return [factor("power", 0.6, **channels), factor("hashrate", 0.3), factor("temperature", 0.1)]

    assert likely_failure_mode(hashing(power_noise_6h=3.0, power_vs_median=-0.5)) == FailureMode.PSU
    lost_board = hashing(power_noise_6h=4.0, power_vs_median=-5.0, hashrate_vs_median=-6.0)
    assert likely_failure_mode(lost_board) == FailureMode.HASH_BOARD
    assert likely_failure_mode(hashing(hashrate_down_6h=5.0, power_noise_6h=9.0)) == FailureMode.REBOOT_LOOP
    # Hot against its own past: fans that answer mean heat from outside, fans that do not a fan.
    hot = [
        factor("temperature", 0.7, temperature_vs_yesterday=6.0),
        factor("fan_speed", 0.3, fan_vs_median=0.2),
    ]
    assert likely_failure_mode(hot) == FailureMode.FAN
    cooled = [
        factor("temperature", 0.7, temperature_vs_yesterday=6.0),
        factor("fan_speed", 0.3, fan_vs_median=2.5),
    ]
    assert likely_failure_mode(cooled) == FailureMode.THERMAL
    # A hot miner throttles: its hashrate and power drop too, and that is not a lost board.
    throttled = hashing(power_vs_median=-5.0, hashrate_vs_median=-6.0) + [
        factor("temperature", 0.0, temperature_vs_yesterday=8.0)
    ]
    assert likely_failure_mode(throttled) == FailureMode.FAN
    # Rejected shares: at full hashrate the pool, with hashrate lost the chips.
    rejecting = [factor("rejection_rate", 0.7, rejection_rate_6h=5.0), factor("hashrate", 0.3)]
    assert likely_failure_mode(rejecting) == FailureMode.POOL
    chips = [
        factor("rejection_rate", 0.5, rejection_rate_6h=5.0),
        factor("hashrate", 0.5, hashrate_ratio=-3.0),
    ]
    assert likely_failure_mode(chips) == FailureMode.CHIP
    # No signature, or one whose features carry too little of the risk: no mode.
    assert likely_failure_mode(hashing()) == FailureMode.UNSPECIFIED
    weak = [factor("temperature", 0.9), factor("power", 0.1, power_noise_6h=3.0)]
    assert likely_failure_mode(weak) == FailureMode.UNSPECIFIED


def test_too_short_or_too_sparse_history_is_insufficient(predictor: FailureRiskPredictor) -> None:
    miner = Miner("m1", "S19", "Bitmain", 100.0, 3250.0)
    with pytest.raises(InsufficientHistory, match="23 sample"):
        predictor.prepare_latest(flat_series("m1", 23), miner)
    sparse = flat_series("m1", 100)
    sparse.observed[-20:] = False
    sparse.values[-20:] = np.nan
    with pytest.raises(InsufficientHistory, match="4 sample"):
        predictor.prepare_latest(sparse, miner)


def test_anomaly_scores_thresholds_confidence_and_top_features(fleet: Fleet, scorer: AnomalyScorer) -> None:
    start = T0 + timedelta(days=1)
    batch = scorer.prepare(
        fleet.series["10.0.0.1"], fleet.miners["10.0.0.1"], start, start + timedelta(hours=6)
    )
    assert batch.x.shape == (73, 24, len(INPUT_SCHEMA))
    scores = scorer.score(batch.x)
    assert scores.shape == (73,) and (scores >= 0).all()
    assert np.array_equal(scorer.is_anomaly(scores), scores > scorer.threshold)
    confidence = scorer.confidence(scores)
    assert ((confidence >= 0) & (confidence <= 1)).all()
    order = np.argsort(scores)
    assert (np.diff(confidence[order]) >= 0).all()
    assert scorer.confidence(np.array([0.0, np.inf])).tolist() == [0.0, 1.0]
    top = scorer.top_features(scorer.channel_errors(batch.x[:2]), k=3)
    assert len(top) == 2 and all(len(t) == 3 and set(t) <= set(FEATURE_COLUMNS) for t in top)


def test_a_broken_sensor_scores_as_more_anomalous(fleet: Fleet, scorer: AnomalyScorer) -> None:
    series = fleet.series["10.0.0.2"]
    miner = fleet.miners["10.0.0.2"]
    batch = scorer.prepare(series, miner, latest_only=True)
    broken = batch.x.copy()
    broken[0, :, 2] = -8.0  # fan speed channel pinned far below normal
    normal = scorer.score(batch.x)
    assert scorer.score(broken)[0] > normal[0]
    assert scorer.top_features(scorer.channel_errors(broken), k=1) == [["fan_speed"]]


def test_a_model_trained_on_other_features_is_refused(trained: dict[str, object], tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = trained["registry"]
    assert isinstance(registry, ModelRegistry)
    checkpoint = dict(registry.load(FailureRiskPredictor.kind).checkpoint)
    assert checkpoint["features_version"] == FEATURES_VERSION
    del checkpoint["features_version"]  # as written before versions were recorded (version 1)
    other = ModelRegistry(tmp_path)
    version = other.save({k: v for k, v in checkpoint.items() if k not in ("version", "created_at")})
    with pytest.raises(
        ValueError, match=f"features version 1, this server computes version {FEATURES_VERSION}"
    ):
        FailureRiskPredictor.from_registry(other, version)
