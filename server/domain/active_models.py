"""The model versions currently serving, swapped atomically when a version is promoted or activated."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """What Status and responses say about a loaded model."""

    version: str
    trained_at: datetime | None
    feature_columns: tuple[str, ...]
    sequence_length: int
    threshold: float = 0.0  # the autoencoder's anomaly threshold; 0 for the LSTM


@dataclass(frozen=True, slots=True)
class ServingModel:
    """A model version serving requests: its inference object (a predictor or scorer built from the
    registry's LoadedModel) and what responses say about it."""

    model: Any
    summary: ModelSummary


class ActiveModels:
    """Holds the active LSTM predictor and anomaly scorer; readers never see a half-swapped pair."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lstm: ServingModel | None = None
        self._autoencoder: ServingModel | None = None
        self.activated_at: dict[str, float] = {}
        """Unix time a new version of each kind ("lstm", "autoencoder") last became active: the
        FleetRiskSurge alert ignores the rescoring that follows."""

    @property
    def lstm(self) -> ServingModel | None:
        return self._lstm

    @property
    def autoencoder(self) -> ServingModel | None:
        return self._autoencoder

    def set_lstm(self, loaded: ServingModel | None) -> None:
        with self._lock:
            self._note_activation("lstm", self._lstm, loaded)
            self._lstm = loaded

    def set_autoencoder(self, loaded: ServingModel | None) -> None:
        with self._lock:
            self._note_activation("autoencoder", self._autoencoder, loaded)
            self._autoencoder = loaded

    def _note_activation(self, kind: str, current: ServingModel | None, new: ServingModel | None) -> None:
        if new is not None and (current is None or current.summary.version != new.summary.version):
            self.activated_at[kind] = time.time()
