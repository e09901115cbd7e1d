"""Why a window scores high: per-feature occlusion, and a failure-mode heuristic on top of it.

Occlusion sets one feature's channels (the raw one and those derived from it, see
`features.CHANNEL_SOURCE`) to 0 over the whole window (0 is the training mean after
standardisation, i.e. "typical") and measures how much the calibrated risk drops. All 11 occluded
copies run as one batch. The likely failure mode is a readable rule over which features carry the
risk and in which direction they deviate; it is a hint for the technician, not a classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from server.models.features import CHANNEL_SOURCE
from server.records import FEATURE_COLUMNS, FEATURE_UNITS, FailureMode


@dataclass(frozen=True)
class RiskFactor:
    """One feature's part in a window's risk."""

    feature: str  # FEATURE_COLUMNS name
    importance: float  # share of the risk, in [0, 1]; a window's factors sum to 1 (or all 0)
    recent_value: float  # mean over the last quarter of the window, in `unit`; NaN when missing
    unit: str
    deviation: float  # mean standardised value over the same rows (0 = training mean, in std units)


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
            )
        )
    return sorted(factors, key=lambda f: f.importance, reverse=True)


# Features that speak for each mode, and the deviation (in std units) that counts as evidence.
_EVIDENCE: dict[FailureMode, tuple[tuple[str, Callable[[float], bool]], ...]] = {
    FailureMode.FAN: (("fan_speed", lambda d: d < -1.0), ("temperature", lambda d: d > 1.0)),
    FailureMode.THERMAL: (("temperature", lambda d: d > 1.0), ("temperature_trend", lambda d: d > 1.0)),
    FailureMode.HASH_BOARD: (
        ("hashrate", lambda d: d < -1.0),
        ("hashrate_stability", lambda d: abs(d) > 1.0),
        ("efficiency", lambda d: d < -1.0),
    ),
    FailureMode.PSU: (("power", lambda d: abs(d) > 1.0), ("power_efficiency_trend", lambda d: abs(d) > 1.0)),
    FailureMode.POOL: (
        ("rejection_rate", lambda d: d > 1.0),
        ("rejected_shares", lambda d: d > 1.0),
        ("accepted_shares", lambda d: d < -1.0),
    ),
}
MIN_EVIDENCE = 0.3  # share of the risk a mode's features must carry to be named


def likely_failure_mode(factors: list[RiskFactor]) -> FailureMode:
    """The mode whose deviating features carry the most risk, or UNSPECIFIED when none carries enough.

    FAN needs the fan itself to be slow (its temperature evidence only adds to a slow fan); POOL
    needs the hashrate to look normal (a sick board also loses shares).
    """
    by_name = {f.feature: f for f in factors}

    def evidence(mode: FailureMode) -> float:
        return sum(
            by_name[n].importance
            for n, test in _EVIDENCE[mode]
            if n in by_name and test(by_name[n].deviation)
        )

    scores = {mode: evidence(mode) for mode in _EVIDENCE}
    if "fan_speed" not in by_name or by_name["fan_speed"].deviation >= -1.0:
        scores[FailureMode.FAN] = 0.0
    if "hashrate" in by_name and by_name["hashrate"].deviation < -1.0:
        scores[FailureMode.POOL] = 0.0
    mode, best = max(scores.items(), key=lambda item: item[1])
    return mode if best >= MIN_EVIDENCE else FailureMode.UNSPECIFIED
