"""Fleet norms: the median of each feature across the miners of one hardware model.

An explanation (`PredictFailureRisk` with explain) shows each risk factor's recent value next to the
fleet's norm for it. Norms are medians over the last `window` of data (ending at the store's newest
sample, so imported history has norms too) and are kept for `ttl_s` per hardware model.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np

from server.records import FEATURE_COLUMNS
from server.store import FleetStore

FLEET_NORM_TTL_S = 600.0
FLEET_NORM_WINDOW = timedelta(hours=6)


class FleetNorms:
    """hardware model -> {feature: median over its miners}, cached for `ttl_s`; thread-safe."""

    def __init__(
        self,
        store: FleetStore,
        *,
        ttl_s: float = FLEET_NORM_TTL_S,
        window: timedelta = FLEET_NORM_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._norms: dict[str, tuple[float, dict[str, float]]] = {}  # model -> (computed at, norms)

    def for_model(self, hardware_model: str) -> dict[str, float]:
        """Each feature's median across the model's miners; a feature no peer reported has none.
        Blocking (reads the store when the cached norms are older than the TTL)."""
        with self._lock:
            cached = self._norms.get(hardware_model)
        if cached is not None and self._clock() - cached[0] < self._ttl_s:
            return cached[1]
        norms = self._compute(hardware_model)
        with self._lock:
            self._norms[hardware_model] = (self._clock(), norms)
        return norms

    def _compute(self, hardware_model: str) -> dict[str, float]:
        peers = [m.miner_id for m in self._store.list_miners() if m.hardware_model == hardware_model]
        end = self._store.counts().data_end or datetime.now(UTC)
        series = self._store.load_series(peers, start=end - self._window, end=end + timedelta(seconds=1))
        stacked = [s.values for s in series.values() if len(s)]
        if not stacked:
            return {}
        values = np.concatenate(stacked)  # (rows, features)
        # A feature no peer reported (all NaN) has no norm; nanmedian would warn on it.
        medians = np.full(values.shape[1], np.nan)
        seen = np.isfinite(values).any(axis=0)
        if seen.any():
            medians[seen] = np.nanmedian(values[:, seen], axis=0)
        return {name: float(v) for name, v in zip(FEATURE_COLUMNS, medians, strict=False) if math.isfinite(v)}
