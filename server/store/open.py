"""Opens the store a store URL names: empty or a file path for DuckDB, postgresql://... for PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from server.errors import InvalidArgument
from server.store.db import DuckDBStore
from server.store.protocol import FleetStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def open_store(url: str, *, default_path: Path, sample_interval_s: int = 300) -> FleetStore:
    """The store at `url`: "" -> the DuckDB file default_path; "postgresql://user@host:port/db" (any
    libpq URL) -> PostgreSQL; "duckdb:PATH" or a plain path -> that DuckDB file."""
    url = url.strip()
    if is_postgres_url(url):
        from server.store.postgres import PostgresStore  # psycopg is loaded only when used

        return PostgresStore.open(url, sample_interval_s=sample_interval_s)
    if url.startswith("duckdb:"):
        url = url.removeprefix("duckdb:").removeprefix("//")
    if "://" in url:
        raise InvalidArgument.for_field(
            "store",
            f"unknown store URL scheme {url.split('://')[0]!r}: use postgresql://... or a file path",
        )
    return DuckDBStore.open(Path(url) if url else default_path, sample_interval_s=sample_interval_s)
