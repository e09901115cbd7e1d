"""Training parameters and each model kind's defaults: the one source of the documented defaults.

The domain's TrainRequest validation, the training worker, the proto comment on TrainRequest and the
README all read or quote TRAINING_DEFAULTS (a contract test checks the proto comment against it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from server.models import ModelKind

MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 4096


@dataclass(frozen=True)
class TrainConfig:
    """Training parameters; the field defaults are the LSTM's (see TRAINING_DEFAULTS)."""

    epochs: int = 50
    batch_size: int = 32
    validation_split: float = 0.2
    seed: int = 42
    learning_rate: float = 1e-3
    samples_per_epoch: int = 8192  # windows drawn per epoch (see server/models/train.py)
    val_windows_per_epoch: int = 8192  # fixed validation subset for the per-epoch loss
    patience: int = 10  # epochs without a better validation loss before stopping
    threads: int = 1  # torch threads while training (restored afterwards)
    device: str | None = None  # None: CUDA when available, else CPU


TRAINING_DEFAULTS: dict[ModelKind, TrainConfig] = {
    ModelKind.LSTM: TrainConfig(),
    ModelKind.AUTOENCODER: replace(TrainConfig(), epochs=100, validation_split=0.1),
}
"""The documented defaults of a TrainRequest: LSTM 50/32/0.2, AUTOENCODER 100/32/0.1."""

AUTOENCODER_DEFAULTS = TRAINING_DEFAULTS[ModelKind.AUTOENCODER]
