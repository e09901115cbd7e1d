"""The PostgreSQL engine behind FleetStore (`--store postgresql://...`)."""

from __future__ import annotations

from server.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
