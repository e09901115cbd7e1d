"""Failure-risk LSTM: a window of telemetry in, P(hardware failure within the horizon) out.

Architecture (fixed by the product spec): LSTM 64 -> dropout 0.2 -> LSTM 32 -> dropout 0.2 ->
dense 16 ReLU -> dense 1 sigmoid. The raw sigmoid output is NOT a calibrated probability (training
over-samples failures); `server.models.calibration` maps its logit to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FailureRiskConfig:
    """Shape of the failure-risk LSTM. Stored in checkpoints as `model_args`."""

    n_inputs: int = 12
    """Input channels per time step (see `server.models.features.INPUT_SCHEMA`)."""
    hidden1: int = 64
    """Units of the first LSTM layer."""
    hidden2: int = 32
    """Units of the second LSTM layer."""
    dense: int = 16
    """Units of the ReLU dense layer."""
    dropout: float = 0.2
    """Dropout after each LSTM layer (training only)."""


class FailureRiskLSTM(nn.Module):
    """(B, T, F) normalised windows -> (B,) raw failure probability."""

    def __init__(self, cfg: FailureRiskConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.lstm1 = nn.LSTM(cfg.n_inputs, cfg.hidden1, batch_first=True)
        self.drop1 = nn.Dropout(cfg.dropout)
        self.lstm2 = nn.LSTM(cfg.hidden1, cfg.hidden2, batch_first=True)
        self.drop2 = nn.Dropout(cfg.dropout)
        self.dense = nn.Linear(cfg.hidden2, cfg.dense)
        self.head = nn.Linear(cfg.dense, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output, (B, T, F) -> (B,). Calibration and the loss work on this."""
        seq, _ = self.lstm1(x)  # (B, T, hidden1)
        seq = self.drop1(seq)
        _, (h_last, _) = self.lstm2(seq)  # h_last: (1, B, hidden2), the last time step
        z = self.drop2(h_last[-1])  # (B, hidden2)
        z = torch.relu(self.dense(z))  # (B, dense)
        return self.head(z).squeeze(-1)  # (B,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))  # (B,) in (0, 1)
