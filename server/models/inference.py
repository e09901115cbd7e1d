"""Serving: the failure-risk predictor and the anomaly scorer, built from registry checkpoints.

Both cut and normalise windows exactly as training did (same channels, same checkpointed
statistics) and take batches (N, T, C), so a dynamic batcher can coalesce requests. Forward passes
run under torch.inference_mode().
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from server.errors import InsufficientHistory
from server.models import ModelKind
from server.models.calibration import PlattCalibration, brier_score
from server.models.explain import RiskFactor, likely_failure_mode, occlusion_factors
from server.models.features import CHANNEL_SOURCE, FEATURES_VERSION, INPUT_SCHEMA, NormStats, build_channels
from server.models.registry import LoadedModel, ModelRegistry
from server.models.windows import WindowConfig, WindowSet
from server.records import FEATURE_COLUMNS, FailureMode, Miner, MinerSeries


@dataclass
class WindowBatch:
    """Windows of one miner, ready for a model."""

    miner_id: str
    x: np.ndarray  # (N, T, C) normalised model input
    raw: np.ndarray  # (N, T, 11) features in their own units, NaN where missing
    window_starts: np.ndarray  # (N,) datetime64[s], first row of each window
    window_ends: np.ndarray  # (N,) datetime64[s], last row
    observed: np.ndarray  # (N,) int, rows with a sample

    def select(self, rows: np.ndarray) -> WindowBatch:
        """The windows picked by a boolean mask or an index array (N,)."""
        return WindowBatch(
            self.miner_id,
            self.x[rows],
            self.raw[rows],
            self.window_starts[rows],
            self.window_ends[rows],
            self.observed[rows],
        )


def _utc64(moment: datetime) -> np.datetime64:
    naive = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    return np.datetime64(naive, "s")


def prepare_windows(
    series: MinerSeries,
    miner: Miner,
    window: WindowConfig,
    norm: NormStats,
    start: datetime | None = None,
    end: datetime | None = None,
    latest_only: bool = False,
) -> WindowBatch:
    """Every window ending in [start, end] (stride 1), or only the latest one. Give the series
    `history_rows(window.share_reference_samples)` rows of history before the first window for exact
    training parity (the per-miner baselines and the 6 h context channels look back that far)."""
    length = window.sequence_length
    if len(series) < length:
        raise InsufficientHistory(series.miner_id, int(np.sum(series.observed)), length)
    times = series.timestamps.astype("datetime64[s]")
    ends = np.arange(length - 1, len(series))
    if start is not None:
        ends = ends[times[ends] >= _utc64(start)]
    if end is not None:
        ends = ends[times[ends] <= _utc64(end)]
    ends = ends[-1:] if latest_only else ends
    rows = ends[:, None] - np.arange(length - 1, -1, -1)  # (N, T)
    channels = build_channels(series, miner, window.share_reference_samples)  # (R, C)
    return WindowBatch(
        miner_id=series.miner_id,
        x=norm.apply(channels[rows]),
        raw=np.asarray(series.values, dtype=np.float32)[rows],
        window_starts=times[rows[:, 0]] if ends.size else times[:0],
        window_ends=times[ends],
        observed=np.asarray(series.observed, dtype=bool)[rows].sum(axis=1),
    )


class _Served:
    """What both serving classes share: the loaded module and its data preparation."""

    kind: ModelKind

    def __init__(self, loaded: LoadedModel) -> None:
        if loaded.kind != self.kind:
            raise ValueError(f"expected a {self.kind.name} checkpoint, got {loaded.kind.name}")
        ckpt: dict[str, Any] = loaded.checkpoint
        if list(ckpt["input_schema"]) != list(INPUT_SCHEMA):
            raise ValueError(f"checkpoint input schema {ckpt['input_schema']} is not this server's")
        trained_on = int(ckpt.get("features_version", 1))  # 1: written before versions were recorded
        if trained_on != FEATURES_VERSION:
            raise ValueError(
                f"trained on features version {trained_on}, this server computes version {FEATURES_VERSION}"
            )
        self.version = loaded.version
        self.module = loaded.module.eval()
        self.checkpoint = ckpt
        self.window = WindowConfig(**{**ckpt["window"], "label_modes": tuple(ckpt["window"]["label_modes"])})
        self.norm = NormStats.from_dict(ckpt["norm"])
        self.metrics: dict[str, float] = dict(ckpt.get("metrics") or {})
        self.feature_columns: list[str] = list(ckpt["feature_columns"])

    @classmethod
    def from_registry(cls, registry: ModelRegistry, version: str | None = None) -> Any:
        return cls(registry.load(cls.kind, version))

    def prepare(
        self,
        series: MinerSeries,
        miner: Miner,
        start: datetime | None = None,
        end: datetime | None = None,
        latest_only: bool = False,
    ) -> WindowBatch:
        batch = prepare_windows(series, miner, self.window, self.norm, start, end, latest_only)
        need = math.ceil((1.0 - self.window.max_missing_fraction) * self.window.sequence_length)
        keep = batch.observed >= need
        if latest_only and not (keep.size and keep.all()):
            have = int(batch.observed[-1]) if batch.observed.size else 0
            raise InsufficientHistory(series.miner_id, have, need)
        return batch.select(keep)

    def _run(self, x: np.ndarray, fn: Any, batch: int = 1024) -> np.ndarray:
        parts = []
        with torch.inference_mode():
            for lo in range(0, x.shape[0], batch):
                parts.append(fn(torch.from_numpy(np.ascontiguousarray(x[lo : lo + batch]))).float().numpy())
        return np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)

    def _windows(self, windows: WindowSet) -> np.ndarray:
        return self.norm.apply(windows.gather(np.arange(len(windows))))  # (N, T, C) with this model's stats


class FailureRiskPredictor(_Served):
    """Calibrated P(hardware failure within horizon_hours) per window."""

    kind = ModelKind.LSTM

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        self.calibration = PlattCalibration.from_dict(self.checkpoint["calibration"])
        self.horizon_hours = self.window.horizon_hours

    def prepare_latest(self, series: MinerSeries, miner: Miner) -> WindowBatch:
        """The miner's latest window; InsufficientHistory when it is too short or too sparse."""
        return self.prepare(series, miner, latest_only=True)

    def raw_logits(self, x: np.ndarray) -> np.ndarray:
        """(N, T, C) -> (N,) the LSTM's uncalibrated logit."""
        return self._run(x, self.module.logits)  # type: ignore[operator]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, T, C) normalised windows -> (N,) calibrated risk in [0, 1]."""
        return self.calibration.apply(self.raw_logits(x))

    def explain(self, batch: WindowBatch, index: int = -1) -> list[RiskFactor]:
        """Risk factors of one window of the batch, most important first. Occlusion works on the raw
        logit: the calibration is monotone, so shares rank the same, and they stay informative when
        the calibration is flat."""
        return occlusion_factors(self.raw_logits, batch.x[index], batch.raw[index])

    def likely_failure_mode(self, factors: list[RiskFactor]) -> FailureMode:
        return likely_failure_mode(factors)

    def evaluate(self, windows: WindowSet) -> float:
        """Brier score on labelled windows (for comparing with a new model on its validation split)."""
        return brier_score(self.predict(self._windows(windows)), windows.labels)


class AnomalyScorer(_Served):
    """Reconstruction error per window, its threshold and its confidence."""

    kind = ModelKind.AUTOENCODER

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        self.threshold = float(self.checkpoint["threshold"])
        self.val_errors = np.asarray(self.checkpoint["val_errors"], dtype=np.float64)  # sorted
        scale = self.checkpoint.get("channel_error_scale") or [1.0] * len(INPUT_SCHEMA)
        scale = np.asarray(scale, dtype=np.float64)
        # A channel that healthy windows barely exercise (a baseline that is mostly still missing)
        # has a near-zero median error; a floor keeps any error on it from ranking first.
        self.channel_scale = np.maximum(scale, max(0.1 * float(np.median(scale)), 1e-12))

    def channel_errors(self, x: np.ndarray) -> np.ndarray:
        """(N, T, C) -> (N, C) squared reconstruction error per channel, averaged over time."""
        return self._run(x, lambda t: self.module.errors(t, self.module(t)))  # type: ignore[operator]

    def score(self, x: np.ndarray) -> np.ndarray:
        """(N, T, C) -> (N,) reconstruction MSE over the normalised window (the training loss)."""
        return self.channel_errors(x).mean(axis=1) if x.shape[0] else np.zeros(0)

    def is_anomaly(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """(N,) -> (N,) fraction of healthy validation windows with a lower error, in [0, 1]."""
        below = np.searchsorted(self.val_errors, np.asarray(scores, dtype=np.float64), side="left")
        return below / max(self.val_errors.size, 1)

    def top_features(self, channel_errors: np.ndarray, k: int = 3) -> list[list[str]]:
        """Per window, the k features whose error is largest relative to their healthy median error
        (a feature's error is the largest over its channels, the raw one and those derived from it)."""
        per_channel = channel_errors / self.channel_scale[: channel_errors.shape[1]]  # (N, C)
        source = np.asarray(CHANNEL_SOURCE[: channel_errors.shape[1]])
        ratio = np.stack(
            [per_channel[:, source == f].max(axis=1) for f in range(len(FEATURE_COLUMNS))], axis=1
        )  # (N, 11)
        order = np.argsort(-ratio, axis=1, kind="stable")[:, :k]
        return [[FEATURE_COLUMNS[i] for i in row] for row in order]

    def evaluate(self, windows: WindowSet) -> float:
        """Mean reconstruction error on healthy windows (the autoencoder's val_loss)."""
        healthy = windows.subset(windows.healthy)
        return float(self.score(self._windows(healthy)).mean()) if len(healthy) else float("nan")


def serving_class(kind: ModelKind) -> type[FailureRiskPredictor] | type[AnomalyScorer]:
    """The class that serves a model kind (its constructor refuses checkpoints it cannot serve)."""
    return FailureRiskPredictor if kind == ModelKind.LSTM else AnomalyScorer
