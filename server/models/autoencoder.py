"""LSTM autoencoder for anomaly detection: reconstructs a window; a large error means unusual.

Encoder LSTM 32 -> LSTM 16 (last hidden state is the code); decoder repeats the code T times ->
LSTM 16 -> LSTM 32 -> a dense layer applied at every time step back to F channels. Trained on
healthy windows only, so windows unlike healthy operation reconstruct badly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape of the autoencoder. Stored in checkpoints as `model_args`."""

    n_inputs: int = 12
    """Channels per time step (see `server.models.features.INPUT_SCHEMA`)."""
    enc1: int = 32
    """Units of the first encoder LSTM (and of the last decoder LSTM)."""
    code: int = 16
    """Units of the second encoder LSTM: the size of the code (and of the first decoder LSTM)."""


class LSTMAutoencoder(nn.Module):
    """(B, T, F) normalised windows -> (B, T, F) reconstruction."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc1 = nn.LSTM(cfg.n_inputs, cfg.enc1, batch_first=True)
        self.enc2 = nn.LSTM(cfg.enc1, cfg.code, batch_first=True)
        self.dec1 = nn.LSTM(cfg.code, cfg.code, batch_first=True)
        self.dec2 = nn.LSTM(cfg.code, cfg.enc1, batch_first=True)
        self.out = nn.Linear(cfg.enc1, cfg.n_inputs)  # applied per time step (TimeDistributed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        seq, _ = self.enc1(x)  # (B, T, enc1)
        _, (h_last, _) = self.enc2(seq)  # (1, B, code)
        code = h_last[-1]  # (B, code)
        repeated = code.unsqueeze(1).expand(-1, steps, -1)  # (B, T, code): RepeatVector(T)
        seq, _ = self.dec1(repeated)  # (B, T, code)
        seq, _ = self.dec2(seq)  # (B, T, enc1)
        return self.out(seq)  # (B, T, F)

    @staticmethod
    def errors(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """Per-channel squared error averaged over time: (B, T, F) x2 -> (B, F)."""
        return (reconstruction - x).pow(2).mean(dim=1)
