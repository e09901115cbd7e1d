"""Training of the failure-risk LSTM and the anomaly autoencoder from a `WindowSet`.

An epoch is one pass over a SAMPLED set of at most `samples_per_epoch` training windows (default
8192), drawn afresh each epoch, not over every window: the demo fleet (200 miners x 30 days) has
~1.2M training windows and batch-32 steps run at ~5-6k windows/s on one core, so full passes would
take hours; sampled, the LSTM needs <= ~1.5 min and the autoencoder <= ~2.5 min even without early
stopping. The LSTM's sample keeps the natural class mix (failure windows are ~5 %): the loss, the
Brier score, is a proper scoring rule, so the imbalance needs no re-weighting for the ranking, and
Platt scaling on the validation split makes the output P(failure within H). Over-sampling failures
(a share of each sample, half before; the option is gone) was measured worse: it starves each epoch
of the rare negatives that look alarming (pool incidents, near misses, repairs): mean test ROC-AUC
over bench.quality seeds 0-2 (200 miners each) was 0.77 at a 0.5 share, 0.81 at 0.1, 0.82 at 0.03
and 0.81 at the natural mix. Validation never shares a miner with training, unless the fleet is too
small to hold out whole miners: then it is the last part of each miner's history
(windows.split_for_validation). Runs are reproducible:
fixed seeds and a fixed torch thread count (torch.set_num_threads is process-wide; it is restored
afterwards).

Both models share one skeleton (`_train`: split, normalise on the training split, the epoch
loop `_fit` with early stopping, progress and cancellation, then metrics); a `_Recipe` holds what
differs: which windows it learns from, the model, the epoch's draw, the per-window loss and the
metrics and checkpoint fields after training.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from server.errors import FailedPrecondition
from server.models import ModelKind
from server.models.autoencoder import AutoencoderConfig, LSTMAutoencoder
from server.models.calibration import PlattCalibration, brier_score, event_recall, roc_auc, roc_auc_interval
from server.models.features import N_CHANNELS, NormStats
from server.models.lstm import FailureRiskConfig, FailureRiskLSTM
from server.models.result import TrainingResult
from server.models.train_config import AUTOENCODER_DEFAULTS, TrainConfig
from server.models.windows import ValidationSplit, WindowSet, split_for_validation

ProgressFn = Callable[[int, int, float, float, float], None]  # epoch, epochs, train, val, windows/s
StopFn = Callable[[], bool]
# Scores the active model on this run's validation split (FailureRiskPredictor.evaluate or
# AnomalyScorer.evaluate), so the promotion gate compares both models on the same windows.
IncumbentFn = Callable[[WindowSet], float]
# A model's per-window loss (n,) of a batch of windows (n, T, C) and their labels (n,).
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingCancelled(Exception):
    """should_stop() returned True; no model was produced."""


def _fit(
    model: nn.Module,
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    draw_epoch: Callable[[], np.ndarray],
    val_loss: Callable[[], float],
    cfg: TrainConfig,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
) -> dict[str, float]:
    """Adam + early stopping; restores the best weights. Returns loop statistics."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    best_loss, best_epoch, best_state, stale = float("inf"), 0, None, 0
    seen, started, epoch = 0, time.perf_counter(), 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order, total = draw_epoch(), 0.0
        for lo in range(0, order.shape[0], cfg.batch_size):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"cancelled during epoch {epoch}")
            loss = batch_loss(order[lo : lo + cfg.batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * min(cfg.batch_size, order.shape[0] - lo)
        seen += order.shape[0]
        current = val_loss()
        rate = seen / max(time.perf_counter() - started, 1e-9)
        if progress is not None:
            progress(epoch, cfg.epochs, total / max(order.shape[0], 1), current, rate)
        if current < best_loss - 1e-6:
            best_loss, best_epoch, stale = current, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {
        "val_loss": best_loss,
        "best_epoch": best_epoch,
        "epochs_run": epoch,
        "samples_per_second": seen / max(time.perf_counter() - started, 1e-9),
    }


class _Batches:
    """Normalised channels on the device; gathers (n, T, C) windows by index."""

    def __init__(self, windows: WindowSet, norm: NormStats, device: torch.device) -> None:
        self.table = torch.from_numpy(norm.apply(windows.channels)).to(device)  # (R, C)
        self.offsets = torch.arange(windows.config.sequence_length, device=device)  # (T,)
        self.device = device

    def __call__(self, subset: WindowSet, index: np.ndarray) -> torch.Tensor:
        starts = torch.from_numpy(subset.starts[index]).to(self.device)
        return self.table[starts[:, None] + self.offsets]  # (n, T, C)

    def _chunks(
        self, subset: WindowSet, index: np.ndarray | None, batch: int
    ) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        index = np.arange(len(subset)) if index is None else index
        for lo in range(0, index.shape[0], batch):
            at = index[lo : lo + batch]
            yield self(subset, at), at  # (n, T, C), (n,)

    def outputs(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        subset: WindowSet,
        index: np.ndarray | None = None,
        batch: int = 1024,
    ) -> np.ndarray:
        """fn of `subset`'s windows at `index` (all by default), in batches, without gradients."""
        with torch.inference_mode():
            parts = [fn(x).float().cpu().numpy() for x, _ in self._chunks(subset, index, batch)]
        return np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)

    def losses(
        self,
        loss: LossFn,
        model: nn.Module,
        subset: WindowSet,
        index: np.ndarray,
        batch: int = 1024,
    ) -> np.ndarray:
        """(n,) per-window loss of `subset`'s windows at `index`, in batches, without gradients."""
        with torch.inference_mode():
            parts = [
                loss(model, x, torch.from_numpy(subset.labels[at]).to(self.device)).float().cpu().numpy()
                for x, at in self._chunks(subset, index, batch)
            ]
        return np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)


def _setup(cfg: TrainConfig) -> tuple[torch.device, np.random.Generator, int]:
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return device, np.random.default_rng(cfg.seed), previous


@dataclass(frozen=True)
class _Run:
    """One training run's windows and gatherer: what a recipe's `finish` reads."""

    windows: WindowSet  # every window; the norm stats and the checkpoint's data range come from it
    train: WindowSet  # the windows the model learns from
    val: WindowSet  # the windows early stopping and the threshold/calibration use
    val_all: WindowSet  # the whole validation split (the autoencoder's `val` keeps healthy ones only)
    batches: _Batches
    cfg: TrainConfig


@dataclass(frozen=True)
class _Recipe:
    """What differs between the two models; `_train` is the skeleton they share."""

    kind: ModelKind
    select: Callable[[WindowSet], WindowSet]  # the windows of a split this model learns from
    shortage: Callable[[WindowSet, WindowSet], str | None]  # why (train, val) cannot train, or None
    build: Callable[[], nn.Module]
    draw: Callable[[np.random.Generator, int, int], np.ndarray]  # rng, windows, per epoch -> (n,) index
    loss: LossFn  # the batch loss is its mean; so is the validation loss
    # Metrics after training and TrainingResult.build's model-specific fields.
    finish: Callable[[nn.Module, _Run], tuple[dict[str, float], dict[str, Any]]]
    incumbent_metric: str  # the metric the incumbent's score on `val_all` is stored under


def _train(
    recipe: _Recipe,
    windows: WindowSet,
    cfg: TrainConfig,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
    incumbent: IncumbentFn | None,
) -> TrainingResult:
    """Split (by miner, or by time when miners are too few), normalise on the training split, fit,
    then the recipe's metrics."""
    split = split_for_validation(windows, cfg.validation_split, cfg.seed)
    train_all, val_all = split.train, split.val
    train, val = recipe.select(train_all), recipe.select(val_all)
    shortage = recipe.shortage(train, val)
    if shortage is not None:
        raise FailedPrecondition(shortage, reason="INSUFFICIENT_TRAINING_DATA")
    device, rng, previous = _setup(cfg)
    try:
        norm = NormStats.fit(windows.channels, train.covered_rows())
        batches = _Batches(windows, norm, device)
        model = recipe.build().to(device)
        per_epoch = min(cfg.samples_per_epoch, len(train))
        val_sub = rng.permutation(len(val))[: cfg.val_windows_per_epoch]  # fixed for every epoch

        def batch_loss(index: np.ndarray) -> torch.Tensor:
            target = torch.from_numpy(train.labels[index]).to(device)
            return recipe.loss(model, batches(train, index), target).mean()

        def val_loss() -> float:
            model.eval()
            return float(batches.losses(recipe.loss, model, val, val_sub).mean())

        def draw_epoch() -> np.ndarray:
            return recipe.draw(rng, len(train), per_epoch)

        stats = _fit(model, batch_loss, draw_epoch, val_loss, cfg, progress, should_stop)
        run = _Run(windows=windows, train=train, val=val, val_all=val_all, batches=batches, cfg=cfg)
        metrics, extra = recipe.finish(model, run)
        metrics = {**stats, **metrics, **_split_metrics(split)}
        if incumbent is not None:
            metrics[recipe.incumbent_metric] = incumbent(val_all)
        return TrainingResult.build(recipe.kind, model, windows, cfg, norm, metrics, **extra)
    finally:
        torch.set_num_threads(previous)


def _split_metrics(split: ValidationSplit) -> dict[str, float]:
    """How validation was chosen, as job metrics (the worker words them for the job's message)."""
    return {
        "split_by_time": float(split.by_time),
        "train_miners": float(np.unique(split.train.miner_ids).size),
        "val_miners": float(np.unique(split.val.miner_ids).size),
        "val_failure_windows": float(np.count_nonzero(split.val.labels > 0)),
    }


# --- the failure-risk LSTM: Brier loss on the natural class mix, Platt-calibrated on validation ---


def _failure_shortage(train: WindowSet, val: WindowSet) -> str | None:
    if int(train.labels.sum()) > 0 and len(val) > 0:
        return None
    return (
        f"need failure windows in training and some validation windows; have {len(train)} training "
        f"({int(train.labels.sum())} failures), {len(val)} validation: record failure events or "
        "add history"
    )


def _brier(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (model(x) - labels) ** 2  # (n,)


def _failure_finish(model: nn.Module, run: _Run) -> tuple[dict[str, float], dict[str, Any]]:
    val = run.val
    raw_logits = run.batches.outputs(cast(FailureRiskLSTM, model).logits, val)
    calibration = PlattCalibration.fit(raw_logits, val.labels)
    risk = calibration.apply(raw_logits)
    thin = np.arange(0, len(val), 6)  # every 30 min: neighbouring windows overlap, and it is 6x cheaper
    auc_lo, auc_hi = roc_auc_interval(
        raw_logits[thin], val.labels[thin], val.miner_ids[thin], seed=run.cfg.seed
    )
    metrics = {
        "val_brier": brier_score(risk, val.labels),
        "val_roc_auc": roc_auc(raw_logits, val.labels),
        "val_roc_auc_lo": auc_lo,
        "val_roc_auc_hi": auc_hi,
        "val_failure_rate": float(val.labels.mean()),
        "val_windows": float(len(val)),
        "train_windows": float(len(run.train)),
        "train_failure_windows": float(np.count_nonzero(run.train.labels > 0)),
    }
    return metrics, {"calibration": calibration}


_FAILURE = _Recipe(
    kind=ModelKind.LSTM,
    select=lambda split: split,
    shortage=_failure_shortage,
    build=lambda: FailureRiskLSTM(FailureRiskConfig(n_inputs=N_CHANNELS)),
    draw=lambda rng, n, per_epoch: rng.choice(n, per_epoch, replace=False),  # the natural class mix
    loss=_brier,
    finish=_failure_finish,
    incumbent_metric="incumbent_val_brier",
)


# --- the anomaly autoencoder: healthy windows only; the threshold from healthy validation errors ---


def _autoencoder_shortage(train: WindowSet, val: WindowSet) -> str | None:
    if len(train) > 0 and len(val) > 0:
        return None
    return f"need healthy windows in training and validation; have {len(train)} and {len(val)}: add history"


def _window_error(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return LSTMAutoencoder.errors(x, model(x)).mean(dim=1)  # (n,) MSE per window


def _reconstruction_loss(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return _window_error(model, x)  # labels unused: the autoencoder learns healthy windows only


def _autoencoder_finish(model: nn.Module, run: _Run) -> tuple[dict[str, float], dict[str, Any]]:
    batches, val_all = run.batches, run.val_all

    def window_error(x: torch.Tensor) -> torch.Tensor:
        return _window_error(model, x)

    per_channel = batches.outputs(lambda x: LSTMAutoencoder.errors(x, model(x)), run.val)  # (n, C)
    errors = np.sort(per_channel.mean(axis=1))  # healthy validation windows only
    threshold = float(np.quantile(errors, 0.99))
    quantiles = {f"val_error_p{q}": float(np.quantile(errors, q / 100)) for q in (50, 90, 99)}
    metrics = {
        **quantiles,
        "val_loss": float(errors.mean()),
        "threshold": threshold,
        "val_windows": float(len(run.val)),
        "train_windows": float(len(run.train)),
    }
    if val_all.labels.sum() > 0:  # how well the error flags windows before a failure
        scores = batches.outputs(window_error, val_all)
        metrics["val_failure_roc_auc"] = roc_auc(scores, val_all.labels)
        metrics["val_prefailure_anomaly_rate"] = float(np.mean(scores[val_all.labels > 0] > threshold))
    # The promotion gate's evidence: failures with a window above the served threshold in the
    # horizon before them, over EVERY miner's failures. The autoencoder never trains on a
    # failure's windows (healthy ones only), and a validation split of a small fleet holds one or
    # two failures: too few to decide on (measured on 80-miner fleets: 1-2 each).
    positives = run.windows.subset(np.flatnonzero(run.windows.labels > 0))
    if len(positives):
        recall, failures = event_recall(
            batches.outputs(window_error, positives),
            positives.labels,
            positives.miner_ids,
            positives.window_ends.astype(np.int64),
            threshold,
        )
        metrics["val_precursor_recall"] = recall
        metrics["val_precursor_failures"] = float(failures)
    if errors.size > 10001:  # keep a quantile table, enough for confidence to 1e-4
        errors = np.quantile(errors, np.linspace(0.0, 1.0, 10001))
    extra = {
        "threshold": threshold,
        "val_errors": [float(e) for e in errors],
        "channel_error_scale": [float(v) for v in np.median(per_channel, axis=0)],
    }
    return metrics, extra


_AUTOENCODER = _Recipe(
    kind=ModelKind.AUTOENCODER,
    select=lambda split: split.subset(split.healthy),
    shortage=_autoencoder_shortage,
    build=lambda: LSTMAutoencoder(AutoencoderConfig(n_inputs=N_CHANNELS)),
    draw=lambda rng, n, per_epoch: rng.permutation(n)[:per_epoch],
    loss=_reconstruction_loss,
    finish=_autoencoder_finish,
    incumbent_metric="incumbent_val_loss",
)


def train_failure_model(
    windows: WindowSet,
    cfg: TrainConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    incumbent: IncumbentFn | None = None,
) -> TrainingResult:
    """Trains, early-stops and calibrates the failure-risk LSTM on windows split by miner."""
    return _train(_FAILURE, windows, cfg or TrainConfig(), progress, should_stop, incumbent)


def train_autoencoder(
    windows: WindowSet,
    cfg: TrainConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    incumbent: IncumbentFn | None = None,
) -> TrainingResult:
    """Trains the autoencoder on healthy training windows; threshold from healthy validation windows."""
    return _train(_AUTOENCODER, windows, cfg or AUTOENCODER_DEFAULTS, progress, should_stop, incumbent)
