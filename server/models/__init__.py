"""Failure-risk LSTM, anomaly autoencoder, their data preparation, training, registry and inference.

Import the submodules directly (`server.models.train`, `server.models.registry`, ...): this package
file stays free of torch so that importing `ModelKind` is cheap.
"""

from __future__ import annotations

import enum


class ModelKind(enum.IntEnum):
    """Which model; values match the proto enum ModelKind."""

    UNSPECIFIED = 0
    LSTM = 1
    AUTOENCODER = 2

    @property
    def slug(self) -> str:
        """Lower-case name used in file names and version ids: "lstm", "autoencoder"."""
        return self.name.lower()


__all__ = ["ModelKind"]
