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
and 0.81 at the natural mix. Validation never shares a miner with training. Runs are reproducible:
fixed seeds and a fixed torch thread count (torch.set_num_threads is process-wide; it is restored
afterwards).
"""

from __future__ import annotations

import time
from collections.abc import Callable

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
from server.models.windows import WindowSet, split_by_miner

ProgressFn = Callable[[int, int, float, float, float], None]  # epoch, epochs, train, val, windows/s
StopFn = Callable[[], bool]
# Scores the active model on this run's validation split (FailureRiskPredictor.evaluate or
# AnomalyScorer.evaluate), so the promotion gate compares both models on the same windows.
IncumbentFn = Callable[[WindowSet], float]


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

    def outputs(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        subset: WindowSet,
        index: np.ndarray | None = None,
        batch: int = 1024,
    ) -> np.ndarray:
        index = np.arange(len(subset)) if index is None else index
        parts = []
        with torch.inference_mode():
            for lo in range(0, index.shape[0], batch):
                parts.append(fn(self(subset, index[lo : lo + batch])).float().cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)


def _setup(cfg: TrainConfig) -> tuple[torch.device, np.random.Generator, int]:
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return device, np.random.default_rng(cfg.seed), previous


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise FailedPrecondition(message, reason="INSUFFICIENT_TRAINING_DATA")


def train_failure_model(
    windows: WindowSet,
    cfg: TrainConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    incumbent: IncumbentFn | None = None,
) -> TrainingResult:
    """Trains, early-stops and calibrates the failure-risk LSTM on windows split by miner."""
    cfg = cfg or TrainConfig()
    train, val = split_by_miner(windows, cfg.validation_split, cfg.seed)
    _require(
        int(train.labels.sum()) > 0 and len(val) > 0,
        f"need failure windows in training and some validation windows; have {len(train)} training "
        f"({int(train.labels.sum())} failures), {len(val)} validation: record failure events or "
        "add history",
    )
    device, rng, previous = _setup(cfg)
    try:
        norm = NormStats.fit(windows.channels, train.covered_rows())
        batches = _Batches(windows, norm, device)
        model = FailureRiskLSTM(FailureRiskConfig(n_inputs=N_CHANNELS)).to(device)
        positives = np.flatnonzero(train.labels > 0)
        per_epoch = min(cfg.samples_per_epoch, len(train))
        draw_epoch = lambda: rng.choice(len(train), per_epoch, replace=False)  # noqa: E731 - natural mix

        def batch_loss(index: np.ndarray) -> torch.Tensor:
            target = torch.from_numpy(train.labels[index]).to(device)
            return torch.mean((model(batches(train, index)) - target) ** 2)  # Brier on the sample

        # Per-epoch validation subset, at the natural class mix like the training sample.
        val_sub = rng.permutation(len(val))[: cfg.val_windows_per_epoch]

        def val_loss() -> float:
            model.eval()
            return float(np.mean((batches.outputs(model, val, val_sub) - val.labels[val_sub]) ** 2))

        stats = _fit(model, batch_loss, draw_epoch, val_loss, cfg, progress, should_stop)
        raw_logits = batches.outputs(model.logits, val)
        calibration = PlattCalibration.fit(raw_logits, val.labels)
        risk = calibration.apply(raw_logits)
        thin = np.arange(0, len(val), 6)  # every 30 min: neighbouring windows overlap, and it is 6x cheaper
        auc_lo, auc_hi = roc_auc_interval(
            raw_logits[thin], val.labels[thin], val.miner_ids[thin], seed=cfg.seed
        )
        metrics = {
            **stats,
            "val_brier": brier_score(risk, val.labels),
            "val_roc_auc": roc_auc(raw_logits, val.labels),
            "val_roc_auc_lo": auc_lo,
            "val_roc_auc_hi": auc_hi,
            "val_failure_rate": float(val.labels.mean()),
            "val_windows": float(len(val)),
            "train_windows": float(len(train)),
            "train_failure_windows": float(positives.size),
        }
        if incumbent is not None:
            metrics["incumbent_val_brier"] = incumbent(val)
        return TrainingResult.build(
            ModelKind.LSTM, model, windows, cfg, norm, metrics, calibration=calibration
        )
    finally:
        torch.set_num_threads(previous)


def train_autoencoder(
    windows: WindowSet,
    cfg: TrainConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    incumbent: IncumbentFn | None = None,
) -> TrainingResult:
    """Trains the autoencoder on healthy training windows; threshold from healthy validation windows."""
    cfg = cfg or AUTOENCODER_DEFAULTS
    train_all, val_all = split_by_miner(windows, cfg.validation_split, cfg.seed)
    train, val = train_all.subset(train_all.healthy), val_all.subset(val_all.healthy)
    _require(
        len(train) > 0 and len(val) > 0,
        f"need healthy windows in training and validation; have {len(train)} and {len(val)}: add history",
    )
    device, rng, previous = _setup(cfg)
    try:
        norm = NormStats.fit(windows.channels, train.covered_rows())
        batches = _Batches(windows, norm, device)
        model = LSTMAutoencoder(AutoencoderConfig(n_inputs=N_CHANNELS)).to(device)
        per_epoch = min(cfg.samples_per_epoch, len(train))
        val_sub = rng.permutation(len(val))[: cfg.val_windows_per_epoch]

        def window_error(x: torch.Tensor) -> torch.Tensor:
            return LSTMAutoencoder.errors(x, model(x)).mean(dim=1)  # (n,) MSE per window

        def batch_loss(index: np.ndarray) -> torch.Tensor:
            return window_error(batches(train, index)).mean()

        def val_loss() -> float:
            model.eval()
            return float(batches.outputs(window_error, val, val_sub).mean())

        draw_epoch = lambda: rng.permutation(len(train))[:per_epoch]  # noqa: E731
        stats = _fit(model, batch_loss, draw_epoch, val_loss, cfg, progress, should_stop)
        per_channel = batches.outputs(lambda x: LSTMAutoencoder.errors(x, model(x)), val)  # (n, C)
        errors = np.sort(per_channel.mean(axis=1))  # healthy validation windows only
        threshold = float(np.quantile(errors, 0.99))
        quantiles = {f"val_error_p{q}": float(np.quantile(errors, q / 100)) for q in (50, 90, 99)}
        metrics = {
            **stats,
            **quantiles,
            "val_loss": float(errors.mean()),
            "threshold": threshold,
            "val_windows": float(len(val)),
            "train_windows": float(len(train)),
        }
        if val_all.labels.sum() > 0:  # how well the error flags windows before a failure
            scores = batches.outputs(window_error, val_all)
            metrics["val_failure_roc_auc"] = roc_auc(scores, val_all.labels)
            metrics["val_prefailure_anomaly_rate"] = float(np.mean(scores[val_all.labels > 0] > threshold))
        # The promotion gate's evidence: failures with a window above the served threshold in the
        # horizon before them, over EVERY miner's failures. The autoencoder never trains on a
        # failure's windows (healthy ones only), and a validation split of a small fleet holds one or
        # two failures: too few to decide on (measured on 80-miner fleets: 1-2 each).
        positives = windows.subset(np.flatnonzero(windows.labels > 0))
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
        if incumbent is not None:
            metrics["incumbent_val_loss"] = incumbent(val_all)
        if errors.size > 10001:  # keep a quantile table, enough for confidence to 1e-4
            errors = np.quantile(errors, np.linspace(0.0, 1.0, 10001))
        return TrainingResult.build(
            ModelKind.AUTOENCODER,
            model,
            windows,
            cfg,
            norm,
            metrics,
            threshold=threshold,
            val_errors=[float(e) for e in errors],
            channel_error_scale=[float(v) for v in np.median(per_channel, axis=0)],
        )
    finally:
        torch.set_num_threads(previous)
