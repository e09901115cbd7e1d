"""Training: reproducibility, progress, early stopping, cancellation, validation-only thresholds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch
from synthetic_fleet import TINY_TRAIN, Fleet

from server.errors import FailedPrecondition
from server.models import ModelKind
from server.models.autoencoder import LSTMAutoencoder
from server.models.features import NormStats
from server.models.registry import build_module
from server.models.result import TrainingResult
from server.models.train import TrainConfig, TrainingCancelled, train_autoencoder, train_failure_model
from server.models.windows import WindowSet, build_windows, split_by_miner


@pytest.fixture(scope="module")
def windows(fleet: Fleet) -> WindowSet:
    return build_windows(fleet.series, fleet.miners, fleet.failures, fleet.planned)


def test_same_seed_gives_identical_weights_and_losses(windows: WindowSet) -> None:
    first = train_failure_model(windows, TrainConfig(**TINY_TRAIN, seed=5))
    second = train_failure_model(windows, TrainConfig(**TINY_TRAIN, seed=5))
    assert first.state_dict.keys() == second.state_dict.keys()
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    for key in ("val_loss", "val_brier", "best_epoch"):
        assert first.metrics[key] == second.metrics[key]
    other = train_failure_model(windows, TrainConfig(**TINY_TRAIN, seed=6))
    assert not torch.equal(first.state_dict["head.weight"], other.state_dict["head.weight"])


def test_progress_reports_each_epoch_and_best_weights_are_kept(windows: WindowSet) -> None:
    reports: list[tuple[int, int, float, float, float]] = []
    cfg = TrainConfig(**{**TINY_TRAIN, "epochs": 4, "patience": 100})
    result = train_failure_model(windows, cfg, progress=lambda *args: reports.append(args))
    assert [r[0] for r in reports] == [1, 2, 3, 4] and all(r[1] == 4 for r in reports)
    assert all(r[4] > 0 and np.isfinite(r[2]) for r in reports)
    best = min(range(4), key=lambda i: reports[i][3])
    assert result.metrics["best_epoch"] == best + 1
    assert result.metrics["val_loss"] == pytest.approx(reports[best][3])
    assert 0.0 <= result.metrics["val_brier"] <= 1.0
    assert result.calibration is not None and result.calibration.a >= 0


def test_patience_stops_training_early(windows: WindowSet) -> None:
    reports: list[int] = []
    cfg = TrainConfig(**{**TINY_TRAIN, "epochs": 50, "patience": 1})
    result = train_failure_model(windows, cfg, progress=lambda epoch, *_: reports.append(epoch))
    assert len(reports) < 50 and result.metrics["epochs_run"] == len(reports)


def test_should_stop_cancels_between_batches_and_restores_threads(windows: WindowSet) -> None:
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    threads = torch.get_num_threads()
    with pytest.raises(TrainingCancelled):
        train_autoencoder(windows, TrainConfig(**TINY_TRAIN, threads=1), should_stop=should_stop)
    assert calls == 4
    assert torch.get_num_threads() == threads


def test_autoencoder_threshold_comes_from_healthy_validation_windows(windows: WindowSet) -> None:
    cfg = TrainConfig(**TINY_TRAIN)
    result = train_autoencoder(windows, cfg)
    train, val = split_by_miner(windows, cfg.validation_split, cfg.seed)
    assert result.metrics["train_windows"] == train.healthy.sum()
    healthy_val = val.subset(val.healthy)
    model = build_module(ModelKind.AUTOENCODER, result.model_args).eval()
    model.load_state_dict(result.state_dict)
    norm = NormStats.fit(windows.channels, train.subset(train.healthy).covered_rows())
    assert np.allclose(norm.mean, result.norm.mean)  # statistics from the training split only
    x = torch.from_numpy(norm.apply(healthy_val.gather(np.arange(len(healthy_val)))))
    with torch.inference_mode():
        errors = np.sort(LSTMAutoencoder.errors(x, model(x)).mean(dim=1).numpy())
    assert result.threshold == pytest.approx(float(np.quantile(errors, 0.99)), rel=1e-4)
    assert result.val_errors == pytest.approx(errors.tolist(), rel=1e-4)


def test_no_failures_in_training_is_a_failed_precondition(fleet: Fleet) -> None:
    healthy_only = build_windows(fleet.series, fleet.miners, [], fleet.planned)
    with pytest.raises(FailedPrecondition, match="failure"):
        train_failure_model(healthy_only, TrainConfig(**TINY_TRAIN))


@pytest.mark.parametrize("train", [train_failure_model, train_autoencoder], ids=["lstm", "autoencoder"])
def test_both_models_share_the_loop_progress_patience_and_cancel(
    windows: WindowSet, train: Callable[..., TrainingResult]
) -> None:
    reports: list[tuple[int, int, float, float, float]] = []
    cfg = TrainConfig(**{**TINY_TRAIN, "epochs": 30, "patience": 1})
    result = train(windows, cfg, progress=lambda *args: reports.append(args))
    epochs = [r[0] for r in reports]
    assert epochs == list(range(1, len(reports) + 1)) and len(reports) < 30  # stopped early
    assert result.metrics["epochs_run"] == len(reports)
    best = min(range(len(reports)), key=lambda i: reports[i][3])
    assert result.metrics["best_epoch"] == best + 1
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2

    with pytest.raises(TrainingCancelled, match="epoch 1"):
        train(windows, cfg, should_stop=should_stop)
    assert calls == 3


def test_too_few_healthy_windows_is_a_failed_precondition(windows: WindowSet) -> None:
    unhealthy = replace(windows, healthy=np.zeros_like(windows.healthy))
    with pytest.raises(FailedPrecondition, match="healthy windows") as raised:
        train_autoencoder(unhealthy, TrainConfig(**TINY_TRAIN))
    assert raised.value.reason == "INSUFFICIENT_TRAINING_DATA"
