"""Why a window scores high: per-feature occlusion, and a failure-mode heuristic on top of it.

Occlusion sets one feature's channels (the raw one and those derived from it, see
`features.CHANNEL_SOURCE`) to 0 over the whole window (0 is the training mean after
standardisation, i.e. "typical") and measures how much the calibrated risk drops. All 11 occluded
copies run as one batch. The likely failure mode is a readable rule: which modes' telemetry
signatures the window shows, and which of them the features carrying the risk speak for; it is a hint
for the technician, not a classifier. Its accuracy against the simulator's modes is in
bench/results/explain.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from server.models.features import CHANNEL_SOURCE, INPUT_SCHEMA
from server.records import FEATURE_COLUMNS, FEATURE_UNITS, FailureMode


@dataclass(frozen=True)
class RiskFactor:
    """One feature's part in a window's risk."""

    feature: str  # FEATURE_COLUMNS name
    importance: float  # share of the risk, in [0, 1]; a window's factors sum to 1 (or all 0)
    recent_value: float  # mean over the last quarter of the window, in `unit`; NaN when missing
    unit: str
    deviation: float  # mean standardised value over the same rows (0 = training mean, in std units)
    channels: dict[str, float] = field(default_factory=dict)
    """The same mean of every model channel derived from this feature, by INPUT_SCHEMA name."""


def occlusion_factors(
    risk: Callable[[np.ndarray], np.ndarray], x: np.ndarray, raw: np.ndarray
) -> list[RiskFactor]:
    """x (T, C) normalised window, raw (T, 11) features in their units -> factors, most important first.

    `risk` maps (N, T, C) windows to (N,) scores that rise with the risk (logits or probabilities).
    """
    n_features = len(FEATURE_COLUMNS)
    copies = np.repeat(x[None], n_features + 1, axis=0)  # (12, T, C): original + one per feature
    source = np.asarray(CHANNEL_SOURCE[: x.shape[-1]])
    for feature in range(n_features):
        copies[feature + 1][:, source == feature] = 0.0
    scores = risk(copies)  # (12,)
    drop = scores[0] - scores[1:]  # (11,) how much each feature raises the risk
    weight = np.clip(drop, 0.0, None)
    if weight.sum() <= 0:  # nothing raises it: rank by influence either way
        weight = np.abs(drop)
    share = weight / weight.sum() if weight.sum() > 0 else np.zeros(n_features)
    recent = slice(-max(1, x.shape[0] // 4), None)
    factors = []
    for i, name in enumerate(FEATURE_COLUMNS):
        column = raw[recent, i]
        finite = column[np.isfinite(column)]
        factors.append(
            RiskFactor(
                feature=name,
                importance=float(share[i]),
                recent_value=float(finite.mean()) if finite.size else float("nan"),
                unit=FEATURE_UNITS.get(name, ""),
                deviation=float(x[recent, i].mean()),
                channels={
                    INPUT_SCHEMA[c]: float(x[recent, c].mean()) for c in np.flatnonzero(source == i).tolist()
                },
            )
        )
    return sorted(factors, key=lambda f: f.importance, reverse=True)


_THERMAL = ("temperature", "fan_speed", "temperature_trend")
_HASHING = (
    "hashrate",
    "power",
    "efficiency",
    "hashrate_stability",
    "power_efficiency_trend",
    "accepted_shares",
)
# The features whose share of the risk speaks for a mode (occlusion importance, summed).
_CARRIERS: dict[FailureMode, tuple[str, ...]] = {
    FailureMode.FAN: (*_THERMAL, *_HASHING),  # a hot miner throttles: its hashing features carry heat
    FailureMode.THERMAL: (*_THERMAL, *_HASHING),
    FailureMode.HASH_BOARD: _HASHING,
    FailureMode.PSU: _HASHING,
    FailureMode.REBOOT_LOOP: _HASHING,
    FailureMode.CHIP: ("hashrate", "efficiency", "rejection_rate", "rejected_shares", "accepted_shares"),
    FailureMode.POOL: ("rejection_rate", "rejected_shares", "accepted_shares"),
}
MIN_EVIDENCE = 0.3  # share of the risk a mode's features must carry to be named
DEVIATES = 1.0  # std units: a channel this far from the training mean deviates
STRONG = 2.0  # std units: a level drop this large is a lost board, not a flicker


def _signatures(signal: Callable[[str], float]) -> dict[FailureMode, bool]:
    """Which modes' telemetry signature the window shows, from its channels' recent standardised means
    (0 = the training mean; the per-miner channels compare the miner with its own last 24 h). Checked
    against the simulator's precursors (bench/explain_modes.py): a failing fan heats the miner while
    the other fans cannot answer; overheating from outside (dust, ambient) spins every fan up; a lost
    hash board drops hashrate and power together, in large steps, and the miner runs cooler (a hot
    miner's drops are throttling); a failing PSU makes power noisy with
    small droops; a reboot loop has the miner down for whole samples; failing chips lose hashrate and
    get shares rejected; a pool problem rejects shares at full hashrate."""
    hot = max(signal("temperature_vs_yesterday"), signal("temperature_vs_median"))  # vs its own past
    fans_up = signal("fan_vs_median") > DEVIATES or signal("fan_speed") > STRONG
    hashrate_down = (
        min(signal("hashrate_ratio"), signal("hashrate_vs_median"), signal("hashrate_min_6h")) < -DEVIATES
    )
    rejecting = max(signal("rejection_rate_6h"), signal("rejection_rate")) > DEVIATES
    reboots = signal("hashrate_down_6h") > DEVIATES
    heat = hot > DEVIATES  # an overheating miner throttles: its hashrate and power drop too
    board_lost = not heat and signal("hashrate_vs_median") < -STRONG and signal("power_vs_median") < -STRONG
    return {
        FailureMode.THERMAL: heat and fans_up,
        FailureMode.FAN: heat and not fans_up,
        FailureMode.REBOOT_LOOP: reboots,
        FailureMode.HASH_BOARD: board_lost and not reboots,
        FailureMode.PSU: signal("power_noise_6h") > DEVIATES and not (heat or board_lost or reboots),
        FailureMode.CHIP: rejecting and hashrate_down,
        FailureMode.POOL: rejecting and not hashrate_down,
    }


def likely_failure_mode(factors: list[RiskFactor]) -> FailureMode:
    """Of the modes whose signature the window shows, the one whose features carry the most risk; or
    UNSPECIFIED when none shows or none's features carry MIN_EVIDENCE of it.

    The signature decides between modes that load the same features (a lost board and a failing PSU
    both move hashrate and power; the model may credit either to "power"), the risk shares decide
    whether the window's risk is about that part of the miner at all.
    """
    channels = {name: value for f in factors for name, value in f.channels.items()}
    importance = {f.feature: f.importance for f in factors}

    def signal(name: str) -> float:
        value = channels.get(name, 0.0)
        return value if np.isfinite(value) else 0.0

    shown = [mode for mode, present in _signatures(signal).items() if present]
    if not shown:
        return FailureMode.UNSPECIFIED
    carried = {mode: sum(importance.get(n, 0.0) for n in _CARRIERS[mode]) for mode in shown}
    mode, best = max(carried.items(), key=lambda item: item[1])
    return mode if best >= MIN_EVIDENCE else FailureMode.UNSPECIFIED
