"""Model input channels: telemetry made comparable across hardware, plus a missing-data channel.

`INPUT_SCHEMA` is the exact per-time-step input of both models. Channel i < 11 is derived from
FEATURE_COLUMNS[i]; the next channels compare the miner with ITS OWN recent past and give the
2-hour window a longer, 6-hour context (`CHANNEL_SOURCE` names the feature each channel comes from,
so explanations map straight back to a feature); the last channel says how much of the row is
missing. Every channel is causal and looks back at most `history_rows(share_reference_samples)`
rows (24 h + 6 h at 5-minute samples): serving must load that much history before a window.

Why the per-miner channels: a miner's temperature, fan speed and power differ from its siblings'
by more than a precursor's early signal (thermal offsets of +-2 C per unit, the ambient's daily
cycle of +-6 C), so "2 C hotter than this miner was 24 h ago" separates precursors from healthy
miners where "65 C" cannot. On 60-miner demo fleets (3 seeds, training-period validation miners)
they raised the LSTM's mean validation ROC-AUC from 0.66 to 0.68. The baselines skip idle rows and
restart after an hour of idling (FEATURES_VERSION 2, see `build_channels`). bench/results/quality.md
has the test numbers and the ground-truth reference each horizon puts on any model of the telemetry.

`NormStats` standardises channels with training-split statistics and turns missing values into 0
(the training mean). Pure numpy.
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
    "hashrate_vs_median",  # hashrate / the miner's trailing 24 h median hashrate
    "temperature_vs_median",  # C above the miner's trailing 24 h median temperature
    "temperature_vs_yesterday",  # C above the same time 24 h earlier (cancels the daily cycle)
    "fan_vs_median",  # fan speed / the miner's trailing 24 h median fan speed
    "power_vs_median",  # power / the miner's trailing 24 h median power
    "hashrate_min_6h",  # lowest hashrate_vs_median over the trailing 6 h
    "hashrate_down_6h",  # share of the trailing 6 h rows hashing below 10 % of the median (reboots)
    "temperature_vs_yesterday_6h",  # mean temperature_vs_yesterday over the trailing 6 h (slow creep)
    "power_noise_6h",  # standard deviation of power_vs_median over the trailing 6 h
    "rejection_rate_6h",  # mean rejection rate over the trailing 6 h
    "missing_fraction",  # share of the 11 features missing in the row; 1 where no sample
)
# The FEATURE_COLUMNS index each channel is derived from; -1 for the missing-data channel.
CHANNEL_SOURCE: tuple[int, ...] = (*range(11), 0, 1, 1, 2, 3, 0, 0, 1, 3, 6, -1)
N_FEATURES = len(FEATURE_COLUMNS)
N_CHANNELS = len(INPUT_SCHEMA)
FEATURES_VERSION = 2
"""How the channels are computed; stored with each model, which only serves with the same version.
2: per-miner baselines restart after an hour of idling and skip idle rows (1 had neither)."""
CONTEXT_SAMPLES = 72  # the trailing "6 h" of the context channels, in rows (at 5-minute samples)
CLIP = 10.0  # standardised values are clipped to +-CLIP so one broken sensor cannot blow up an LSTM
_SHARE_FLOOR = 1.0  # shares: a median below one share per interval is treated as one


def history_rows(share_reference_samples: int = 288) -> int:
    """Rows of history a window's first row needs for exact channels: the 24 h baselines plus the
    6 h context over them. Serving should load this many rows before the first window it scores."""
    return share_reference_samples + min(CONTEXT_SAMPLES, share_reference_samples)


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


def _trailing_sums(x: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T,) -> count, sum and sum of squares of the finite values in x[t-length+1 .. t]."""
    finite = np.isfinite(x)
    filled = np.where(finite, x, 0.0).astype(np.float64)
    out = []
    for part in (finite.astype(np.float64), filled, filled**2):
        total = np.concatenate([[0.0], np.cumsum(part)])
        lo = np.maximum(np.arange(x.shape[0]) + 1 - length, 0)
        out.append(total[1:] - total[lo])
    return out[0], out[1], out[2]


def trailing_mean(x: np.ndarray, length: int) -> np.ndarray:
    """(T,) -> (T,): mean of the finite values in x[t-length+1 .. t]; NaN where there are none."""
    count, total, _ = _trailing_sums(np.asarray(x, dtype=np.float64), length)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


def trailing_std(x: np.ndarray, length: int) -> np.ndarray:
    """(T,) -> (T,): population std of the finite values in x[t-length+1 .. t]; NaN with fewer than 2."""
    count, total, squares = _trailing_sums(np.asarray(x, dtype=np.float64), length)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        var = np.maximum(squares / count - mean**2, 0.0)
    return np.where(count > 1, np.sqrt(var), np.nan).astype(np.float32)


def trailing_min(x: np.ndarray, length: int) -> np.ndarray:
    """(T,) -> (T,): minimum of the finite values in x[t-length+1 .. t]; NaN where there are none."""
    x = np.asarray(x, dtype=np.float32)
    padded = np.concatenate(
        [np.full(length - 1, np.inf, dtype=np.float32), np.where(np.isfinite(x), x, np.inf)]
    )
    low = sliding_window_view(padded, length).min(axis=1)
    return np.where(np.isfinite(low), low, np.nan).astype(np.float32)


def lagged(x: np.ndarray, lag: int) -> np.ndarray:
    """(T,) -> (T,): x[t - lag], NaN before the start."""
    x = np.asarray(x, dtype=np.float32)
    if lag >= x.shape[0]:
        return np.full(x.shape[0], np.nan, dtype=np.float32)
    return np.concatenate([np.full(lag, np.nan, dtype=np.float32), x[: x.shape[0] - lag]])


def _ratio_to(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """x / reference where the reference is positive, else NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(reference > 0, x / reference, np.nan).astype(np.float32)


def _reference(nominal: float, column: np.ndarray) -> float:
    """The miner's nominal value, or its median when the record has none (0)."""
    if nominal > 0:
        return float(nominal)
    finite = column[np.isfinite(column)]
    median = float(np.median(finite)) if finite.size else 0.0
    return median if median > 0 else 1.0


IDLE_RESET_SAMPLES = 12
"""A miner idle (not hashing or not reporting) for this many rows in a row (1 h at 5-minute samples)
was repaired, curtailed or cut off: its baselines restart after it (see `build_channels`)."""


def idle_rows(hashrate: np.ndarray, observed: np.ndarray, nominal: float) -> np.ndarray:
    """(T,) bool: rows where the miner was not hashing (under 10 % of nominal) or sent no sample.
    A missing hashrate reading in a row that was sent counts as hashing (NaN compares False)."""
    return ~np.asarray(observed, dtype=bool) | (np.asarray(hashrate) < 0.1 * nominal)


def idle_resets(idle: np.ndarray, rows: int = IDLE_RESET_SAMPLES) -> np.ndarray:
    """(T,) `idle_rows` -> sorted row indices where a new baseline segment starts: the first row
    after `rows` or more idle rows in a row. Always starts with 0."""
    edges = np.flatnonzero(np.diff(np.r_[0, np.asarray(idle, dtype=np.int8), 0]))  # run starts and ends
    starts, stops = edges[::2], edges[1::2]  # idle rows [start, stop)
    long_ends = stops[(stops - starts >= rows) & (stops < idle.shape[0])]
    return np.r_[0, long_ends].astype(np.int64)


def build_channels(series: MinerSeries, miner: Miner, share_reference_samples: int = 288) -> np.ndarray:
    """One miner's rows as raw model channels: (T, 11) features -> (T, C), NaN where missing.

    The per-miner baselines (24 h medians, "yesterday", the 6 h context) look back only to the
    start of the current segment: a segment starts after an hour or more of idling (a repair, a
    curtailment, an outage). The state before a repair says nothing about the repaired miner, and
    without the reset a fixed fan reads as "40 % slower than its median" for a day afterwards.
    """
    values = np.asarray(series.values, dtype=np.float32)  # (T, 11) in FEATURE_COLUMNS order
    observed = np.asarray(series.observed, dtype=bool)
    nominal_hashrate = _reference(miner.nominal_hashrate_ths, values[:, 0])
    nominal_power = _reference(miner.nominal_power_w, values[:, 3])
    idle = idle_rows(values[:, 0], observed, nominal_hashrate)
    bounds = [*idle_resets(idle).tolist(), values.shape[0]]
    parts = [
        _segment_channels(
            values[lo:hi],
            observed[lo:hi],
            idle[lo:hi],
            nominal_hashrate,
            nominal_power,
            share_reference_samples,
        )
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        if hi > lo
    ]
    if not parts:
        return np.zeros((0, N_CHANNELS), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)  # (T, C)


def _segment_channels(
    values: np.ndarray,
    observed: np.ndarray,
    idle: np.ndarray,
    nominal_hashrate: float,
    nominal_power: float,
    day: int,
) -> np.ndarray:
    """Channels of one baseline segment (see `build_channels`): (T, 11) -> (T, C)."""
    col = {name: values[:, i] for i, name in enumerate(FEATURE_COLUMNS)}
    nominal_efficiency = nominal_hashrate / nominal_power  # TH/s per W
    # Baselines come from rows where the miner was hashing: the idle rows that end a segment
    # (or a shorter stop inside one) must not become "yesterday" or the median.
    hashing = {name: np.where(idle, np.nan, col[name]) for name in col}
    share_median = trailing_median(hashing["accepted_shares"], day)
    share_ref = np.maximum(np.nan_to_num(share_median, nan=_SHARE_FLOOR), _SHARE_FLOOR)
    missing = np.where(observed, np.isnan(values).mean(axis=1), 1.0)
    context = min(CONTEXT_SAMPLES, day)
    hashrate_vs_median = _ratio_to(col["hashrate"], trailing_median(hashing["hashrate"], day))
    # 24 h earlier: the median of 3 rows (one missing reading does not blank it), the oldest row back.
    yesterday = lagged(trailing_median(hashing["temperature"], 3), max(day - 2, 1))
    temperature_vs_yesterday = col["temperature"] - yesterday
    power_vs_median = _ratio_to(col["power"], trailing_median(hashing["power"], day))
    down = np.where(np.isfinite(hashrate_vs_median), (hashrate_vs_median < 0.1).astype(np.float32), np.nan)
    return np.stack(
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
            hashrate_vs_median,
            col["temperature"] - trailing_median(hashing["temperature"], day),
            temperature_vs_yesterday,
            _ratio_to(col["fan_speed"], trailing_median(hashing["fan_speed"], day)),
            power_vs_median,
            trailing_min(hashrate_vs_median, context),
            trailing_mean(down, context),
            trailing_mean(temperature_vs_yesterday, context),
            trailing_std(power_vs_median, context),
            trailing_mean(col["rejection_rate"], context),
            missing,
        ],
        axis=1,
    )


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
