"""Platt scaling: maps the LSTM's raw logit to a calibrated P(failure within the horizon).

Training over-samples failures, which shifts the raw output by (roughly) a constant in logit space;
p = sigmoid(a * logit + b), fitted on the validation split at its natural failure rate, undoes that
shift and any over- or under-confidence. `a` is kept >= 0 so the map is monotone (it never reorders
miners). Targets use Platt's smoothing ((n+ + 1) / (n+ + 2), 1 / (n- + 2)) so a separable or
all-negative validation set still gives finite parameters. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


def logit(p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class PlattCalibration:
    """p = sigmoid(a * raw_logit + b)."""

    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, raw_logits: np.ndarray, labels: np.ndarray, iterations: int = 100) -> PlattCalibration:
        """Newton's method on the log loss; (N,) raw logits and (N,) 0/1 labels."""
        z = np.asarray(raw_logits, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64) > 0.5
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        if z.size == 0:
            return cls()
        target = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
        design = np.stack([z, np.ones_like(z)], axis=1)  # (N, 2)

        def loss(theta: np.ndarray) -> float:
            q = np.clip(_sigmoid(design @ theta), 1e-12, 1 - 1e-12)
            return float(-np.mean(target * np.log(q) + (1 - target) * np.log1p(-q)))

        # Start from the base rate (a = 0) and take damped Newton steps: plain Newton from a bad
        # start diverges on imbalanced data.
        params = np.array([0.0, float(logit(np.array([target.mean()]))[0])])
        current = loss(params)
        for _ in range(iterations):
            p = _sigmoid(design @ params)
            grad = design.T @ (p - target)
            hess = design.T @ (design * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            scale = 1.0
            while scale > 1e-4 and loss(params - scale * step) > current:
                scale *= 0.5
            params = params - scale * step
            previous, current = current, loss(params)
            if previous - current < 1e-12:
                break
        if not np.all(np.isfinite(params)) or params[0] < 0:
            # A negative slope would invert the ranking: fall back to the base rate alone.
            params = np.array([0.0, float(logit(np.array([target.mean()]))[0])])
        return cls(float(params[0]), float(params[1]))

    def apply(self, raw_logits: np.ndarray) -> np.ndarray:
        """(N,) raw logits -> (N,) calibrated probabilities in [0, 1]."""
        return _sigmoid(self.a * np.asarray(raw_logits, dtype=np.float64) + self.b)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlattCalibration:
        return cls(float(data["a"]), float(data["b"]))


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error of probabilities against 0/1 outcomes (lower is better)."""
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if p.size else float("nan")


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic (ties share ranks); NaN with one class."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.arange(1, s.size + 1)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    tie_sum = np.zeros(counts.size)
    np.add.at(tie_sum, inverse, ranks)
    ranks = (tie_sum / counts)[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc_interval(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, draws: int = 200, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of the ROC-AUC, resampling whole groups (miners: their windows are
    correlated) with replacement. (nan, nan) when no resample has both classes."""
    s, y, g = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0.5, np.asarray(groups)
    names, index = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(index == i) for i in range(names.size)]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        if not names.size:
            break
        pick = np.concatenate([members[i] for i in rng.integers(0, names.size, names.size)])
        value = roc_auc(s[pick], y[pick])
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def event_recall(
    scores: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    ends: np.ndarray,
    threshold: float,
    gap_s: int = 3600,
) -> tuple[float, int]:
    """(share of failures detected, failures): a failure is a run of positive windows of one miner
    (ends less than gap_s apart); it is detected when any of its windows scores above threshold."""
    y = np.asarray(labels) > 0.5
    order = np.lexsort((np.asarray(ends)[y], np.asarray(groups)[y]))
    g, t, s = (
        np.asarray(groups)[y][order],
        np.asarray(ends, dtype=np.int64)[y][order],
        np.asarray(scores)[y][order],
    )
    if not g.size:
        return float("nan"), 0
    new = np.r_[True, (g[1:] != g[:-1]) | (np.diff(t) > gap_s)]
    run = np.cumsum(new) - 1
    hit = np.zeros(int(run[-1]) + 1, dtype=bool)
    np.logical_or.at(hit, run, s > threshold)
    return float(hit.mean()), int(hit.size)
