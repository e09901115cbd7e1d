"""Small helpers over DuckDB cursors shared by the store modules."""

from __future__ import annotations

from typing import Any

import duckdb


def fetch_one(cur: duckdb.DuckDBPyConnection, query: str, params: Any = None) -> tuple[Any, ...] | None:
    """The first row of a query, or None. Fetches the whole result: DuckDB refuses new work on a cursor
    whose previous result was not read to the end."""
    rows = cur.execute(query, params).fetchall()
    return rows[0] if rows else None
