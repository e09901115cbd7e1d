"""The store's own errors, shared by both engines (each maps to a gRPC status via server/errors.py)."""

from __future__ import annotations

from server.errors import FailedPrecondition, Unavailable


class StoreLocked(Unavailable):
    """Another process holds the database file open."""

    reason = "STORE_LOCKED"


class StoreClosed(FailedPrecondition):
    """The store was closed (the server is shutting down)."""

    reason = "STORE_CLOSED"


class StoreSchemaTooNew(FailedPrecondition):
    """The database file was written by a newer server."""

    reason = "STORE_SCHEMA_TOO_NEW"
