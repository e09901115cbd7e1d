"""Small helpers over the cursors of both engines, shared by the store modules.

Functions typed with `SqlCursor` run on either engine: a DuckDB cursor, or PostgreSQL's `PgCursor`
(server/store/postgres/cursor.py), which takes the same SQL text with DuckDB's placeholders (`?`,
`$1`, `$name`). Their SQL keeps to what both engines share (ON CONFLICT, unnest of a list parameter,
FILTER, window functions); the engine-specific statements live in each engine's own modules.
"""

from __future__ import annotations

from typing import Any, Protocol


class SqlCursor(Protocol):
    """The part of a DB-API cursor the shared store modules use."""

    def execute(self, query: str, parameters: Any = None) -> Any: ...

    def executemany(self, query: str, parameters: Any = None) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...

    def register(self, view_name: str, python_object: Any) -> Any:
        """Make a dict of equal-length numpy columns queryable as a table named view_name, until
        unregister or the end of the transaction."""
        ...

    def unregister(self, view_name: str) -> Any: ...


def fetch_one(cur: SqlCursor, query: str, params: Any = None) -> tuple[Any, ...] | None:
    """The first row of a query, or None. Fetches the whole result: DuckDB refuses new work on a cursor
    whose previous result was not read to the end."""
    rows = cur.execute(query, params).fetchall()
    return rows[0] if rows else None
