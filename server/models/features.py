"""Model input channels: telemetry made comparable across hardware, plus a missing-data channel.

`INPUT_SCHEMA` is the exact per-time-step input of both models. Channel i < 11 is derived from
FEATURE_COLUMNS[i] (so explanations map straight back to a feature); the last channel says how much
of the row is missing. `NormStats` standardises channels with training-split statistics and turns
missing values into 0 (the training mean). Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from server.records import FEATURE_COLUMNS, Miner, MinerSeries

INPUT_SCHEMA: tuple[str, ...] = (
    "hashrate_ratio",  # hashrate / nominal hashrate
    "temperature",  # C
    "fan_speed",  # RPM
    "power_ratio",  # power / nominal power
    "accepted_shares_ratio",  # accepted delta / trailing 24 h median of accepted deltas
    "rejected_shares_ratio",  # rejected delta / the same accepted median
    "rejection_rate",  # ratio
    "efficiency_ratio",  # efficiency / nominal efficiency (nominal TH/s / nominal W)
    "temperature_trend",  # C/h
    "hashrate_stability",  # ratio
    "power_efficiency_trend_ratio",  # efficiency trend per h / nominal efficiency
    "missing_fraction",  # share of the 11 features missing in the row; 1 where no sample
)
N_FEATURES = len(FEATURE_COLUMNS)
N_CHANNELS = len(INPUT_SCHEMA)
CLIP = 10.0  # standardised values are clipped to +-CLIP so one broken sensor cannot blow up an LSTM
_SHARE_FLOOR = 1.0  # shares: a median below one share per interval is treated as one


def trailing_median(x: np.ndarray, length: int, chunk: int = 16384) -> np.ndarray:
    """(T,) -> (T,): median of the finite values in x[t-length+1 .. t]; NaN where there are none.

    Causal on purpose: a window's share reference never looks at the future.
    """
    x = np.asarray(x, dtype=np.float32)
    padded = np.concatenate([np.full(length - 1, np.nan, dtype=np.float32), x])
    out = np.full(x.shape[0], np.nan, dtype=np.float32)
    for lo in range(0, x.shape[0], chunk):
        view = sliding_window_view(padded[lo : lo + chunk + length - 1], length)  # (n, length)
        ordered = np.sort(view, axis=1)  # NaN sorts last
        count = np.isfinite(view).sum(axis=1)
        rows = np.arange(view.shape[0])
        low = ordered[rows, np.maximum((count - 1) // 2, 0)]
        high = ordered[rows, count // 2]
        out[lo : lo + view.shape[0]] = np.where(count > 0, 0.5 * (low + high), np.nan)
    return out


def _reference(nominal: float, column: np.ndarray) -> float:
    """The miner's nominal value, or its median when the record has none (0)."""
    if nominal > 0:
        return float(nominal)
    finite = column[np.isfinite(column)]
    median = float(np.median(finite)) if finite.size else 0.0
    return median if median > 0 else 1.0


def build_channels(series: MinerSeries, miner: Miner, share_reference_samples: int = 288) -> np.ndarray:
    """One miner's rows as raw model channels: (T, 11) features -> (T, 12), NaN where missing."""
    values = np.asarray(series.values, dtype=np.float32)  # (T, 11) in FEATURE_COLUMNS order
    col = {name: values[:, i] for i, name in enumerate(FEATURE_COLUMNS)}
    nominal_hashrate = _reference(miner.nominal_hashrate_ths, col["hashrate"])
    nominal_power = _reference(miner.nominal_power_w, col["power"])
    nominal_efficiency = nominal_hashrate / nominal_power  # TH/s per W
    share_median = trailing_median(col["accepted_shares"], share_reference_samples)
    share_ref = np.maximum(np.nan_to_num(share_median, nan=_SHARE_FLOOR), _SHARE_FLOOR)
    missing = np.isnan(values).mean(axis=1)
    missing = np.where(np.asarray(series.observed, dtype=bool), missing, 1.0)
    channels = np.stack(
        [
            col["hashrate"] / nominal_hashrate,
            col["temperature"],
            col["fan_speed"],
            col["power"] / nominal_power,
            col["accepted_shares"] / share_ref,
            col["rejected_shares"] / share_ref,
            col["rejection_rate"],
            col["efficiency"] / nominal_efficiency,
            col["temperature_trend"],
            col["hashrate_stability"],
            col["power_efficiency_trend"] / nominal_efficiency,
            missing,
        ],
        axis=1,
    )
    return channels.astype(np.float32)  # (T, 12)


@dataclass(frozen=True)
class NormStats:
    """Per-channel mean and std from the training split; shipped with the model."""

    mean: np.ndarray  # (C,) float32
    std: np.ndarray  # (C,) float32

    @classmethod
    def fit(cls, channels: np.ndarray, rows: np.ndarray | None = None) -> NormStats:
        """Statistics of `channels` (R, C) over the selected rows, ignoring NaN.

        The missing-data channel keeps mean 0 / std 1 so it stays a readable 0..1 fraction.
        """
        selected = channels if rows is None else channels[rows]
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(selected)
            count = finite.sum(axis=0)
            filled = np.where(finite, selected, 0.0).astype(np.float64)
            mean = filled.sum(axis=0) / np.maximum(count, 1)
            var = (np.where(finite, selected - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count, 1)
        std = np.sqrt(var)
        std = np.where(std > 1e-6, std, 1.0)
        mean[-1], std[-1] = 0.0, 1.0
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def apply(self, channels: np.ndarray) -> np.ndarray:
        """(..., C) raw -> (..., C) float32 standardised, NaN -> 0 (the training mean), clipped."""
        with np.errstate(invalid="ignore"):
            scaled = (np.asarray(channels, dtype=np.float32) - self.mean) / self.std
        return np.clip(np.nan_to_num(scaled, nan=0.0, posinf=CLIP, neginf=-CLIP), -CLIP, CLIP)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormStats:
        return cls(np.asarray(data["mean"], dtype=np.float32), np.asarray(data["std"], dtype=np.float32))
