"""The store: miners, telemetry samples, derived features, events and training jobs.

The domain talks to `FleetStore` (protocol.py); `open_store` picks the engine from the store URL:
the embedded DuckDB file (the default, db.py) or PostgreSQL (postgres/).
"""

from __future__ import annotations

from server.store.db import DuckDBStore, Store
from server.store.errors import StoreClosed, StoreLocked, StoreSchemaTooNew
from server.store.open import open_store
from server.store.protocol import FleetStore
from server.store.samples import QUALITY_PARTIAL, QUALITY_SENSOR_GLITCH, QUALITY_SIMULATED

__all__ = [
    "QUALITY_PARTIAL",
    "QUALITY_SENSOR_GLITCH",
    "QUALITY_SIMULATED",
    "DuckDBStore",
    "FleetStore",
    "Store",
    "StoreClosed",
    "StoreLocked",
    "StoreSchemaTooNew",
    "open_store",
]
