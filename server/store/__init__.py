"""DuckDB embedded store: miners, telemetry samples, derived features, events and training jobs."""

from __future__ import annotations

from server.store.db import Store, StoreClosed, StoreLocked, StoreSchemaTooNew
from server.store.samples import QUALITY_PARTIAL, QUALITY_SENSOR_GLITCH, QUALITY_SIMULATED

__all__ = [
    "QUALITY_PARTIAL",
    "QUALITY_SENSOR_GLITCH",
    "QUALITY_SIMULATED",
    "Store",
    "StoreClosed",
    "StoreLocked",
    "StoreSchemaTooNew",
]
