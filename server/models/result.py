"""What a training run produces, and its checkpoint form (plain tensors, dicts, lists, numbers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from server.models import ModelKind
from server.models.calibration import PlattCalibration
from server.models.features import FEATURES_VERSION, INPUT_SCHEMA, NormStats
from server.models.train_config import TrainConfig
from server.models.windows import WindowConfig, WindowSet
from server.records import FEATURE_COLUMNS


@dataclass
class TrainingResult:
    """A trained model with everything needed to serve and to audit it."""

    kind: ModelKind
    state_dict: dict[str, torch.Tensor]  # on the CPU
    model_args: dict[str, Any]  # asdict(FailureRiskConfig | AutoencoderConfig)
    window: WindowConfig
    train_config: dict[str, Any]
    norm: NormStats
    metrics: dict[str, float]
    data_range: tuple[str, str]  # ISO UTC, first and last row the windows cover
    data_hash: str
    calibration: PlattCalibration | None = None  # LSTM
    threshold: float | None = None  # autoencoder: 99th percentile of healthy validation errors
    val_errors: list[float] | None = None  # autoencoder: sorted healthy validation errors
    channel_error_scale: list[float] | None = None  # autoencoder: median healthy error per channel

    @property
    def samples_per_second(self) -> float:
        return self.metrics["samples_per_second"]

    @classmethod
    def build(
        cls,
        kind: ModelKind,
        model: nn.Module,
        windows: WindowSet,
        cfg: TrainConfig,
        norm: NormStats,
        metrics: dict[str, float],
        **extra: Any,
    ) -> TrainingResult:
        return cls(
            kind=kind,
            state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            model_args=asdict(model.cfg),  # type: ignore[call-overload]
            window=windows.config,
            train_config=asdict(cfg),
            norm=norm,
            metrics={k: float(v) for k, v in metrics.items()},
            data_range=windows.data_range(),
            data_hash=windows.content_hash(),
            **extra,
        )

    def to_artifact(self, job_id: str = "") -> dict[str, Any]:
        """The checkpoint dict `ModelRegistry.save` stores (it adds version, created_at, versions)."""
        window = asdict(self.window)
        window["label_modes"] = list(window["label_modes"])
        return {
            "model": self.state_dict,
            "model_args": dict(self.model_args),
            "kind": int(self.kind),
            "feature_columns": list(FEATURE_COLUMNS),
            "input_schema": list(INPUT_SCHEMA),
            "features_version": FEATURES_VERSION,
            "sequence_length": self.window.sequence_length,
            "window": window,
            "train": dict(self.train_config),
            "norm": self.norm.to_dict(),
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "threshold": self.threshold,
            "val_errors": list(self.val_errors) if self.val_errors is not None else None,
            "channel_error_scale": self.channel_error_scale,
            "metrics": dict(self.metrics),
            "data_range": list(self.data_range),
            "data_hash": self.data_hash,
            "job_id": job_id,
        }
